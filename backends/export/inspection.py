"""`netspec inspect`: what an app developer needs to know about any .onnx file, without code.

Inputs and outputs (element type, shape, dynamic axes by name), opsets, IR version, producer,
file size, parameter count (the sum of the initializers' sizes), operator counts, and the
`netspec.*` metadata written by the exporter (backends/export/model.py) (labels, preprocessing, task, ...) when
the model has it. Works on any ONNX file; nothing is executed.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from netspec.data.arraydata import TableColumns
from netspec.data.preprocess import Preprocessing
from netspec.errors import DataError, NetspecError, first_line

from .card import PREFIX, STRING_KEYS, Card, props_of
from .int8_check import summary as int8_summary

# The netspec metadata keys, in the order they are shown (values are JSON but STRING_KEYS).
NETSPEC_KEYS = (
    "name",
    "version",
    "spec_sha256",
    "task",
    "head",
    "classes",
    "input_shape",
    "output_shape",
    "preprocessing",
    "features",
    "table",
    "tiling",
)


class InspectError(NetspecError):
    """The file is not an ONNX model."""


def _error(message: str, path: Path) -> InspectError:
    return InspectError.one(message, str(path))


def load_model(path: str | Path) -> Any:
    """The ModelProto of a file (external data is not loaded: sizes come from the dims)."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.exists():
        raise _error("no such model file", path)
    if not path.is_file():
        raise _error("not a file (expected an .onnx model)", path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise _error(
            f"cannot read the model ({first_line(exc)}); expected an ONNX model file", path
        ) from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.opset_import:
        raise _error(
            "not an ONNX model (no IR version, graph or opset); expected an ONNX model file", path
        )
    return model


def _elem_type(type_proto: Any) -> str:
    from onnx import helper

    if not type_proto.HasField("tensor_type"):
        return type_proto.WhichOneof("value") or "unknown"
    elem = type_proto.tensor_type.elem_type
    try:
        return str(helper.tensor_dtype_to_np_dtype(elem))
    except (KeyError, TypeError, ValueError):
        return f"elem_type {elem}"


def _value(value: Any) -> dict[str, Any]:
    """name, type, shape (ints, dim_param names, or null) and the dynamic axes of a graph value."""
    t = value.type
    shape: list[int | str | None] | None = None
    if t.HasField("tensor_type") and t.tensor_type.HasField("shape"):
        shape = []
        for d in t.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            else:
                shape.append(d.dim_param or None)
    dynamic = {str(i): d for i, d in enumerate(shape or []) if not isinstance(d, int)}
    return {"name": value.name, "type": _elem_type(t), "shape": shape, "dynamic_axes": dynamic}


def _ops(graph: Any, counts: Counter[str]) -> None:
    """Count the nodes of a graph and its subgraphs (If/Loop/Scan bodies)."""
    for node in graph.node:
        counts[f"{node.domain}.{node.op_type}" if node.domain else node.op_type] += 1
        for attr in node.attribute:
            if attr.HasField("g"):
                _ops(attr.g, counts)
            for g in attr.graphs:
                _ops(g, counts)


def _netspec(props: dict[str, str]) -> dict[str, Any] | None:
    found = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
    if not found:
        return None
    out: dict[str, Any] = {}
    for key in [*NETSPEC_KEYS, *sorted(set(found) - set(NETSPEC_KEYS))]:
        if key not in found:
            continue
        value: Any = found[key]
        if key not in STRING_KEYS:  # model.py's rule: other values are JSON
            with contextlib.suppress(ValueError):  # else shown as the raw string
                value = json.loads(value)
        out[key] = value
    return out


def inspect_model(path: str | Path) -> dict[str, Any]:
    """Everything `netspec inspect` shows, as one JSON-ready dict."""
    path = Path(path)
    model = load_model(path)
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    counts: Counter[str] = Counter()
    _ops(graph, counts)
    params = sum(math.prod(i.dims) for i in graph.initializer)
    props = props_of(model)
    netspec = _netspec(props)
    return {
        "file": str(path),
        "size_bytes": path.stat().st_size,
        "ir_version": int(model.ir_version),
        "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "producer": " ".join(p for p in (model.producer_name, model.producer_version) if p) or None,
        "graph": graph.name,
        "doc": model.doc_string or None,
        # Old IR versions list initializers among the inputs: those are weights, not inputs.
        "inputs": [_value(v) for v in graph.input if v.name not in inits],
        "outputs": [_value(v) for v in graph.output],
        "parameters": int(params),
        "initializers": len(graph.initializer),
        "nodes": sum(counts.values()),
        "operators": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "netspec": netspec,
        "metadata": {k: v for k, v in props.items() if not k.startswith(PREFIX)},
    }


def _dims(shape: list[int | str | None] | None) -> str:
    if shape is None:
        return "unknown shape"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _size(n: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n:,} bytes)"
    return f"{n} bytes"


