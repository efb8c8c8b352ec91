"""`read_onnx`: an ONNX file as a netspec spec and weights (`Imported`), or one error listing everything it cannot import.

The graph is walked once in its (topological) order: constant subgraphs are evaluated (the
onnx reference evaluator), layout-only ops become views of netspec values (onnx_graph.Val),
every other op a layer (onnx_ops, onnx_views, onnx_reshape, onnx_recurrent); the input is
read first (onnx_input). Then the patterns producers
split into several ops are joined (onnx_patterns) and the spec is compiled and its weights
checked, so what comes back is a spec netspec accepts. Only the `onnx` package is used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from netspec.compiler import compile_text
from netspec.errors import DataError, NetspecError, Problem, few, first_line
from netspec.items import INPUT

from .model import Imported
from .onnx_classifier import label_head
from .onnx_graph import BATCH, Importer, Unsupported, load
from .onnx_input import input_affine, read_input
from .onnx_ops import (
    activation,
    global_pool,
    op_batchnorm,
    op_clip,
    op_conv,
    op_conv_transpose,
    op_elu,
    op_gelu,
    op_gemm,
    op_hard_sigmoid,
    op_hard_swish,
    op_layernorm,
    op_leaky_relu,
    op_matmul,
    op_prelu,
    op_softmax,
    pool,
    reduce,
)
from .onnx_patterns import (
    attention_groups,
    build_spec,
    gelu_nodes,
    graph_consts,
    hard_swish_nodes,
    join_patterns,
)
from .onnx_recurrent import op_recurrent
from .onnx_reshape import op_flatten, op_reshape
from .onnx_torch_attention import torch_attention_groups
from .onnx_views import (
    op_add,
    op_cast,
    op_concat,
    op_gather,
    op_identity,
    op_mul,
    op_pad,
    op_resize,
    op_shape,
    op_slice,
    op_squeeze,
    op_sum,
    op_transpose,
    op_unsqueeze,
)

OPS = {
    "Conv": op_conv,
    "ConvTranspose": op_conv_transpose,
    "Gemm": op_gemm,
    "MatMul": op_matmul,
    "BatchNormalization": op_batchnorm,
    "LayerNormalization": op_layernorm,
    "Relu": activation("relu"),
    "Sigmoid": activation("sigmoid"),
    "Tanh": activation("tanh"),
    "LeakyRelu": op_leaky_relu,
    "Elu": op_elu,
    "PRelu": op_prelu,
    "Softmax": op_softmax,
    "Gelu": op_gelu,
    "Clip": op_clip,
    "HardSigmoid": op_hard_sigmoid,
    "HardSwish": op_hard_swish,
    "MaxPool": pool("max"),
    "AveragePool": pool("avg"),
    "GlobalAveragePool": global_pool("avg"),
    "GlobalMaxPool": global_pool("max"),
    "ReduceMean": reduce("avg"),
    "ReduceMax": reduce("max"),
    "Add": op_add,
    "Sum": op_sum,
    "Concat": op_concat,
    "Mul": op_mul,
    "Identity": op_identity,
    "Cast": op_cast,
    "Dropout": op_identity,
    "Transpose": op_transpose,
    "Unsqueeze": op_unsqueeze,
    "Squeeze": op_squeeze,
    "Flatten": op_flatten,
    "Reshape": op_reshape,
    "Shape": op_shape,
    "Gather": op_gather,
    "Slice": op_slice,
    "Pad": op_pad,
    "Resize": op_resize,
    "Upsample": op_resize,
    "LSTM": op_recurrent,
    "GRU": op_recurrent,
    "RNN": op_recurrent,
}
# Evaluated when every input is a constant (shape arithmetic, weight reordering), never a layer.
FOLD_ONLY = frozenset({"Constant", "ConstantOfShape", "Cast", "Range", "Expand", "Equal", "Where"})
CONSTANT_OPS = FOLD_ONLY | {"Div", "Sub"} | set(OPS)


def read_onnx(path: Path, input_shape: tuple[int, ...] | None = None) -> Imported:
    """The spec and weights of an ONNX model, or a DataError listing every node it cannot import.

    `input_shape` (per sample, without the batch) fixes the input's dynamic dimensions; the
    first input dimension is always the batch.
    """
    path = Path(path)
    where = str(path)
    model = load(path)
    ctx = Importer(model, path)
    head = label_head(model)  # a classifier's label output beside its probabilities
    if head is not None:
        ctx.skip |= head.dropped
    read_input(ctx, input_shape)
    preprocessing = input_affine(ctx)
    problems = _walk(ctx)
    outputs = [head.probabilities] if head else [o.name for o in model.graph.output]
    if len(outputs) != 1:
        problems.append(
            Problem(
                f"the model has {len(outputs)} outputs; a netspec network has one",
                where,
                hint="export the model with a single output",
            )
        )
    if problems:
        raise DataError(problems)
    out = outputs[0]
    producer = next((n for n in model.graph.node if out in n.output), None)
    try:
        last = ctx.source(ctx.vals[out], producer) if producer and out in ctx.vals else INPUT
    except Unsupported as exc:
        raise DataError.one(f"the output '{out}': {exc}", where) from None
    if last == INPUT:
        raise DataError.one(f"the output '{out}' is the input: the model computes nothing", where)
    made_by = f"{model.producer_name} {model.producer_version}".strip() or "unknown producer"
    layers, last = join_patterns(ctx, last, own=model.producer_name == "netspec")
    name = model.graph.name or path.stem
    spec, weights = build_spec(ctx, layers, last, name)
    _check(spec, weights, where)
    notes = []
    if ctx.fixed_batch is not None:
        notes.append(
            f"the source model had a fixed batch size {ctx.fixed_batch}; netspec's is free"
        )
    if ctx.input_layout:
        notes.append(
            f"the source model takes {ctx.input_layout} inputs; the spec's input is channels-first"
        )
    if head is not None:
        notes.append(
            f"the source model's label output (the ArgMax of its probabilities) became the "
            f"run's classes ({few(head.classes)}); its probabilities are the network's output"
        )
    if preprocessing:
        notes.append(
            "the scaling and normalization at the model's input became its preprocessing record"
        )
    return Imported(
        spec,
        weights,
        path,
        f"onnx: {made_by}",
        input_layout=ctx.input_layout,
        preprocessing=preprocessing,
        classes=head.classes if head else None,
        notes=notes,
    )


class _Refusals:
    """The nodes that could not be imported: per op type, their names and the distinct reasons."""

    def __init__(self) -> None:
        self.failed: dict[str, tuple[list[str], list[str]]] = {}  # op -> (node names, reasons)

    def __call__(self, op: str, node: str, reason: str) -> None:
        names, reasons = self.failed.setdefault(op, ([], []))
        names.append(node)
        if reason not in reasons:
            reasons.append(reason)

    def problems(self, path: Path) -> list[Problem]:
        """One problem per op type, in the order they were first refused."""
        return [
            Problem(
                f"cannot import {op} ({len(names)} node{'s' if len(names) > 1 else ''}: "
                f"{few(names)}): {'; '.join(reasons)}",
                str(path),
            )
            for op, (names, reasons) in self.failed.items()
        ]


def _walk(ctx: Importer) -> list[Problem]:
    """Every node handled in order; the problems, one per op type that could not be imported."""
    refuse = _Refusals()
    poisoned: set[str] = set()
    claimed = hard_swish_nodes(ctx)
    gelus = gelu_nodes(ctx)
    attention = attention_groups(ctx) | torch_attention_groups(ctx, graph_consts(ctx))
    for k, node in enumerate(ctx.model.graph.node):
        if node.output and node.output[0] in ctx.skip:
            continue
        label = node.name or f"#{k} ({node.op_type})"
        ins = [i for i in node.input if i]
        outs = [o for o in node.output if o]
        if node.name in claimed and node.name:
            if claimed[node.name]:  # the Div of x * Clip(x + 3, 0, 6) / 6: the one layer
                try:
                    ctx.add(node, "hard_swish", {}, [ctx.source(ctx.val(claimed[node.name]), node)])
                except Unsupported as exc:
                    refuse("hard_swish (Add/Clip/Mul/Div)", label, str(exc))
                    poisoned.update(outs)
            continue
        if node.domain not in ("", "ai.onnx"):
            refuse(f"{node.domain}.{node.op_type}", label, "an operator outside the ONNX standard")
            poisoned.update(outs)
            continue
        if node.name and node.name in gelus and not any(i in poisoned for i in ins):
            if gelus[node.name]:  # the last node of an erf-form GELU: the layer
                try:
                    src = ctx.source(ctx.val(gelus[node.name]), node)
                    ctx.add(node, "gelu", {}, [src])
                except Unsupported as exc:
                    refuse("Erf", label, str(exc))
                    poisoned.update(outs)
            continue
        if node.name and node.name in attention:
            _, need = attention[node.name]
            if need:  # the node that writes the attention's output: the one layer
                try:
                    _attention(ctx, node, need)
                except Unsupported as exc:
                    refuse("multi_head_attention", label, str(exc))
                    poisoned.update(outs)
            continue
        if any(i in poisoned for i in ins):  # after a refused node: only unknown ops are listed
            poisoned.update(outs)
            if node.op_type not in OPS and node.op_type not in FOLD_ONLY:
                refuse(node.op_type, label, "no netspec equivalent")
            continue
        if (
            node.op_type in CONSTANT_OPS
            and all(i in ctx.consts for i in ins)
            and (ins or node.op_type == "Constant")
        ):
            try:
                _evaluate(ctx, node)
            except Exception as exc:  # the reference evaluator on a malformed constant op
                refuse(
                    node.op_type, label, f"a constant that cannot be computed: {first_line(exc)}"
                )
                poisoned.update(outs)
            continue
        handler = OPS.get(node.op_type)
        if handler is None:
            refuse(node.op_type, label, "no netspec equivalent")
            poisoned.update(outs)
            continue
        try:
            handler(ctx, node)
        except Unsupported as exc:
            refuse(node.op_type, label, str(exc))
            poisoned.update(outs)
        except Exception as exc:  # a malformed node: refused with its reason, never a traceback
            refuse(node.op_type, label, f"a malformed node: {first_line(exc)}")
            poisoned.update(outs)
    return refuse.problems(ctx.path)


def _attention(ctx: Importer, node: onnx.NodeProto, need: dict) -> None:
    if "refuse" in need:  # recognised as attention, in a form netspec cannot express
        raise Unsupported(need["refuse"])
    query = ctx.source(ctx.val(need["query"]), node)
    value = ctx.source(ctx.val(need["value"]), node)
    inputs = [query] if query == value else [query, value]
    ctx.add(node, "multi_head_attention", need["args"], inputs, need["weights"])


def _evaluate(ctx: Importer, node: onnx.NodeProto) -> None:
    feeds = {i: ctx.consts[i] for i in node.input if i}
    if node.op_type in ("ConstantOfShape", "Expand"):  # a batch-sized state: one sample's
        feeds = {
            k: np.where(v == BATCH, 1, v) if v.dtype.kind == "i" else v for k, v in feeds.items()
        }
    if node.op_type == "Constant":
        value = next(a for a in node.attribute if a.name.startswith("value"))
        if value.name == "value":
            ctx.consts[node.output[0]] = numpy_helper.to_array(value.t)
            return
    results = ReferenceEvaluator(node, opsets={"": ctx.opset}).run(None, feeds)
    for name, value in zip(node.output, results):
        if name:
            ctx.consts[name] = np.asarray(value)


def _check(spec: dict, weights: dict[str, np.ndarray], where: str) -> None:
    """The spec compiles and the weights are exactly the tensors it declares."""
    try:
        graph = compile_text(yaml.safe_dump(spec, sort_keys=False), where)
    except NetspecError as exc:
        raise DataError.one(
            f"the imported network does not compile in netspec: {first_line(exc)}", where
        ) from None
    declared = {f"{n.name}.{t}": tuple(w.shape) for n in graph.nodes for t, w in n.weights.items()}
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if declared != got:
        wrong = sorted(set(declared.items()) ^ set(got.items()))
        raise DataError.one(
            f"the imported weights do not fit the spec: {few([str(w) for w in wrong])}", where
        )
