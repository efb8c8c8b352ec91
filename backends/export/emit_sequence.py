"""ONNX emissions of the recurrent layers (the LSTM/GRU/RNN operators), attention (MatMul, Softmax), seq_pool and masking, and of padding masks (lengths) where a layer reads one."""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
from onnx import TensorProto

from netspec.ir import Node
from netspec.layers import Embedding, MultiHeadAttention, Recurrent
from netspec.masks import input_masks, lengths_input, mask_flow

from .emitter import Emitter

# Per export: the graph's mask flow, and each mask source's [B] int64 lengths once emitted.
_MASKS: weakref.WeakKeyDictionary[Emitter, tuple[dict[str, str], dict[str, str]]] = (
    weakref.WeakKeyDictionary()
)


def _source_lengths(em: Emitter, source: Node) -> str:
    """[B] int64 lengths of a mask source's input: the last real step + 1, at least 1. Ids:
    real where the id (truncated, as the embedding's Gather) is not 0; masking: where any
    feature differs from `value`. Computed from the input's own time axis (Shape), so a
    dynamic one works too."""
    name, x = source.name, em.values[source.inputs[0]]

    def tmp(what: str) -> str:
        return em.fresh(f"{name}/mask_{what}")

    if isinstance(source.layer, Embedding):
        ids = em.op("Cast", [x], tmp("ids"), name, to=TensorProto.INT64)
        zero = em.init(f"{name}/mask_zero", np.zeros((), dtype=np.int64))
        pad = em.op("Equal", [ids, zero], tmp("pad"), name)
    else:
        value = em.const(float(source.layer.value))  # type: ignore[attr-defined]
        same = em.op("Equal", [x, value], tmp("same"), name)
        same = em.op("Cast", [same], tmp("same_int"), name, to=TensorProto.INT64)
        # a step is padding when every feature equals the value: min over features is 1
        pad = em.op("ReduceMin", [same], tmp("pad_int"), name, axes=[2], keepdims=0)
        pad = em.op("Cast", [pad], tmp("pad"), name, to=TensorProto.BOOL)
    real = em.op("Not", [pad], tmp("real"), name)
    real = em.op("Cast", [real], tmp("real_int"), name, to=TensorProto.INT64)
    steps = _steps(em, x, name)
    one = em.init(f"{name}/mask_one", np.ones((), dtype=np.int64))
    number = em.op("Add", [steps, one], tmp("number"), name)  # 1..T
    last = em.op("Mul", [real, number], tmp("numbered"), name)
    last = em.op("ReduceMax", [last], tmp("last"), name, axes=[1], keepdims=0)
    return em.op("Max", [last, one], tmp("lengths"), name)


def _steps(em: Emitter, x: str, layer: str) -> str:
    """[T] int64 0..T-1 over the time axis (axis 1) of a batch-major tensor."""
    shape = em.op("Shape", [x], em.fresh(f"{layer}/shape"), layer)
    t = em.op(
        "Gather",
        [shape, em.init(f"{layer}/time_axis", np.ones((), dtype=np.int64))],
        em.fresh(f"{layer}/steps_n"),
        layer,
        axis=0,
    )
    zero = em.init(f"{layer}/start", np.zeros((), dtype=np.int64))
    delta = em.init(f"{layer}/delta", np.ones((), dtype=np.int64))
    return em.op("Range", [zero, t, delta], em.fresh(f"{layer}/steps"), layer)


def node_lengths(em: Emitter, node: Node) -> str | None:
    """The [B] int64 lengths a mask-aware node reads (netspec.masks.lengths_input), emitted at
    their first use; None when the node reads no mask (the unmasked graph is unchanged)."""
    which = lengths_input(node)
    if which is None:
        return None
    if em not in _MASKS:
        _MASKS[em] = (mask_flow(em.graph), {})
    flow, done = _MASKS[em]
    source = input_masks(node, flow)[which]
    if source is None:
        return None
    if source not in done:
        done[source] = _source_lengths(em, em.graph.node(source))
    return done[source]


