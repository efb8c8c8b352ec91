"""What the ONNX importer does after the walk: patterns producers split into several ops joined into one netspec layer, then the spec and its weights under unique names."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from netspec.items import INPUT, NAME_RE

from .onnx_graph import Importer, Lay
from .onnx_ops import uniform

WEIGHTED = ("dense", "conv1d", "conv2d", "conv_transpose2d")
# Activation layers a dense or convolution takes as its `activation:` (netspec fuses these).
FUSABLE = ("relu", "sigmoid", "tanh", "relu6", "silu", "gelu", "leaky_relu", "softmax", "elu")
RECURRENT = ("lstm", "gru", "simple_rnn")


def hard_swish_nodes(ctx: Importer) -> dict[str, str]:
    """hard-swish written out as x * Clip(x + 3, 0, 6) / 6 (as tf2onnx and paddle2onnx do):
    node name -> x for its last node (the Div: one hard_swish layer), "" for the others."""
    graph = ctx.model.graph
    consts = graph_consts(ctx)
    made = {o: n for n in graph.node for o in n.output}

    def is_const(name: str, value: float) -> bool:
        c = consts.get(name)
        return c is not None and c.size == 1 and float(c.reshape(-1)[0]) == value

    found: dict[str, str] = {}
    for div in graph.node:
        if div.op_type != "Div" or not is_const(div.input[1], 6.0):
            continue
        mul = made.get(div.input[0])
        if mul is None or mul.op_type != "Mul":
            continue
        for x, c in (mul.input, reversed(mul.input)):
            clip = made.get(c)
            add = made.get(clip.input[0]) if clip is not None and clip.op_type == "Clip" else None
            if add is not None and add.op_type == "Add" and x in add.input:
                other = [i for i in add.input if i != x]
                if other and is_const(other[0], 3.0):
                    found |= {mul.name: "", clip.name: "", add.name: "", div.name: x}
    return found


def gelu_nodes(ctx: Importer) -> dict[str, str]:
    """GELU written out with Erf (below opset 20): netspec's 0.5x * (1 + erf(x * 1/sqrt 2)) and
    torch's x * (1 + erf(x / sqrt 2)) * 0.5. Node name -> x for the last node of each, "" for
    the others (computed by the one gelu layer)."""
    graph = ctx.model.graph
    consts = graph_consts(ctx)
    made = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def is_const(name: str, value: float) -> bool:
        c = consts.get(name)
        return c is not None and c.size == 1 and abs(float(c.reshape(-1)[0]) - value) < 1e-6

    def other(node: onnx.NodeProto, name: str) -> str:
        rest = [i for i in node.input if i != name]
        return rest[0] if len(rest) == 1 else ""

    found: dict[str, str] = {}
    for erf in graph.node:
        arg = made.get(erf.input[0]) if erf.op_type == "Erf" else None
        if arg is None or len(arg.input) != 2:
            continue
        x = arg.input[0]
        if not (
            (arg.op_type == "Mul" and is_const(arg.input[1], 0.5**0.5))
            or (arg.op_type == "Div" and is_const(arg.input[1], 2**0.5))
        ):
            continue
        adds = readers.get(erf.output[0], [])
        if (
            len(adds) != 1
            or adds[0].op_type != "Add"
            or not is_const(other(adds[0], erf.output[0]), 1.0)
        ):
            continue
        add = adds[0]
        muls = readers.get(add.output[0], [])
        if len(muls) != 1 or muls[0].op_type != "Mul":
            continue
        m1 = muls[0]
        factor = made.get(other(m1, add.output[0]))
        if (
            factor is not None
            and factor.op_type == "Mul"
            and set(factor.input) >= {x}
            and is_const(other(factor, x), 0.5)
        ):
            found |= {arg.name: "", erf.name: "", add.name: "", factor.name: "", m1.name: x}
            continue
        last = readers.get(m1.output[0], [])
        if (
            other(m1, add.output[0]) == x
            and len(last) == 1
            and last[0].op_type == "Mul"
            and is_const(other(last[0], m1.output[0]), 0.5)
        ):
            found |= {arg.name: "", erf.name: "", add.name: "", m1.name: "", last[0].name: x}
    return found


ATTENTION = ("query", "key", "value", "output")


def attention_groups(ctx: Importer) -> dict[str, tuple[str, dict[str, object]]]:
    """netspec's own multi_head_attention exports (initializers `<layer>.query_kernel`, ...;
    nodes `<layer>/...`): node name -> (layer, what it needs) for the node that writes the
    layer's output, (layer, {}) for the others, which the one layer computes."""
    graph = ctx.model.graph
    found: dict[str, tuple[str, dict[str, object]]] = {}
    layers = [
        t.name[: -len(".query_kernel")]
        for t in graph.initializer
        if t.name.endswith(".query_kernel")
    ]
    for layer in layers:
        names = [f"{layer}.{w}_{p}" for w in ATTENTION for p in ("kernel", "bias")]
        if not all(n in ctx.consts for n in names):
            continue
        group = [n for n in graph.node if n.name.startswith(f"{layer}/")]
        ids = {n.name for n in group}
        used = {i for n in graph.node if n.name not in ids for i in n.input}
        used |= {o.name for o in graph.output}
        finals = [n for n in group if any(o in used for o in n.output if o)]
        ops = {n.op_type for n in group}
        reads = {
            n.input[1]: n.input[0] for n in group if n.op_type == "MatMul" and len(n.input) == 2
        }
        biased = {o for m in group if f"{layer}.query_bias" in m.input for o in m.output}
        split = [n for n in group if n.op_type == "Reshape" and n.input[0] in biased]
        heads = ctx.consts.get(split[0].input[1]) if split else None
        if len(finals) != 1 or heads is None or "Less" in ops:
            continue  # not the export's form (or its padded keys masked): op by op
        num_heads, key_dim = int(heads[2]), int(heads[3])
        value_dim = ctx.consts[f"{layer}.value_kernel"].shape[1] // num_heads
        spec: dict[str, object] = {
            "query": reads.get(f"{layer}.query_kernel"),
            "value": reads.get(f"{layer}.key_kernel"),
            "args": {
                "num_heads": num_heads,
                "key_dim": key_dim,
                **({"value_dim": value_dim} if value_dim != key_dim else {}),
                **(
                    {"causal": True}
                    if "LessOrEqual" in ops or f"{layer}/causal_mask" in ctx.consts
                    else {}
                ),
            },
            "weights": {
                f"{w}_{p}": ctx.consts[f"{layer}.{w}_{p}"]
                for w in ATTENTION
                for p in ("kernel", "bias")
            },
        }
        for n in group:
            found[n.name] = (layer, spec if n.name == finals[0].name else {})
    return found


