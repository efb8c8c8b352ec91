"""The ONNX model of a compiled graph: build and export, its metadata, and the checks it must pass.

The IR already knows every op, shape and padding, so the ONNX graph is written node by node with
the onnx helper API (no tracing, no torch.onnx): padding is the IR's resolved (begin, end) pads,
tensor names are the spec's layer names, and the same graph and weights always give the same bytes.

Conventions (the same as the PyTorch lowering):
- The input is called `input`, the output is named after the spec's last layer; the batch axis is
  a dimension called `batch` unless a fixed batch size is asked for.
- Initializers are the layers' declared weights (`Layer.weights`), named `<layer>.<tensor>`; a
  dense layer on a rank > 1 input stores its kernel transposed for MatMul, as `<layer>.weight_t`.
- Dropout (and `activation: linear`) disappear; batchnorms fold where they can (fold.py).
- Below opset 20, GELU is written out as 0.5*x*(1 + erf(x/sqrt(2))) (or its tanh form).
- The opset is the lowest the graph needs (opsets.py: 13, 17 with a layernorm) unless asked.
- float16 (`fp16`) stores weights and computes in float16 between a Cast of the float32 input
  and a Cast back of the output; `fp16_io` makes the input and output float16 themselves.
- Patterns OpenCV DNN computes wrongly are avoided (a padded 1x1 Conv, a BatchNormalization
  after a sigmoid-like activation; see emit.py): the graph computes the same either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netspec.data.preprocess import Preprocessing, describe
from netspec.data.scenes import describe_tiling
from netspec.data.token_ids import card_entry
from netspec.errors import NetspecError
from netspec.ir import Graph, max_length, shortest_length
from netspec.layers import (
    Dense,
    Dropout,
    Embedding,
    LayerNorm,
    Masking,
    MultiHeadAttention,
    PositionEmbedding,
    Recurrent,
    SeqPool,
)
from netspec.run_record import RunMeta
from netspec.runs import check_weights
from netspec.spec import INPUT
from netspec.version import __version__

try:
    import onnx
    from onnx import helper
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise NetspecError("ONNX export needs the onnx package: pip install onnx onnxruntime") from exc

from .card import encode_card
from .emit import emit_fn
from .emitter import INPUT_NAME, Emitter, ExportError
from .fold import plan_folding
from .opsets import BASELINE_OPSET, choose_opset

BATCH_PARAM = "batch"
TIME_PARAM = "time"  # the dim_param of a dynamic time axis (`input: [null, F]`)


def onnx_dims(batch: int | str, shape: Sequence[int | None]) -> list[int | str]:
    """A value's ONNX dims: the batch, then the per-sample shape with None named `time`."""
    return [batch, *(TIME_PARAM if n is None else n for n in shape)]


# --- metadata ------------------------------------------------------------------------------------


# The layers that read a rank-2 input as [time, features] (features on the last axis); conv1d,
# pooling, permute and the rest read it as conv1d's [channels, length].
_SEQUENCE_READERS = (
    Recurrent,
    MultiHeadAttention,
    PositionEmbedding,
    SeqPool,
    LayerNorm,
    Dense,
    Masking,
)


def layout(graph: Graph) -> str:
    """The input layout as the network reads it: NCHW for images, NCL for conv1d's [channels,
    length], NTF for a sequence [time, features] (every layer that reads the input acts on its
    last axis: recurrent, attention, dense, layernorm...), NT for token ids (read by an
    embedding), NC for features."""
    shape = graph.input_shape
    readers = [type(n.layer) for n in graph.nodes if INPUT in n.inputs]
    if len(shape) == 1:
        return "NT" if any(issubclass(k, Embedding) for k in readers) else "NC"
    if len(shape) == 2:
        sequence = readers and all(issubclass(k, _SEQUENCE_READERS) for k in readers)
        return "NTF" if sequence else "NCL"
    return "NCHW" if len(shape) == 3 else "N" + "?" * len(shape)


def as_meta(graph: Graph, meta: RunMeta | Mapping[str, Any] | None) -> RunMeta:
    """The run's record, from itself or its JSON form (named after the graph if it is not)."""
    if isinstance(meta, RunMeta):
        return meta
    return RunMeta.from_dict({"name": graph.name, **(meta or {})})


