"""Keras layers (the convolution family aside: keras_convs.py) as netspec spec items.

A converter takes the layer's config and inputs (`T`: where each Keras tensor is in the netspec
network, and its layout) and appends items; an option netspec cannot express raises `Refuse`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .keras_weights import RECURRENT, keras_tensors

# Keras' activation names with a netspec equivalent (leaky_relu: a layer, Keras' slope is 0.2).
ACTS = {
    "linear": "linear",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "gelu": "gelu",
    "silu": "silu",
    "swish": "silu",
    "relu6": "relu6",
    "hard_sigmoid": "hard_sigmoid",  # Keras 3's relu6(x + 3) / 6 (Keras 2 files: refused)
    "hard_silu": "hard_swish",
    "hard_swish": "hard_swish",
    "elu": "elu",  # alpha 1, as Keras' `activation="elu"`
}
ELEMENTWISE = ("Dropout", "Activation", "ReLU", "LeakyReLU", "ELU")


@dataclass(frozen=True)
class T:
    """A Keras tensor in the netspec network: the layer giving it (`input` for the input), its
    layout (`cl`: Keras channels-last, netspec channels-first; `seq`: [time, features] in both;
    `flat`: rank 1), its per-sample rank, and for a channels-last Flatten's output the flatten
    whose (H, W, C) order the next dense kernel undoes."""

    ns: str
    layout: str
    rank: int
    perm: str | None = None


class Refuse(Exception):
    """A layer option netspec cannot express (collected: every one is reported at once)."""

    def __init__(self, message: str, hint: str | None = None, *, layout: bool = False) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint
        self.layout = layout  # about the input's axes: unreliable after a layer that failed


# --- options --------------------------------------------------------------------------------


def _check(cfg: dict[str, Any], hint: str | None = None, **allowed: tuple[Any, ...]) -> None:
    """Each named option, when present, has one of the values netspec can express."""
    for key, ok in allowed.items():
        if key in cfg and cfg[key] not in ok:
            raise Refuse(f"{key}: {cfg[key]!r} (netspec: {' or '.join(map(repr, ok))})", hint)


def _act_name(value: Any, state: Any = None) -> str:
    if isinstance(value, dict) and isinstance(value.get("config"), str):
        value = value["config"]  # Keras 3 may serialize a built-in as {class_name: function}
    if not isinstance(value, str):
        raise Refuse(f"a custom activation {value!r}", "netspec runs no code from the file")
    if value == "hard_sigmoid" and str(getattr(state, "producer", "")).startswith("keras 2"):
        raise Refuse(
            "activation 'hard_sigmoid' of Keras 2 (clip(0.2x + 0.5, 0, 1))",
            "netspec's hard_sigmoid is Keras 3's and torch's, relu6(x + 3) / 6",
        )
    return value


def _fused(
    cfg: dict[str, Any], x: T, state: Any = None
) -> tuple[str, tuple[str, dict[str, Any]] | None]:
    """A layer's `activation` as netspec's fused one, or linear plus an activation item."""
    name = _act_name(cfg.get("activation", "linear") or "linear", state)
    if name == "leaky_relu":
        return "linear", ("leaky_relu", {"negative_slope": 0.2})  # Keras' function default
    if name == "softmax" and x.layout == "seq" and x.rank >= 2:
        return "linear", ("softmax", {"axis": -1})  # netspec's fused softmax is over axis 0
    if name not in ACTS:
        raise Refuse(f"activation '{name}'", f"netspec has {', '.join(ACTS)} and leaky_relu")
    return ACTS[name], None


def _ints(v: Any) -> Any:
    """A Keras size tuple as netspec writes it: one int when every axis is the same."""
    if isinstance(v, (list, tuple)):
        v = [int(x) for x in v]
        return v[0] if len(set(v)) == 1 else v
    return int(v)


def _axis(value: Any, x: T) -> int:
    """A Keras axis (counting the batch, or negative) as netspec's per-sample axis."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, int):
        raise Refuse(f"axis {value!r}", "one axis")
    k = value - 1 if value > 0 else x.rank + value
    if not 0 <= k < x.rank:
        raise Refuse(f"axis {value!r} of a rank-{x.rank} input", layout=True)
    if x.layout == "cl":
        return 0 if k == x.rank - 1 else k + 1
    return k


