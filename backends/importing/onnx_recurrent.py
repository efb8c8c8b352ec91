"""ONNX LSTM, GRU and RNN nodes as netspec's lstm, gru and simple_rnn: gate orders, biases and the outputs' views.

ONNX stacks gates as LSTM (i, o, f, c) and GRU (z, r, h) with B = [Wb; Rb] per direction
(docs/Operators.md); netspec stores torch's orders, LSTM (i, f, g, o) and GRU (r, z, n), one
LSTM/RNN bias (Wb + Rb) and GRU's two (netspec/layers/recurrent.py).
"""

from __future__ import annotations

import numpy as np
import onnx

from .onnx_graph import Importer, Unsupported, Val, attrs

# ONNX's position of each netspec gate (the inverse of the export's ONNX_GATES).
NETSPEC_FROM_ONNX = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
KIND = {"LSTM": "lstm", "GRU": "gru", "RNN": "simple_rnn"}
DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def _reorder(a: np.ndarray, op: str, units: int) -> np.ndarray:
    """Rows of gate blocks from ONNX's order to netspec's."""
    return np.concatenate([a[g * units : (g + 1) * units] for g in NETSPEC_FROM_ONNX[op]])


def _zero_state(ctx: Importer, node: onnx.NodeProto, k: int) -> None:
    if len(node.input) > k and node.input[k]:
        state = ctx.const(node.input[k])
        if state is None or np.any(state):
            raise Unsupported("an initial state that is not zero")


def op_recurrent(ctx: Importer, node: onnx.NodeProto) -> None:
    op, a = node.op_type, attrs(node)
    units = int(a["hidden_size"])
    direction = a.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction == "reverse":
        raise Unsupported("direction reverse (netspec runs forward, or both ways)")
    acts = [x.decode() if isinstance(x, bytes) else x for x in a.get("activations", [])]
    per = DEFAULT_ACTS[op]
    if acts and acts != per * (len(acts) // len(per)):
        raise Unsupported(f"activations {acts}")
    if "clip" in a or a.get("input_forget", 0):
        raise Unsupported("clip or input_forget")
    if op == "GRU" and not a.get("linear_before_reset", 0):
        raise Unsupported("linear_before_reset=0 (netspec's GRU resets after the product)")
    if len(node.input) > 4 and node.input[4]:
        raise Unsupported("sequence_lens")
    _zero_state(ctx, node, 5)
    _zero_state(ctx, node, 6)
    if len(node.output) > 2 and node.output[2] and ctx.readers.get(node.output[2]):
        raise Unsupported("the cell state output Y_c")
    x = ctx.val(node.input[0])
    layout = a.get("layout", 0)
    # X is [T, B, F] (layout 0) of a netspec [T, F] sequence: its tokens say time is axis 1.
    want = ((0, 0), (1, 0), (2, 0)) if layout else ((1, 0), (0, 0), (2, 0))
    if len(x.dims) != 3:
        raise Unsupported("an input that is not a sequence")
    if x.tokens == want:
        src = x.layer
    else:  # another view of a netspec value: made [B, T, F] (permute, reshape) first
        order = (0, 1, 2) if layout else (1, 0, 2)
        view = Val(x.layer, tuple(x.tokens[p] for p in order), tuple(x.dims[p] for p in order))
        src = ctx.source(view, node)
    w, r = ctx.need_const(node, 1, "W"), ctx.need_const(node, 2, "R")
    dirs = w.shape[0]
    gates = len(NETSPEC_FROM_ONNX[op])
    b = ctx.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if b is None:
        if len(node.input) > 3 and node.input[3]:
            raise Unsupported("a computed bias")
        b = np.zeros((dirs, 2 * gates * units), dtype=np.float32)
    weights: dict[str, np.ndarray] = {}
    for d, suffix in enumerate(("", "_reverse")[:dirs]):
        weights[f"weight_ih{suffix}"] = _reorder(w[d], op, units)
        weights[f"weight_hh{suffix}"] = _reorder(r[d], op, units)
        wb, rb = b[d][: gates * units], b[d][gates * units :]
        if op == "GRU":
            weights[f"bias_ih{suffix}"] = _reorder(wb, op, units)
            weights[f"bias_hh{suffix}"] = _reorder(rb, op, units)
        else:  # one bias: ONNX adds both
            weights[f"bias{suffix}"] = _reorder(wb + rb, op, units)
    y_used = bool(node.output[0]) and bool(ctx.readers.get(node.output[0]))
    h_used = len(node.output) > 1 and bool(node.output[1]) and bool(ctx.readers.get(node.output[1]))
    if y_used and h_used:
        raise Unsupported("both Y and Y_h used (netspec's layer gives one of them)")
    args: dict[str, object] = {"units": units}
    if dirs == 2:
        args["bidirectional"] = True
    if y_used:
        args["return_sequences"] = True
    lay = ctx.add(node, KIND[op], args, [src], weights, out=0 if y_used else 1, bind=False)
    steps = ctx.shape_of(src)[0]
    if y_used and layout:  # Y [B, T, D, H] of netspec's [B, T, D*H]
        tokens, dims, out = (
            ((0, 0), (1, 0), (2, 0), (2, 1)),
            (None, steps, dirs, units),
            node.output[0],
        )
    elif y_used:  # Y [T, D, B, H]
        tokens, dims, out = (
            ((1, 0), (2, 0), (0, 0), (2, 1)),
            (steps, dirs, None, units),
            node.output[0],
        )
    elif layout:  # Y_h [B, D, H] of netspec's [B, D*H]
        tokens, dims, out = ((0, 0), (1, 0), (1, 1)), (None, dirs, units), node.output[1]
    else:  # Y_h [D, B, H]
        tokens, dims, out = ((1, 0), (0, 0), (1, 1)), (dirs, None, units), node.output[1]
    lay.onnx_value = out
    ctx.vals[out] = Val(lay.name, tokens, dims)  # type: ignore[arg-type]
