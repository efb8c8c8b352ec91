"""torch's nn.MultiheadAttention (self-attention, batch_first) as torch.onnx writes it: the
nodes of one module scope recognised as netspec's multi_head_attention, its weights converted."""

# torch.onnx (TorchScript exporter) writes the module's Python arithmetic op by op under the
# module's scope (`/att/...`, `/layers.0/self_attn/...`): the input transposed to [T, N, E], one
# MatMul by the packed in_proj (constant-folded to (E, 3E)) plus its bias, the split into q, k,
# v through Shape/Gather/Reshape/Transpose chains, q * s and k^T * s with s = sqrt(1/sqrt(d)),
# Softmax (with need_weights, torch's default: q * 1/sqrt(d) by a constant, then k^T), the
# weighted sum, out_proj (Gemm), the transpose back. What varies with shapes is
# computed from Shape; the only constant that gives the heads is the divisor of E in
# `head_dim = E // num_heads` (a Div of the embedding size by a scalar). A scope that does not
# have exactly this form (a key padding mask or attn_mask adds Where/Add nodes and an input;
# separate q/k/v weights for cross-attention) is left to the op-by-op walk, which refuses it.

from __future__ import annotations

import numpy as np
import onnx

from .onnx_graph import Importer

TORCH_FORM = {"MatMul", "Add", "Softmax", "Transpose", "Reshape", "Div", "Gemm"}


def _scope(node: onnx.NodeProto) -> str | None:
    return node.name.rsplit("/", 1)[0] + "/" if node.name.startswith("/") else None


def torch_attention_groups(
    ctx: Importer, consts: dict[str, np.ndarray]
) -> dict[str, tuple[str, dict[str, object]]]:
    """Node name -> (layer base, what it needs) as `onnx_patterns.attention_groups` gives it:
    the need for the node writing the scope's output, {} for the scope's other nodes."""
    graph = ctx.model.graph
    consts = dict(consts)
    for node in graph.node:  # weights torch shares between identical layers: Identity of one
        if node.op_type == "Identity" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
    scopes: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        scope = _scope(node)
        if scope and node.op_type != "Constant":  # constants stay: torch shares them by value
            scopes.setdefault(scope, []).append(node)
    found: dict[str, tuple[str, dict[str, object]]] = {}
    for scope, group in scopes.items():
        need = _need(ctx, consts, scope, group)
        if need is None:
            continue
        final = need.pop("final")
        for n in group:
            found[n.name] = (scope.strip("/"), need if n.name == final else {})
    return found


def _scores(
    producer: dict[str, onnx.NodeProto], consts: dict[str, np.ndarray], value: str
) -> tuple[bool, onnx.NodeProto | None]:
    """(causal, the scores' MatMul) before the Softmax: an Add of a constant mask, -inf above
    the diagonal and 0 elsewhere (attn_mask=generate_square_subsequent_mask, is_causal), is
    netspec's `causal`; a Mul by 1 (baddbmm's form) is nothing; any other mask: None."""
    causal = False
    node = producer.get(value)
    if node is not None and node.op_type == "Add":
        mask = next((consts[i] for i in node.input if i in consts), None)
        rest = [i for i in node.input if i not in consts]
        if mask is None or len(rest) != 1 or mask.ndim < 2:
            return False, None
        mask = mask.reshape(mask.shape[-2:])
        above = np.triu(np.ones(mask.shape, bool), 1)
        if mask.shape[0] != mask.shape[1] or not (
            np.all(np.isneginf(mask[above])) and np.all(mask[~above] == 0)
        ):
            return False, None
        causal, node = True, producer.get(rest[0])
    if node is not None and node.op_type == "Mul":
        one = [i for i in node.input if i in consts and consts[i].size == 1 and consts[i] == 1]
        rest = [i for i in node.input if i not in consts]
        node = producer.get(rest[0]) if one and len(rest) == 1 else None
    return causal, node if node is not None and node.op_type == "MatMul" else None