# --- converters -----------------------------------------------------------------------------

Convert = Callable[[Any, Any, list[T], list[np.ndarray]], T]


def _then(state: Any, la: Any, out: T, extra: tuple[str, dict[str, Any]] | None) -> T:
    if extra is None:
        return out
    kind, args = extra
    name = state.add(kind, args, state.name(f"{la.name}_{kind}"), [out])
    return T(name, out.layout, out.rank, out.perm)


def _permute(state: Any, la: Any, x: T, dims: list[int], layout: str) -> T:
    name = state.add("permute", {"dims": dims}, state.name(f"{la.name}_permute"), [x])
    return T(name, layout, x.rank)


def _to_cl(state: Any, la: Any, x: T) -> T:
    """A [time, features] tensor as channels-first [features, time] (Keras' Conv1D input)."""
    if x.layout == "seq" and x.rank == 2:
        return _permute(state, la, x, [1, 0], "cl")
    if x.layout != "cl":
        raise Refuse(f"a rank-{x.rank} input where an image or sequence is expected", layout=True)
    return x


def _to_seq(state: Any, la: Any, x: T) -> T:
    if x.layout == "cl" and x.rank == 2:
        return _permute(state, la, x, [1, 0], "seq")
    if x.layout == "cl":
        raise Refuse("an image input where a sequence [time, features] is expected", layout=True)
    return x


