"""The JSON sidecar next to an exported .onnx: its metadata for runtimes that cannot read metadata_props.

onnxruntime-node and -web, and most non-Python runtimes, expose no `metadata_props`; the sidecar
`<file>.onnx.json` carries the same model card (decoded from the model's own metadata, so the two
never differ) plus the input and output names, types and shapes, the opset and the precision.
(`<run>/model.json` already is the run's record, hence `model.onnx.json` rather than `model.json`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
from onnx import helper

from netspec.fileio import write_text
from netspec.jsonio import dumps

from .card import decode_card, props_of
from .emitter import ExportError

FORMAT = "netspec-sidecar"
FORMAT_VERSION = 1


def sidecar_path(model_path: str | Path) -> Path:
    """model.onnx -> model.onnx.json, beside it."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def precision(model: onnx.ModelProto) -> str:
    """int8 (quantized: QuantizeLinear nodes), float16 (float16 weights) or float32."""
    if any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "float16"
    return "float32"


def _value(value: onnx.ValueInfoProto) -> dict[str, Any]:
    t = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
    return {
        "name": value.name,
        "dtype": helper.tensor_dtype_to_np_dtype(t.elem_type).name,
        "shape": dims,
    }


def sidecar(model: onnx.ModelProto, file_name: str) -> dict[str, Any]:
    """The sidecar document of a model written as `file_name`."""
    props = props_of(model)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": file_name,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "precision": precision(model),
        "inputs": [_value(v) for v in model.graph.input],
        "outputs": [_value(v) for v in model.graph.output],
        # --preprocess: the graph takes raw uint8 images (`raw_input`) and applies
        # `preprocessing` itself; false: the app applies it (docs/sidecar.md).
        "preprocessing_in_graph": False,
        **decode_card(props),
    }


def write_sidecar(model: onnx.ModelProto, model_path: str | Path) -> Path:
    """Write the sidecar of the model saved at `model_path` (atomically); its path."""
    path = sidecar_path(model_path)
    text = dumps(sidecar(model, Path(model_path).name)) + "\n"
    try:
        write_text(path, text)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