def render(info: dict[str, Any]) -> str:
    """The text `netspec inspect` prints."""
    opsets = ", ".join(f"{d} {v}" for d, v in info["opsets"].items())
    lines = [
        f"file:       {info['file']}",
        f"size:       {_size(info['size_bytes'])}",
        f"producer:   {info['producer'] or 'unknown'}",
        f"format:     ONNX IR version {info['ir_version']}, opset {opsets}",
        f"graph:      {info['graph']}" + (f" ({info['doc']})" if info["doc"] else ""),
    ]
    for title in ("inputs", "outputs"):
        lines.append(f"{title}:")
        for v in info[title]:
            dyn = info_dynamic(v)
            lines.append(f"  {v['name']}: {v['type']} {_dims(v['shape'])}{dyn}")
    lines.append(
        f"parameters: {info['parameters']:,} in {info['initializers']} initializers "
        f"({info['nodes']} nodes)"
    )
    ops = ", ".join(f"{op} {n}" for op, n in info["operators"].items())
    lines.append(f"operators:  {ops or 'none'}")
    meta = info["netspec"]
    card = _card(meta)
    if meta is None:
        lines.append("netspec:    no netspec metadata (not exported by `netspec export`)")
    else:
        lines.append("netspec:")
        for key, value in meta.items():
            if key == "classes" and isinstance(value, list):
                text = f"{len(value)}: " + ", ".join(map(str, value))
            elif key == "preprocessing" and card and card.preprocessing:
                text = _preprocessing(card.preprocessing, card.layout)
            elif key == "features" and isinstance(value, list):
                text = f"{len(value)}: " + ", ".join(map(str, value))
            elif key == "table" and card and card.table:
                text = _table(card.table)
            elif key == "tokenizer" and card and card.tokenizer:
                tok = card.tokenizer  # the vocabulary is in the sidecar, not on screen
                text = (
                    f"{tok.level} tokens{', lowercased' if tok.lowercase else ''}, {tok.size} ids "
                    f"(0 padding, 1 unknown, {len(tok.vocab)} tokens), rows of {tok.max_length}"
                )
            elif key == "int8_check" and isinstance(value, dict):
                text = int8_summary(value)
            elif isinstance(value, (list, dict)):
                text = json.dumps(value)
            else:
                text = str(value)
            lines.append(f"  {key}: {text}")
    if info["metadata"]:
        lines.append("metadata:")
        lines += [f"  {k}: {v}" for k, v in info["metadata"].items()]
    return "\n".join(lines)


def info_dynamic(value: dict[str, Any]) -> str:
    dyn = value["dynamic_axes"]
    if not dyn:
        return ""
    named = ", ".join(f"axis {i} '{d}'" if d else f"axis {i}" for i, d in dyn.items())
    return f"  dynamic: {named}"


def _card(values: dict[str, Any] | None) -> Card | None:
    """The typed card of the shown values; None when they do not fit it (shown as JSON)."""
    try:
        return Card.from_values(values) if values else None
    except DataError:
        return None


def _table(table: TableColumns) -> str:
    """A CSV model's columns, e.g. `island (Biscoe, Dream), bill_length_mm; target species`."""
    cols = [f"{name} ({', '.join(cats)})" if cats else name for name, cats in table.columns]
    return f"{', '.join(cols)}; target {table.target}"


def _preprocessing(pre: Preprocessing, layout: str | None) -> str:
    """The recorded steps in the order they are applied, e.g. `L, x * 0.0625, reshape (1, 8, 8)`."""
    steps = []
    if pre.channel_order:
        steps.append(f"{pre.channel_order} image")
    if pre.grayscale:
        steps.append("grayscale (0.299 R + 0.587 G + 0.114 B)")
    if pre.resize:
        steps.append("resize {}x{} (bilinear)".format(*pre.resize))
    if pre.center_crop:
        steps.append("center crop {}x{}".format(*pre.center_crop))
    if pre.scale != 1.0:
        steps.append(f"x * {pre.scale:g}")
    if pre.mean and pre.std:
        mean = ", ".join(f"{m:g}" for m in pre.mean)
        std = ", ".join(f"{s:g}" for s in pre.std)
        steps.append(f"(x - [{mean}]) / [{std}] per channel")
    elif pre.per_sample:
        steps.append("per-sample standardization")
    raw, shape = pre.raw_shape, pre.input_shape
    if raw and shape and list(raw) != list(shape):
        steps.append(f"reshape {tuple(raw)} -> {tuple(shape)}")
    head = f"raw sample {tuple(raw)}" if raw else "raw sample"
    return (
        f"{head}: " + (", ".join(steps) or "used as is") + (f", layout {layout}" if layout else "")
    )


__all__ = ["InspectError", "inspect_model", "load_model", "render"]