def dense(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    (x,), cfg = xs, la.config
    if x.layout == "cl" and x.rank > 1:
        raise Refuse(
            "a Dense on a channels-last feature map",
            "flatten or pool the features first",
            layout=True,
        )
    act, extra = _fused(cfg, x, state)
    args: dict[str, Any] = {"units": int(cfg["units"])}
    if act != "linear":
        args["activation"] = act
    if not cfg.get("use_bias", True):
        args["bias"] = False
    name = state.add("dense", args, state.name(la.name), xs)
    state.put(name, keras_tensors("Dense", cfg, w))
    if x.perm:
        state.flatten_dense.append((name, x.perm))
    return _then(state, la, T(name, x.layout, x.rank), extra)


def batchnorm(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    (x,), cfg = xs, la.config
    _check(cfg, "netspec's batchnorm has both gamma and beta", center=(True,), scale=(True,))
    if _axis(cfg.get("axis", -1), x) != 0 or (x.layout == "seq" and x.rank > 1):
        raise Refuse(
            f"axis {cfg.get('axis')!r} of a {x.layout} input",
            "netspec normalizes the channels",
            layout=True,
        )
    args = {"momentum": float(cfg.get("momentum", 0.99)), "eps": float(cfg.get("epsilon", 1e-3))}
    name = state.add("batchnorm", args, state.name(la.name), xs)
    state.put(name, keras_tensors(la.cls, cfg, w))
    return T(name, x.layout, x.rank, x.perm)


def layernorm(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    (x,), cfg = xs, la.config
    _check(cfg, "netspec's layernorm has both gamma and beta", center=(True,), scale=(True,))
    _check(cfg, rms_scaling=(False,))
    if (x.layout == "cl" and x.rank > 1) or _axis(cfg.get("axis", -1), x) != x.rank - 1:
        raise Refuse(
            f"axis {cfg.get('axis')!r}", "netspec's layernorm normalizes the last axis", layout=True
        )
    name = state.add("layernorm", {"eps": float(cfg.get("epsilon", 1e-3))}, state.name(la.name), xs)
    state.put(name, keras_tensors(la.cls, cfg, w))
    return T(name, x.layout, x.rank)


def activation(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    (x,), cfg = xs, la.config
    if la.name in state.absorbed:
        return x
    if la.cls == "Activation":
        fn = _act_name(cfg.get("activation"), state)
        if fn == "softmax":
            item = ("softmax", {"axis": -1} if x.layout == "seq" and x.rank > 1 else None)
        elif fn == "leaky_relu":
            item = ("leaky_relu", {"negative_slope": 0.2})
        elif fn in ACTS:
            item = ("activation", {"fn": ACTS[fn]})
        else:
            raise Refuse(f"activation '{fn}'", f"netspec has {', '.join(ACTS)} and leaky_relu")
    elif la.cls == "ReLU":
        _check(cfg, negative_slope=(0, 0.0), threshold=(0, 0.0))
        top = cfg.get("max_value")
        if top is None:
            item = ("relu", None)
        elif float(top) == 6.0:
            item = ("relu6", None)
        else:  # ReLU(max_value=m): MobileNet-style capped ReLUs
            item = ("clip", {"min": 0.0, "max": float(top)})
    elif la.cls == "ELU":
        item = ("elu", {"alpha": float(cfg["alpha"])} if cfg.get("alpha", 1.0) != 1.0 else None)
    elif la.cls == "LeakyReLU":
        slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
        item = ("leaky_relu", {"negative_slope": float(slope)})
    else:  # Softmax
        axis = _axis(cfg.get("axis", -1), x)
        item = ("softmax", {"axis": axis} if axis else None)
    name = state.add(item[0], item[1], state.name(la.name), xs)
    return T(name, x.layout, x.rank, x.perm)


def prelu(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    """PReLU: one slope for all, or one per channel (Keras' alpha of shape (1, ..., 1, C),
    its spatial axes shared; the features of a rank-1 tensor)."""
    (x,), (alpha,) = xs, w
    alpha = np.asarray(alpha, np.float32)
    if alpha.size == 1:
        args, slope = {"shared": True}, alpha.reshape(1)
    elif (x.rank == 1 or x.layout == "cl") and not x.perm and all(d == 1 for d in alpha.shape[:-1]):
        args, slope = None, alpha.reshape(-1)
    else:
        raise Refuse(
            f"a slope per element (alpha of shape {tuple(alpha.shape)})",
            "netspec's prelu has one slope per channel (shared_axes: the spatial axes) or one "
            "for all",
        )
    name = state.add("prelu", args, state.name(la.name), xs)
    state.put(name, {"weight": slope})
    return T(name, x.layout, x.rank, x.perm)


def dropout(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    (x,), cfg = xs, la.config
    _check(cfg, noise_shape=(None,))
    name = state.add("dropout", {"rate": float(cfg.get("rate", 0.5))}, state.name(la.name), xs)
    return T(name, x.layout, x.rank, x.perm)


def _feeds_dense(state: Any, keras_name: str) -> bool:
    """Every path from this tensor reaches a Dense through elementwise layers only."""
    users = state.consumers.get(keras_name, [])
    return bool(users) and all(
        u.cls == "Dense" or (u.cls in ELEMENTWISE and _feeds_dense(state, u.name)) for u in users
    )


def flatten(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    (x,) = xs
    perm = None
    if x.layout == "cl" and x.rank > 1:
        if _feeds_dense(state, la.name):
            perm = "?"  # the dense kernels after it are reordered (keras_import._State.finish)
        else:  # Keras flattens (H, W, C): make netspec's (C, H, W) that order first
            x = _permute(state, la, x, [*range(1, x.rank), 0], "seq")
    name = state.add("flatten", None, state.name(la.name), [x])
    return T(name, "flat", 1, name if perm else None)


def reshape(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    (x,), cfg = xs, la.config
    target = [int(v) for v in cfg["target_shape"]]
    if x.perm:
        raise Refuse("a reshape of a channels-last Flatten's output", layout=True)
    if x.layout == "cl" and x.rank > 1:
        x = _permute(state, la, x, [*range(1, x.rank), 0], "seq")
    name = state.add("reshape", {"shape": target}, state.name(la.name), [x])
    out = T(name, "seq" if len(target) > 1 else "flat", len(target))
    if len(target) == 3:  # a channels-last image again: netspec's channels first
        return _permute(state, la, out, [2, 0, 1], "cl")
    return out


def embedding(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    (x,), cfg = xs, la.config
    if x.rank != 1:
        raise Refuse(
            f"a rank-{x.rank} input", "netspec embeds a sequence of ids [time]", layout=True
        )
    args: dict[str, Any] = {
        "input_dim": int(cfg["input_dim"]),
        "output_dim": int(cfg["output_dim"]),
    }
    if cfg.get("mask_zero"):
        args["mask_zero"] = True
    name = state.add("embedding", args, state.name(la.name), xs)
    state.put(name, keras_tensors(la.cls, cfg, w))
    return T(name, "seq", 2)


def _recurrent_options(cls: str, cfg: dict[str, Any]) -> None:
    if cls not in RECURRENT:
        raise Refuse(f"a {cls} inside Bidirectional")
    hint = "netspec's recurrent layers are torch's: tanh, sigmoid gates, with biases"
    _check(cfg, hint, activation=("tanh",), use_bias=(True,), return_state=(False,))
    _check(cfg, hint, go_backwards=(False,), stateful=(False,))
    if cls != "SimpleRNN":
        _check(cfg, hint, recurrent_activation=("sigmoid",))
    if cls == "GRU":
        _check(cfg, "torch's GRU is Keras' reset_after: true", reset_after=(True,))


def recurrent(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    cfg, cls = la.config, la.cls
    bidirectional = cls == "Bidirectional"
    if bidirectional:
        _check(cfg, "netspec concatenates both directions", merge_mode=("concat",))
        inner = cfg["layer"]
        cls, cfg = inner["class_name"], inner["config"]
    _recurrent_options(cls, cfg)
    if cfg.get("dropout") or cfg.get("recurrent_dropout"):
        state.notes.append(
            f"'{la.name}': Keras' dropout inside the {cls} is left out (inference is unchanged)"
        )
    x = _to_seq(state, la, xs[0])
    args: dict[str, Any] = {"units": int(cfg["units"])}
    seq = bool(cfg.get("return_sequences"))
    if bidirectional:
        args["bidirectional"] = True
    if seq:
        args["return_sequences"] = True
    name = state.add(RECURRENT[cls], args, state.name(la.name), [x])
    state.put(name, keras_tensors(la.cls, la.config, w))
    return T(name, "seq", 2) if seq else T(name, "flat", 1)


def attention(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    cfg = la.config
    # A built layer records its axes: [1], the time axis of a (batch, time, features) input.
    _check(cfg, use_bias=(True,), output_shape=(None,), attention_axes=(None, [1], 1, -2))
    for key in ("attention_mask", "return_attention_scores", "training"):
        if la.kwargs.get(key) not in (None, False):
            raise Refuse(f"the call's {key}")
    names = list(dict.fromkeys(t.ns for t in xs))
    if len(xs) == 3 and xs[2].ns != xs[1].ns:
        raise Refuse("a key different from the value", "netspec attends with key = value")
    args: dict[str, Any] = {"num_heads": int(cfg["num_heads"]), "key_dim": int(cfg["key_dim"])}
    if cfg.get("value_dim") not in (None, cfg["key_dim"]):
        args["value_dim"] = int(cfg["value_dim"])
    if la.kwargs.get("use_causal_mask"):
        args["causal"] = True
    if cfg.get("dropout"):
        args["dropout"] = float(cfg["dropout"])
    inputs = [_to_seq(state, la, t) for t in ([xs[0]] if len(names) == 1 else xs[:2])]
    name = state.add("multi_head_attention", args, state.name(la.name), inputs)
    state.put(name, keras_tensors(la.cls, cfg, w))
    return T(name, "seq", 2)


def merge(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    if any(t.perm for t in xs) or len({t.layout for t in xs}) > 1:
        raise Refuse("inputs of different layouts", layout=True)
    kind = {"Add": "add", "Multiply": "multiply", "Concatenate": "concat"}[la.cls]
    args = None
    if kind == "concat":
        axis = _axis(la.config.get("axis", -1), xs[0])
        args = {"axis": axis} if axis else None
    name = state.add(kind, args, state.name(la.name), xs)
    return T(name, xs[0].layout, max(t.rank for t in xs))


CONVERTERS: dict[str, Convert] = {
    "Dense": dense,
    "BatchNormalization": batchnorm,
    "LayerNormalization": layernorm,
    **dict.fromkeys(("Activation", "ReLU", "LeakyReLU", "ELU", "Softmax"), activation),
    "PReLU": prelu,
    "Dropout": dropout,
    "Flatten": flatten,
    "Reshape": reshape,
    "Embedding": embedding,
    **dict.fromkeys(("LSTM", "GRU", "SimpleRNN", "Bidirectional"), recurrent),
    "MultiHeadAttention": attention,
    **dict.fromkeys(("Add", "Multiply", "Concatenate"), merge),
}
