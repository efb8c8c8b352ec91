"""The ONNX importer's state: the file loaded safely, constants, values as views of netspec layers, layers as they are made."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from netspec.errors import DataError, first_line
from netspec.items import INPUT, NAME_RE
from netspec.layers import KINDS
from netspec.layers.base import ShapeError

# The batch size in shape arithmetic (Shape -> Gather -> Concat -> Reshape): a number no real
# dimension has, carried through by the constant ops that only move values around.
BATCH = -(2**40)

# An axis of an ONNX value: (axis of the netspec layer's batch-major value, part of that axis
# when ONNX splits it, e.g. an LSTM's directions and units), or None for an added axis of size 1.
Token = tuple[int, int] | None


class Unsupported(Exception):
    """One node cannot be imported: the reason joins its op type's problem."""


@dataclass
class Val:
    """An ONNX tensor that is a netspec layer's output [B, *shape], seen through transposes,
    squeezes and unsqueezes: `tokens` says which axis of the layer's value each ONNX axis is,
    `dims` its ONNX shape (the batch axis as None)."""

    layer: str
    tokens: tuple[Token, ...]
    dims: tuple[int | None, ...]


@dataclass
class Lay:
    """A netspec layer being made: its kind, arguments, inputs (layer names), per-sample output
    shape and weights in netspec's names and layouts."""

    name: str
    kind: str
    args: dict[str, Any]
    inputs: list[str]
    shape: tuple[int, ...]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    onnx_value: str = ""  # the ONNX tensor it was made for (to count its readers)
    base: str = ""  # the name it will have in the spec, before making names unique


def load(path: Path) -> onnx.ModelProto:
    """The model in `path` with its external data, which must lie inside the model's folder."""
    where = str(path)
    if not path.is_file():
        raise DataError.one("no such ONNX file", where)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: the bytes are not a model
        raise DataError.one(
            f"not an ONNX model, or a truncated one: {first_line(exc)}", where
        ) from None
    if not model.HasField("graph") or not model.graph.node or not model.opset_import:
        raise DataError.one(
            "not an ONNX model, or a truncated one: no graph, nodes or opset in the file",
            where,
            hint="export the model again; an .onnx file is a protobuf ModelProto",
        )
    folder = path.resolve().parent
    external = [t for t in _all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in external:
        info = {e.key: e.value for e in tensor.external_data}
        target = (folder / info.get("location", "")).resolve()
        if not target.is_relative_to(folder) or target == folder:
            raise DataError.one(
                f"initializer '{tensor.name}' keeps its data in '{info.get('location')}', "
                "outside the model's folder: refused",
                where,
                hint="put the external data file beside the .onnx file",
            )
        if not target.is_file():
            raise DataError.one(
                f"initializer '{tensor.name}': its external data file '{info.get('location')}' "
                "is missing",
                where,
            )
    if external:
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(folder))
        except Exception as exc:
            raise DataError.one(
                f"the external data cannot be read: {first_line(exc)}", where
            ) from None
    return model


def _all_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    out = list(model.graph.initializer)
    for node in model.graph.node:
        out += [a.t for a in node.attribute if a.type == onnx.AttributeProto.TENSOR]
    return out


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def short_float(value: float) -> float:
    """A float32 attribute as the shortest decimal that is that float32 (1e-05, not 9.99e-06)."""
    return float(str(np.float32(value)))


def scope_name(node: onnx.NodeProto, kind: str) -> str:
    """A layer name from a node's scope, made valid for netspec: 'stage.conv2d' of netspec's
    'stage/conv2d/Conv', 'layer1.0.conv1' of torch's '/layer1/layer1.0/conv1/Conv'; the kind
    when the node has no scope."""
    parts = [p for p in node.name.split("/")[:-1] if p] if "/" in node.name else [node.name]
    name = ""
    for part in parts:  # torch repeats the path so far in each part: keep each once
        name = part if not name or part.startswith(name + ".") else f"{name}.{part}"
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).strip("_.-")
    if not name or not NAME_RE.match(name) or name == INPUT:
        name = f"{kind}_{name}" if name and NAME_RE.match(f"{kind}_{name}") else kind
    return name