def graph_consts(ctx: Importer) -> dict[str, np.ndarray]:
    consts = dict(ctx.consts)
    for node in ctx.model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return consts


def join_patterns(ctx: Importer, last: str, own: bool) -> tuple[list[Lay], str]:
    """The layers that reach the output, with the split patterns joined: a padding into the
    convolution after it, an activation into the dense or convolution before it, a global pool
    with the flatten after it, a recurrent layer with the last-step pooling after it.

    `own`: the file is netspec's export, whose zeropad2d layers stay (it writes a Pad before a
    convolution only for a padded 1x1 kernel).
    """
    layers = _reachable(ctx, last)
    changed = True
    while changed:
        changed = False
        readers: dict[str, list[Lay]] = {}
        for lay in layers:
            for i in lay.inputs:
                readers.setdefault(i, []).append(lay)
        for b in layers:
            if len(b.inputs) != 1 or b.inputs[0] == INPUT:
                continue
            a = ctx.layers[b.inputs[0]]
            if len(readers.get(a.name, [])) != 1 or a.name == last:
                continue
            if _join(a, b, own):
                layers = [x for x in layers if x is not b]
                for x in layers:
                    x.inputs = [a.name if i == b.name else i for i in x.inputs]
                    if x.args.get("to") == b.name:
                        x.args["to"] = a.name
                a.shape = b.shape
                last = a.name if b.name == last else last
                changed = True
                break
    return layers, last


