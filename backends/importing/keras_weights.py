"""Keras weights as netspec's tensors: the one conversion of names and layouts (HWIO kernels to
OIHW, dense kernels transposed, GRU gates reordered, attention heads flattened); the importer
and tests/test_keras_parity.py both use it."""

from __future__ import annotations

from typing import Any

import numpy as np

RECURRENT = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn"}


def _gru_blocks(a: np.ndarray, axis: int) -> np.ndarray:
    """Keras' GRU gate blocks (z, r, h) in netspec's (torch's) order (r, z, n)."""
    z, r, h = np.split(a, 3, axis=axis)
    return np.concatenate([r, z, h], axis=axis)


def _recurrent(kind: str, w: list[np.ndarray], suffix: str) -> dict[str, np.ndarray]:
    kernel, recurrent, bias = w
    if kind == "gru":  # bias (2, 3u): [input bias; recurrent bias] (reset_after)
        return {
            f"weight_ih{suffix}": _gru_blocks(kernel, 1).T,
            f"weight_hh{suffix}": _gru_blocks(recurrent, 1).T,
            f"bias_ih{suffix}": _gru_blocks(bias[0], 0),
            f"bias_hh{suffix}": _gru_blocks(bias[1], 0),
        }
    # lstm (i, f, c, o) and simple_rnn: torch's order already
    return {
        f"weight_ih{suffix}": kernel.T,
        f"weight_hh{suffix}": recurrent.T,
        f"bias{suffix}": bias,
    }


def keras_tensors(cls: str, config: dict[str, Any], w: list[np.ndarray]) -> dict[str, np.ndarray]:
    """One Keras layer's weights (in the order of `layer.weights`) as netspec's tensors, keyed
    by tensor name (`weight`, `bias`, `running_mean`, `weight_ih_reverse`, `query_kernel`...)."""
    if not w:
        return {}
    if cls in ("Dense",):
        return {"weight": w[0].T, **({"bias": w[1]} if len(w) > 1 else {})}
    if cls in ("Conv1D", "Conv2D"):  # (k..., in/groups, out) -> (out, in/groups, k...)
        n = w[0].ndim
        return {"weight": w[0].transpose(n - 1, n - 2, *range(n - 2)), **_bias(w)}
    if cls == "DepthwiseConv2D":  # (kh, kw, in, mult) -> (in*mult, 1, kh, kw): out i*mult + m
        kh, kw, c, mult = w[0].shape
        return {"weight": w[0].reshape(kh, kw, c * mult).transpose(2, 0, 1)[:, None], **_bias(w)}
    if cls == "SeparableConv2D":  # depthwise as above; pointwise (1, 1, C*dm, f) -> (f, C*dm, 1, 1)
        depthwise = keras_tensors("DepthwiseConv2D", config, w[:1])["weight"]
        return {
            "depthwise_weight": depthwise,
            "pointwise_weight": w[1].transpose(3, 2, 0, 1),
            **({"bias": w[2]} if len(w) > 2 else {}),
        }
    if cls == "Conv2DTranspose":  # (kh, kw, out, in) -> torch's (in, out, kh, kw)
        return {"weight": w[0].transpose(3, 2, 0, 1), **_bias(w)}
    if cls == "BatchNormalization":
        return dict(zip(("weight", "bias", "running_mean", "running_var"), w))
    if cls == "LayerNormalization":
        return dict(zip(("weight", "bias"), w))
    if cls == "Embedding":
        return {"weight": w[0]}
    if cls in RECURRENT:
        return _recurrent(RECURRENT[cls], w, "")
    if cls == "Bidirectional":
        kind = RECURRENT[config["layer"]["class_name"]]
        half = len(w) // 2
        return _recurrent(kind, w[:half], "") | _recurrent(kind, w[half:], "_reverse")
    if cls == "MultiHeadAttention":
        # Keras keeps the heads as an axis: (D, H, k) kernels and (H, k) biases; netspec (D, H*k).
        q, qb, k, kb, v, vb, o, ob = w
        out = {}
        for part, (kernel, bias) in {"query": (q, qb), "key": (k, kb), "value": (v, vb)}.items():
            out[f"{part}_kernel"] = kernel.reshape(kernel.shape[0], -1)
            out[f"{part}_bias"] = bias.reshape(-1)
        out["output_kernel"] = o.reshape(-1, o.shape[-1])
        out["output_bias"] = ob
        return out
    raise ValueError(f"no weight conversion for {cls}")


def _bias(w: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {"bias": w[1]} if len(w) > 1 else {}