class Importer:
    """Walks the graph once: constants, views and layers by ONNX value name, and problems."""

    def __init__(self, model: onnx.ModelProto, path: Path) -> None:
        self.model = model
        self.path = path
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.consts: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in model.graph.initializer
        }
        self.vals: dict[str, Val] = {}
        self.layers: dict[str, Lay] = {}
        self.readers: dict[str, int] = {}
        for node in model.graph.node:
            for name in node.input:
                self.readers[name] = self.readers.get(name, 0) + 1
        for out in model.graph.output:
            self.readers[out.name] = self.readers.get(out.name, 0) + 1
        self.taken: set[str] = set()
        self.input_shape: tuple[int, ...] = ()
        self.fixed_batch: int | None = None
        self.input_value = ""  # the ONNX value that is netspec's (channels-first) input
        self.input_layout: str | None = None  # NHWC / NWC: the file's input is channels-last
        self.skip: set[str] = set()  # outputs of nodes already accounted for (that Transpose)

    # --- values -----------------------------------------------------------------------------

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    def need_const(self, node: onnx.NodeProto, k: int, what: str) -> np.ndarray:
        if len(node.input) <= k or not node.input[k]:
            raise Unsupported(f"no {what}")
        value = self.consts.get(node.input[k])
        if value is None:
            raise Unsupported(f"its {what} is computed, not a constant")
        return value

    def val(self, name: str) -> Val:
        if name not in self.vals:
            raise Unsupported("an input that is a constant, not the network's data")
        return self.vals[name]

    def single_reader(self, value: str) -> bool:
        return self.readers.get(value, 0) == 1

    def set_layer_value(self, value: str, layer: Lay) -> Val:
        dims = (None, *layer.shape)
        val = Val(layer.name, tuple((i, 0) for i in range(len(dims))), dims)
        self.vals[value] = val
        return val

    # --- layers -----------------------------------------------------------------------------

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken or name == INPUT:
            name = f"{base}_{k}"
            k += 1
        self.taken.add(name)
        return name

    def shape_of(self, layer: str) -> tuple[int, ...]:
        return self.input_shape if layer == INPUT else self.layers[layer].shape

    def add(
        self,
        node: onnx.NodeProto,
        kind: str,
        args: dict[str, Any],
        inputs: list[str],
        weights: dict[str, np.ndarray] | None = None,
        out: int = 0,
        base: str | None = None,
        bind: bool = True,
    ) -> Lay:
        """A new layer for the node's output `out`, its shape by netspec's own rule."""
        shapes = [self.shape_of(i) for i in inputs]
        cls = KINDS[kind]
        try:
            layer = cls.model_validate(args)
            refs = {getattr(layer, r): self.shape_of(getattr(layer, r)) for r in cls.ref_fields}
            shape = tuple(layer.output_shape(shapes, refs))
        except ShapeError as exc:
            message = exc.message
            if exc.mismatch is not None:  # the core names the two inputs that disagree
                a, b = (f"{inputs[k]} {shapes[k]}" for k in exc.mismatch)
                message = message.replace("{a}", a).replace("{b}", b)
            raise Unsupported(f"as {kind}: {message}") from None
        except ValueError as exc:  # pydantic: arguments netspec does not accept
            raise Unsupported(f"as {kind}: {first_line(exc)}") from None
        value = node.output[out] if bind else ""
        base = base or scope_name(node, kind)
        lay = Lay(
            self.fresh(base),
            kind,
            args,
            list(inputs),
            shape,  # type: ignore[arg-type]
            {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in (weights or {}).items()},
            value,
            base,
        )
        self.layers[lay.name] = lay
        if value:
            self.set_layer_value(value, lay)
        return lay

    def source(self, val: Val, node: onnx.NodeProto) -> str:
        """The layer whose output is this value, making a permute and/or reshape layer where
        the value is a transposed or reshaped view of one."""
        if not val.tokens or val.tokens[0] != (0, 0):
            raise Unsupported("the batch axis is not the first axis of its input")
        rest, dims = val.tokens[1:], val.dims[1:]
        shape = self.shape_of(val.layer)
        if c_order(rest):
            if tuple(dims) == tuple(shape):
                return val.layer
            return self.reshape(node, val.layer, dims)
        if any(t is not None and t[1] for t in rest):
            raise Unsupported("an input whose axes are split and reordered")
        order = [t[0] - 1 for t in rest if t is not None]
        if sorted(order) != list(range(len(shape))):
            raise Unsupported("an input whose axes are reordered in a way netspec cannot follow")
        lay = self.add(node, "permute", {"dims": order}, [val.layer], base="permute", bind=False)
        if tuple(lay.shape) != tuple(dims):
            return self.reshape(node, lay.name, dims)
        return lay.name

    def reshape(self, node: onnx.NodeProto, layer: str, dims: tuple[int | None, ...]) -> str:
        if len(dims) == 1:
            lay = self.add(node, "flatten", {}, [layer], bind=False)
        else:
            args = {"shape": [int(d) for d in dims]}  # type: ignore[arg-type]
            lay = self.add(node, "reshape", args, [layer], bind=False)
        return lay.name


def c_order(tokens: tuple[Token, ...]) -> bool:
    """Whether the per-sample values of a view come in the same order as its layer's."""
    real = [t for t in tokens if t is not None]
    return all(a < b for a, b in itertools.pairwise(real))