def _real(em: Emitter, x: str, lengths: str, layer: str, axes: list[int]) -> str:
    """Bool: the steps of x (time on axis 1) before each sample's length, unsqueezed at `axes`
    (of [B, T]) to broadcast."""
    steps = _steps(em, x, layer)
    per = em.op(
        "Unsqueeze", [lengths, em.ints(f"{layer}/batch_col", [1])], em.fresh(f"{layer}/len"), layer
    )
    real = em.op("Less", [steps, per], em.fresh(f"{layer}/real"), layer)  # [B, T]
    return em.op(
        "Unsqueeze", [real, em.ints(f"{layer}/axes", axes)], em.fresh(f"{layer}/real"), layer
    )


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
    ins = [x, w, r, b]
    lengths = node_lengths(em, node)
    if lengths is not None:  # padded steps skipped; their Y is 0, Y_h the last real step's
        lens = em.op(
            "Cast", [lengths], em.fresh(f"{name}/sequence_lens"), name, to=TensorProto.INT32
        )
        ins.append(lens)
    if layer.return_sequences:  # Y: [T, D, B, u] -> [B, T, D * u]
        y = em.fresh(f"{name}/Y")
        em.op_outputs(ONNX_RECURRENT[layer.kind], ins, [y], name, **attrs)
        y = em.op("Transpose", [y], em.fresh(f"{name}/batch_major"), name, perm=[2, 0, 1, 3])
        return em.op("Reshape", [y, em.ints(f"{name}/shape", [0, 0, width])], name, name)
    h = em.fresh(f"{name}/Y_h")  # Y_h: [D, B, u] -> [B, D * u]
    em.op_outputs(ONNX_RECURRENT[layer.kind], ins, ["", h], name, **attrs)
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
    lengths = node_lengths(em, node)
    if lengths is not None:  # padded keys: -inf before the softmax
        real = _real(em, value, lengths, name, [1, 2])  # [B, 1, 1, S]
        inf = em.const(float("-inf"))
        scores = em.op("Where", [real, scores, inf], tmp("key_masked"), name)
    weights = em.op("Softmax", [scores], tmp("weights"), name, axis=-1)
    o = em.op("MatMul", [weights, v], tmp("attended"), name)
    o = em.op("Transpose", [o], tmp("batch_major"), name, perm=[0, 2, 1, 3])
    width = h * layer.head_value
    o = em.op("Reshape", [o, em.ints(f"{name}/merged", [0, 0, width])], tmp("merged"), name)
    y = em.op("MatMul", [o, t["output_kernel"]], tmp("output"), name)
    return em.op("Add", [y, t["output_bias"]], name, name)


def emit_seq_pool(em: Emitter, node: Node, xs: list[str]) -> str:
    """Mean, max or last over time; of a masked sequence, over its real steps only."""
    op = node.layer.op  # type: ignore[attr-defined]
    name, x = node.name, xs[0]
    lengths = node_lengths(em, node)
    if lengths is not None:
        return _masked_pool(em, node, x, lengths)
    if op == "last":
        steps = node.input_shapes[0][0]
        last = em.ints(f"{name}/last", [steps - 1 if steps is not None else -1])
        step = em.op("Gather", [x, last], em.fresh(f"{name}/step"), name, axis=1)
        return em.op("Squeeze", [step, em.ints(f"{name}/axes", [1])], name, name)
    reduce = {"mean": "ReduceMean", "max": "ReduceMax"}[op]
    return em.op(reduce, xs, name, name, axes=[1], keepdims=0)  # opset-13 form


def _masked_pool(em: Emitter, node: Node, x: str, lengths: str) -> str:
    op, name = node.layer.op, node.name  # type: ignore[attr-defined]

    def tmp(what: str) -> str:
        return em.fresh(f"{name}/{what}")

    if op == "max":
        real = _real(em, x, lengths, name, [2])  # [B, T, 1]
        kept = em.op("Where", [real, x, em.const(float("-inf"))], tmp("real_steps"), name)
        return em.op("ReduceMax", [kept], name, name, axes=[1], keepdims=0)
    if op == "last":  # the one step at length - 1; Where, not a product, so no 0 * inf
        one = em.init(f"{name}/one", np.ones((), dtype=np.int64))
        before = em.op("Sub", [lengths, one], tmp("last_index"), name)
        steps = _steps(em, x, name)
        col = em.op("Unsqueeze", [before, em.ints(f"{name}/col", [1])], tmp("last_col"), name)
        pick = em.op("Equal", [steps, col], tmp("is_last"), name)
        pick = em.op("Unsqueeze", [pick, em.ints(f"{name}/feature", [2])], tmp("is_last"), name)
        x = em.op("Where", [pick, x, em.const(0.0)], tmp("last_step"), name)
        return em.op("ReduceSum", [x, em.ints(f"{name}/time", [1])], name, name, keepdims=0)
    real = _real(em, x, lengths, name, [2])
    kept = em.op("Where", [real, x, em.const(0.0)], tmp("real_steps"), name)
    total = em.op("ReduceSum", [kept, em.ints(f"{name}/time", [1])], tmp("sum"), name, keepdims=0)
    count = em.op("Cast", [lengths], tmp("count"), name, to=em.elem)
    count = em.op("Unsqueeze", [count, em.ints(f"{name}/col", [1])], tmp("count"), name)
    return em.op("Div", [total, count], name, name)


def emit_masking(em: Emitter, node: Node, xs: list[str]) -> str:
    """The input unchanged (no node): the mask is the lengths the layers after it compute from it."""
    return xs[0]
