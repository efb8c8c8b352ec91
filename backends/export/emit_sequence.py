"""ONNX emissions of the recurrent layers (the LSTM/GRU/RNN operators) and of attention (MatMul, Softmax)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from netspec.ir import Node
from netspec.layers import MultiHeadAttention, Recurrent

from .emitter import Emitter

# Stored gate blocks (torch's order, netspec.layers.recurrent) in ONNX's order: LSTM (i, f, g, o)
# -> (i, o, f, c), GRU (r, z, n) -> (z, r, h); an RNN has one gate.
ONNX_GATES = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "simple_rnn": (0,)}
ONNX_RECURRENT = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "RNN"}


def emit_recurrent(em: Emitter, node: Node, xs: list[str]) -> str:
    """The ONNX LSTM/GRU/RNN operator, time-major (a Transpose, not layout=1, which
    onnxruntime refuses); the declared tensors are stored as they are and reordered and stacked
    into ONNX's W, R, B by constant ops in the graph (onnxruntime folds them once)."""
    layer: Recurrent = node.layer  # type: ignore[assignment]
    name, u = node.name, layer.units
    order = ONNX_GATES[layer.kind]
    rows = (
        em.ints(f"{name}/gate_rows", [g * u + i for g in order for i in range(u)])
        if len(order) > 1
        else ""
    )
    zero = em.ints(f"{name}/axis0", [0])
    t = {k: em.init(f"{name}.{k}", a) for k, a in em.plan.tensors[name].items()}

    def onnx_order(tensor: str) -> str:
        if len(order) == 1:
            return tensor
        return em.op("Gather", [tensor, rows], em.fresh(f"{name}/gates"), name, axis=0)

    def stacked(parts: list[str], what: str) -> str:
        """Per direction [1, ...] stacked on a new first axis (ONNX's num_directions)."""
        ones = [em.op("Unsqueeze", [p, zero], em.fresh(f"{name}/{what}"), name) for p in parts]
        if len(ones) == 1:
            return ones[0]
        return em.op("Concat", ones, em.fresh(f"{name}/{what}"), name, axis=0)

    suffixes = ("", "_reverse")[: layer.directions]
    w = stacked([onnx_order(t[f"weight_ih{s}"]) for s in suffixes], "W")
    r = stacked([onnx_order(t[f"weight_hh{s}"]) for s in suffixes], "R")
    biases = []
    for s in suffixes:
        if layer.split_bias:
            pair = [onnx_order(t[f"bias_ih{s}"]), onnx_order(t[f"bias_hh{s}"])]
        else:  # ONNX's Wb then Rb: the one Keras bias, and zeros
            zeros = em.init(f"{name}/zero_bias", np.zeros(len(order) * u))
            pair = [onnx_order(t[f"bias{s}"]), zeros]
        biases.append(em.op("Concat", pair, em.fresh(f"{name}/bias"), name, axis=0))
    b = stacked(biases, "B")
    x = em.op("Transpose", xs, em.fresh(f"{name}/time_major"), name, perm=[1, 0, 2])
    attrs: dict[str, Any] = {"hidden_size": u}
    if layer.bidirectional:
        attrs["direction"] = "bidirectional"
    if layer.kind == "gru":
        attrs["linear_before_reset"] = 1  # torch's GRU, Keras' reset_after=True
    width = layer.directions * u
    if layer.return_sequences:  # Y: [T, D, B, u] -> [B, T, D * u]
        y = em.fresh(f"{name}/Y")
        em.op_outputs(ONNX_RECURRENT[layer.kind], [x, w, r, b], [y], name, **attrs)
        y = em.op("Transpose", [y], em.fresh(f"{name}/batch_major"), name, perm=[2, 0, 1, 3])
        return em.op("Reshape", [y, em.ints(f"{name}/shape", [0, 0, width])], name, name)
    h = em.fresh(f"{name}/Y_h")  # Y_h: [D, B, u] -> [B, D * u]
    em.op_outputs(ONNX_RECURRENT[layer.kind], [x, w, r, b], ["", h], name, **attrs)
    h = em.op("Transpose", [h], em.fresh(f"{name}/batch_major"), name, perm=[1, 0, 2])
    return em.op("Reshape", [h, em.ints(f"{name}/shape", [0, width])], name, name)


def emit_attention(em: Emitter, node: Node, xs: list[str]) -> str:
    """Multi-head attention from MatMul and Softmax (opset 13): heads split by Reshape and
    Transpose, scores scaled by 1/sqrt(key_dim), a causal mask added as a constant 0/-inf."""
    layer: MultiHeadAttention = node.layer  # type: ignore[assignment]
    name, h = node.name, layer.num_heads
    t = {k: em.init(f"{name}.{k}", a) for k, a in em.plan.tensors[name].items()}
    query, value = xs[0], xs[-1]

    def tmp(what: str) -> str:
        return em.fresh(f"{name}/{what}")

    def project(x: str, which: str) -> str:
        y = em.op("MatMul", [x, t[f"{which}_kernel"]], tmp(which), name)
        return em.op("Add", [y, t[f"{which}_bias"]], tmp(f"{which}_biased"), name)

    def heads(x: str, size: int, perm: list[int], what: str) -> str:
        split = em.op("Reshape", [x, em.ints(f"{name}/heads", [0, 0, h, size])], tmp(what), name)
        return em.op("Transpose", [split], tmp(f"{what}_heads"), name, perm=perm)

    q = heads(project(query, "query"), layer.key_dim, [0, 2, 1, 3], "q")  # [B, H, T, k]
    k = heads(project(value, "key"), layer.key_dim, [0, 2, 3, 1], "k")  # [B, H, k, S]
    v = heads(project(value, "value"), layer.head_value, [0, 2, 1, 3], "v")  # [B, H, S, v]
    scores = em.op("MatMul", [q, k], tmp("scores"), name)
    scores = em.op("Mul", [scores, em.const(1.0 / math.sqrt(layer.key_dim))], tmp("scaled"), name)
    if layer.causal:
        steps, keys = node.input_shapes[0][0], node.input_shapes[-1][0]
        if steps is None or keys is None:  # a dynamic time axis: the mask of the call's lengths
            mask = em.causal_mask(query, value, name)
        else:
            allowed = np.tril(np.ones((steps, keys), dtype=bool))
            mask = em.init(f"{name}/causal_mask", np.where(allowed, 0.0, -np.inf))
        scores = em.op("Add", [scores, mask], tmp("masked"), name)
    weights = em.op("Softmax", [scores], tmp("weights"), name, axis=-1)
    o = em.op("MatMul", [weights, v], tmp("attended"), name)
    o = em.op("Transpose", [o], tmp("batch_major"), name, perm=[0, 2, 1, 3])
    width = h * layer.head_value
    o = em.op("Reshape", [o, em.ints(f"{name}/merged", [0, 0, width])], tmp("merged"), name)
    y = em.op("MatMul", [o, t["output_kernel"]], tmp("output"), name)
    return em.op("Add", [y, t["output_bias"]], name, name)