def model_card(graph: Graph, meta: RunMeta | Mapping[str, Any] | None) -> dict[str, Any]:
    """What an app needs besides the graph: the run's model.json (labels, task, head, the
    preprocessing with every step defined, the raw value range, the tiling for segmentation).

    One source for the .onnx `metadata_props` (`metadata`) and the JSON sidecar (sidecar.py).
    """
    meta = as_meta(graph, meta)
    card: dict[str, Any] = {
        "name": meta.name or graph.name,
        "version": meta.netspec_version or __version__,
    }
    if meta.spec_sha256:
        card["spec_sha256"] = meta.spec_sha256
    if meta.task:
        card["task"] = meta.task
    if meta.classes is not None:
        card["classes"] = list(meta.classes)
    if meta.preprocessing is not None:
        # Runs trained before netspec recorded the raw range: null (docs/sidecar.md says so).
        card["preprocessing"] = {
            **meta.preprocessing.to_dict(),
            "layout": layout(graph),
            "steps": describe(meta.preprocessing, tiled=meta.task == "segmentation"),
        }
    card["input_shape"] = list(graph.input_shape)
    if (ids := card_entry(graph)) is not None:  # predict checks its inputs against them
        card["token_ids"] = ids
    card["output_shape"] = list(graph.output.shape)
    longest = max_length(graph)
    if longest is not None:  # predict refuses a longer sequence with a message, not a crash
        card["max_length"] = longest
    shortest = shortest_length(graph) if graph.dynamic else None
    if shortest is not None and shortest > 1:  # and a shorter one than its windows need
        card["min_length"] = shortest
    if meta.features:  # a table's feature names, after one-hot encoding
        card["features"] = list(meta.features)
    if meta.table:  # its CSV columns: predict reads rows in the training file's format
        card["table"] = meta.table.to_dict()
    if meta.tokenizer:  # a text model's: its vocabulary, once (predict and the sidecar read it)
        card["tokenizer"] = meta.tokenizer.to_dict()
    head = graph.head
    # A record without a head (older runs): the graph's, which is where the record's comes from.
    final = meta.head if meta.head_recorded else (head.fn if head is not None else None)
    card["head"] = final or "none"  # the output's softmax/sigmoid, or none (linear)
    if meta.task == "segmentation" and len(graph.input_shape) == 3:
        h, w = graph.input_shape[1:]
        card["tiling"] = describe_tiling((h, w))
    if meta.input_layout:  # an imported channels-last model: predict takes its arrays as it did
        card["input_layout"] = meta.input_layout
    if meta.imported_from is not None:
        card["imported_from"] = meta.imported_from.to_dict()
    return card


def metadata(graph: Graph, meta: RunMeta | Mapping[str, Any] | None) -> dict[str, str]:
    """model.metadata_props: the model card as strings (JSON for structured values)."""
    return encode_card(model_card(graph, meta))


def target_affine(pre: Preprocessing | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, std) of standardized regression targets in a preprocessing record, else None."""
    if pre is None or pre.target_mean is None or pre.target_std is None:
        return None
    return (
        np.asarray(pre.target_mean, dtype=np.float32),
        np.asarray(pre.target_std, dtype=np.float32),
    )


# --- the model -----------------------------------------------------------------------------------


@dataclass
class ExportStats:
    folded_batchnorm: int = 0
    removed_dropout: int = 0
    folded_into: dict[str, str] = field(default_factory=dict)


def build_onnx(
    graph: Graph,
    weights: dict[str, np.ndarray],
    *,
    meta: RunMeta | Mapping[str, Any] | None = None,
    opset: int | None = None,
    batch: int | None = None,
    fp16: bool = False,
    fp16_io: bool = False,
    fold_batchnorm: bool = True,
) -> tuple[onnx.ModelProto, ExportStats]:
    """The ONNX model of a compiled graph with weights keyed `<layer>.<tensor>` (numpy arrays),
    and what was folded and removed.

    `meta` is the run's model.json (stored as metadata); `opset` defaults to the lowest the graph
    needs; `batch` fixes the batch size (default: a dynamic `batch` dimension); `fp16` stores
    initializers and computes in float16 (input and output stay float32 unless `fp16_io`).
    """
    newest = onnx.defs.onnx_opset_version()
    if opset is not None:
        choose_opset(opset, (), newest)  # out of range: refused before any work
    if batch is not None and batch < 1:
        raise ExportError(f"batch size {batch} must be at least 1 (or dynamic)")
    if fp16_io and not fp16:
        raise ExportError("--fp16-io needs --fp16 (a float32 model has float32 inputs)")
    check_weights(graph, weights)
    plan = plan_folding(graph, weights, fold_batchnorm)
    em = Emitter(graph, plan, opset or BASELINE_OPSET, fp16)
    if fp16 and not fp16_io:  # float32 in: one Cast to the model's float16
        em.values[INPUT] = em.op("Cast", [INPUT_NAME], em.fresh("input/fp16"), "input", to=em.elem)
    for node in graph.nodes:
        xs = [em.values[i] for i in node.inputs]
        em.values[node.name] = emit_fn(node)(em, node, xs)
    _output(em, graph, target_affine(as_meta(graph, meta).preprocessing), fp16 and not fp16_io)

    dim: int | str = batch if batch is not None else BATCH_PARAM
    io_elem = em.elem if fp16_io else onnx.TensorProto.FLOAT
    onnx_graph = helper.make_graph(
        em.nodes,
        graph.name,
        [helper.make_tensor_value_info(INPUT_NAME, io_elem, onnx_dims(dim, graph.input_shape))],
        [
            helper.make_tensor_value_info(
                graph.output.name, io_elem, onnx_dims(dim, graph.output.shape)
            )
        ],
        initializer=em.inits,
    )
    opset = choose_opset(opset, (n.op_type for n in em.nodes), newest)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        onnx_graph,
        opset_imports=opsets,
        producer_name="netspec",
        producer_version=__version__,
        doc_string=_doc(graph),
    )
    model.ir_version = helper.find_min_ir_version_for(opsets)
    helper.set_model_props(model, metadata(graph, meta))
    stats = ExportStats(
        folded_batchnorm=len(plan.folded),
        removed_dropout=sum(isinstance(n.layer, Dropout) for n in graph.nodes),
        folded_into=dict(plan.folded),
    )
    return model, stats


def _output(
    em: Emitter,
    graph: Graph,
    affine: tuple[np.ndarray, np.ndarray] | None,
    cast_back: bool,
) -> None:
    """The graph's output under the last layer's name: then the regression targets' un-scaling
    (`affine`), then the Cast back to float32 (`cast_back`), each under that name."""
    out_name = graph.output.name
    final = em.values[out_name]
    if final == em.values[INPUT]:  # the network computes nothing: ONNX needs a node
        em.op("Identity", [final], out_name, out_name)
    elif final != out_name:  # the output is an alias (a dropout or folded batchnorm at the end)
        _rename(em, final, out_name)
    if affine is not None:
        # Regression targets were learned standardized: the graph itself returns the data's
        # units (y * std + mean), so an app needs no netspec code to read the outputs.
        standardized = f"{out_name}/standardized"
        _rename(em, out_name, standardized)
        mean, std = affine
        scaled = em.op(
            "Mul", [standardized, em.init("target_std", std)], f"{out_name}/scaled", "targets"
        )
        em.op("Add", [scaled, em.init("target_mean", mean)], out_name, "targets")
    if cast_back:  # float32 out: the last value cast back
        inner = f"{out_name}/fp16"
        _rename(em, out_name, inner)
        em.op("Cast", [inner], out_name, "output", to=onnx.TensorProto.FLOAT)


def _rename(em: Emitter, old: str, new: str) -> None:
    """Every node's input and output `old` renamed `new`."""
    for n in em.nodes:
        n.input[:] = [new if i == old else i for i in n.input]
        n.output[:] = [new if o == old else o for o in n.output]