def _weights(
    w_in: np.ndarray, b_in: np.ndarray, w_out: np.ndarray, b_out: np.ndarray
) -> dict[str, np.ndarray]:
    """netspec's tensors from torch's packed in_proj (E, 3E: q, k, v, each head-major, as
    netspec's kernels are) and out_proj (in, out)."""
    e = len(w_in)
    b_in = np.asarray(b_in, np.float32).reshape(-1)
    return {
        "query_kernel": w_in[:, :e],
        "query_bias": b_in[:e],
        "key_kernel": w_in[:, e : 2 * e],
        "key_bias": b_in[e : 2 * e],
        "value_kernel": w_in[:, 2 * e :],
        "value_bias": b_in[2 * e :],
        "output_kernel": w_out,
        "output_bias": np.asarray(b_out, np.float32).reshape(-1),
    }


def _need(
    ctx: Importer, consts: dict[str, np.ndarray], scope: str, group: list[onnx.NodeProto]
) -> dict | None:
    """What the scope's one layer needs (with `final`, the node writing its output), None when
    the scope is not torch's attention, or {"refuse": why, "final": ...} when it is but in a
    form netspec cannot express."""
    ops = [n.op_type for n in group]
    made = {o for n in group for o in n.output}
    packed = [
        n
        for n in group
        if n.op_type == "MatMul" and n.input[1] in consts and consts[n.input[1]].ndim == 2
    ]
    packed = [n for n in packed if consts[n.input[1]].shape[1] == 3 * len(consts[n.input[1]])]
    if ops.count("Softmax") != 1 or len(packed) != 1 or not set(ops) >= TORCH_FORM:
        return None
    ids = {n.name for n in group}
    outside = [n for n in ctx.model.graph.node if n.name not in ids]
    used = {i for n in outside for i in n.input} | {o.name for o in ctx.model.graph.output}
    finals = [n for n in group if any(o in used for o in n.output if o)]
    final = (finals or group)[-1].name
    reads = {i for n in group for i in n.input if i and i not in made and i not in consts}
    if len(finals) != 1:
        return {"refuse": "torch's attention with its weights as an output", "final": final}
    if len(reads) != 1:
        why = "torch's attention with separate query, key and value inputs, or a mask input"
        return {"refuse": why, "final": final}
    (x,) = reads
    producer = {o: n for n in group for o in n.output}
    (softmax,) = (n for n in group if n.op_type == "Softmax")
    causal, scores = _scores(producer, consts, softmax.input[0])
    if scores is None:
        why = "a mask on the attention scores other than the causal one"
        return {"refuse": why, "final": final}
    w_in = consts[packed[0].input[1]]
    embed = w_in.shape[0]
    bias_add = [n for n in group if n.op_type == "Add" and packed[0].output[0] in n.input]
    b_in = next((consts[i] for n in bias_add for i in n.input if i in consts), None)
    gemm = [n for n in group if n.op_type == "Gemm"]
    heads = [
        int(consts[n.input[1]])
        for n in group
        if n.op_type == "Div" and n.input[1] in consts and consts[n.input[1]].size == 1
    ]
    if b_in is None or len(gemm) != 1 or len(gemm[0].input) < 3 or len(heads) != 1:
        return {
            "refuse": "torch's attention without biases, or not as torch 2 writes it",
            "final": final,
        }
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gemm[0].attribute}
    w_out, b_out = consts.get(gemm[0].input[1]), consts.get(gemm[0].input[2])
    num_heads = heads[0]
    scales = [
        float(consts[i])
        for n in group
        if n.op_type == "Mul"
        for i in n.input
        if i in consts and consts[i].size == 1 and consts[i].dtype.kind == "f" and consts[i] != 1
    ]
    if (
        w_out is None
        or b_out is None
        or attrs.get("alpha", 1.0) != 1.0
        or num_heads < 1
        or embed % num_heads
        or any(abs(v * np.sqrt(embed // num_heads) - 1) > 1e-5 for v in scales)
    ):
        why = "torch's attention with other score scaling or output projection than torch 2's"
        return {"refuse": why, "final": final}
    weights = _weights(w_in, b_in, w_out.T if attrs.get("transB", 0) else w_out, b_out)
    args = {"num_heads": num_heads, "key_dim": embed // num_heads}
    if causal:
        args["causal"] = True
    return {"query": x, "value": x, "args": args, "weights": weights, "final": final}