def _edge_list(value: int | list[int], n: int) -> list[int]:
    return [value] * n if isinstance(value, int) else list(value)


def _join(a: Lay, b: Lay, own: bool) -> bool:
    """Make `a` compute `a` then `b` (a is read only by b), if netspec has the one layer."""
    if a.kind in WEIGHTED and "activation" not in a.args and b.kind in FUSABLE:
        if b.kind in ("leaky_relu", "gelu", "elu") and b.args:
            return False  # fused: leaky_relu's default slope, exact gelu, elu's alpha 1
        if b.kind == "softmax":
            axis = b.args.get("axis", 0) % len(b.shape)
            if axis != (len(b.shape) - 1 if a.kind == "dense" else 0):
                return False
        a.args["activation"] = b.kind
        return True
    if a.kind == "zeropad2d" and b.kind == "conv2d" and "padding" not in b.args:
        top, bottom, left, right = a.args["padding"]
        kernel = b.args["kernel"]
        if top != bottom or left != right or (own and kernel not in (1, [1, 1])):
            return False
        # a becomes the convolution, padded itself
        a.kind, a.args = b.kind, {**b.args, "padding": top if top == left else [top, left]}
        a.weights, a.base = b.weights, b.base
        return True
    if a.kind == b.kind and a.kind in ("trim1d", "trim2d"):  # torch slices one axis at a time
        n = 2 if a.kind == "trim1d" else 4
        cuts = [_edge_list(a.args["trim"], n), _edge_list(b.args["trim"], n)]
        a.args = {"trim": uniform([x + y for x, y in zip(*cuts)])}
        return True
    if a.kind.startswith("global_") and a.args.get("keepdims") and b.kind == "flatten":
        del a.args["keepdims"]
        return True
    if (
        a.kind in RECURRENT
        and a.args.get("return_sequences")
        and not a.args.get("bidirectional")
        and b.kind == "seq_pool"
        and b.args.get("op") == "last"
    ):
        del a.args["return_sequences"]
        return True
    return False


def _reachable(ctx: Importer, last: str) -> list[Lay]:
    """The layers the output depends on, in the order they were made (a topological one)."""
    need, stack = {last}, [last]
    while stack:
        lay = ctx.layers[stack.pop()]
        refs = [*lay.inputs, *([lay.args["to"]] if "to" in lay.args else [])]
        for i in refs:
            if i != INPUT and i not in need:
                need.add(i)
                stack.append(i)
    return [lay for key, lay in ctx.layers.items() if key in need]


def build_spec(
    ctx: Importer, layers: list[Lay], last: str, name: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The spec mapping (names unique, each layer's inputs where they are not the previous
    layer) and the weights under `<layer>.<tensor>`."""
    final: dict[str, str] = {INPUT: INPUT}
    taken = {INPUT}
    for lay in layers:
        base, k = lay.base, 1
        candidate = base
        while candidate in taken:
            candidate = f"{base}_{k}"
            k += 1
        taken.add(candidate)
        final[lay.name] = candidate
    items, weights, prev = [], {}, INPUT
    for lay in layers:
        args = {k: (final[v] if k == "to" else v) for k, v in lay.args.items()}
        item: dict[str, Any] = {lay.kind: args or None, "name": final[lay.name]}
        ins = [final[i] for i in lay.inputs]
        if ins != [prev]:
            item["inputs"] = ins
        items.append(item)
        prev = final[lay.name]
        for t, w in lay.weights.items():
            weights[f"{final[lay.name]}.{t}"] = np.array(w, dtype=np.float32, order="C")
    assert final[last] == prev  # the output is the last layer
    title = name if NAME_RE.match(name) else "imported"
    return {"name": title, "input": list(ctx.input_shape), "layers": items}, weights