def export_onnx(graph: Graph, weights: dict[str, np.ndarray], **options: Any) -> onnx.ModelProto:
    """The ONNX model of a compiled graph (build_onnx's, with the same keyword options)."""
    return build_onnx(graph, weights, **options)[0]


def _doc(graph: Graph) -> str:
    shape = ", ".join(map(str, graph.input_shape))
    out = ", ".join(map(str, graph.output.shape))
    text = f"netspec network '{graph.name}': input (N, {shape}) -> output (N, {out})"
    if graph.description:
        text += f"; {' '.join(graph.description.split())}"
    return text


# --- checks --------------------------------------------------------------------------------------


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def check_model(model: onnx.ModelProto, graph: Graph, batch: int | None = None) -> None:
    """onnx.checker (full), strict shape inference, and every layer's inferred shape is the IR's."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported model fails onnx.checker: {exc}") from None
    # Infer with the declared output shape removed, so the check is of the computed one.
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output[0].type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(
            probe, check_type=True, strict_mode=True, data_prop=True
        )
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise ExportError(f"ONNX shape inference fails on the exported model: {exc}") from None
    found = {v.name: _dims(v) for v in [*inferred.graph.value_info, *inferred.graph.output]}

    def batch_ok(dim: int | str | None) -> bool:
        # Some ops (Resize) infer a fresh symbol for a symbolic batch: any symbol is dynamic.
        return dim == batch if batch is not None else not isinstance(dim, int)

    def same(dims: list[int | str | None], shape: Sequence[int | None]) -> bool:
        # The time axis (None in the IR) is any symbol ONNX infers for it, never a number.
        return len(dims) == len(shape) and all(
            not isinstance(d, int) if n is None else d == n for d, n in zip(dims, shape)
        )

    want = "dynamic" if batch is None else str(batch)
    wrong = []
    for node in graph.nodes:
        dims = found.get(node.name)
        if dims is None:
            continue  # folded or removed: its value is another layer's tensor
        if not dims or not same(dims[1:], node.shape) or not batch_ok(dims[0]):
            wrong.append(
                f"'{node.name}' is {dims}, not [{', '.join([want, *map(str, node.shape)])}]"
            )
    if graph.output.name not in found:
        wrong.append(f"no shape inferred for the output '{graph.output.name}'")
    if wrong:
        raise ExportError(f"ONNX shape inference disagrees with the IR: {'; '.join(wrong[:4])}")
