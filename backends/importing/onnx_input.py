"""The ONNX importer's input: its shape (the batch first, --input-shape for dynamic dimensions), a channels-last input turned channels-first, and input-side scaling and normalization as the preprocessing record."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from netspec.errors import DataError, few
from netspec.items import INPUT

from .onnx_graph import Importer, Val, attrs

# Float inputs, and integer ones (token ids: netspec's input is float, its embedding truncates).
INPUT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.INT64,
    onnx.TensorProto.INT32,
}


def read_input(ctx: Importer, input_shape: tuple[int, ...] | None) -> None:
    where = str(ctx.path)
    graph = ctx.model.graph
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise DataError.one(
            f"the model has {len(inputs)} inputs ({few([i.name for i in inputs])}); a netspec "
            "network has one",
            where,
        )
    (x,) = inputs
    t = x.type.tensor_type
    if t.elem_type not in INPUT_TYPES:
        raise DataError.one(
            f"input '{x.name}' is of type {onnx.TensorProto.DataType.Name(t.elem_type)}; netspec "
            "imports models of number inputs",
            where,
        )
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    if len(dims) < 2 or len(dims) > 4:
        raise DataError.one(
            f"input '{x.name}' has rank {len(dims)}: netspec takes [batch, features], "
            "[batch, channels, length] or [batch, channels, height, width]",
            where,
        )
    batch, rest = dims[0], dims[1:]
    if input_shape is not None:
        given = tuple(int(d) for d in input_shape)
        clash = len(given) != len(rest) or any(
            r is not None and r != g for r, g in zip(rest, given)
        )
        if clash:
            raise DataError.one(
                f"--input-shape {','.join(map(str, given))} does not fit input '{x.name}' of "
                f"shape {_dims_text(dims)} (the first dimension is the batch)",
                where,
            )
        rest = list(given)
    if None in rest:
        raise DataError.one(
            f"input '{x.name}' has dynamic dimensions {_dims_text(dims)} besides the batch",
            where,
            hint=f"give them with --input-shape ({len(rest)} numbers, without the batch)",
        )
    ctx.fixed_batch = batch if batch else None
    identity = tuple((i, 0) for i in range(len(dims)))
    first = _channels_last(ctx, x.name, len(dims))
    if first is not None:  # tf2onnx's channels-last input: netspec's input is channels-first
        rest = [rest[-1], *rest[:-1]]
        ctx.vals[first.output[0]] = Val(INPUT, identity, (None, *rest))
        ctx.skip.add(first.output[0])
        ctx.input_layout = {4: "NHWC", 3: "NWC"}[len(dims)]
        ctx.input_value = first.output[0]
    else:
        ctx.input_value = x.name
    ctx.input_shape = tuple(rest)  # type: ignore[arg-type]
    ctx.vals[x.name] = Val(INPUT, identity, (None, *rest))


def input_affine(ctx: Importer) -> dict | None:
    """x * scale, then (x - mean) / std per channel, written as Mul/Div/Sub/Add of constants
    right at the input: the preprocessing record's steps (netspec.data.preprocess), not layers."""
    graph = ctx.model.graph
    start = current = ctx.input_value
    consts = dict(ctx.consts)
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    channels = ctx.input_shape[0]
    scale, mean, std = 1.0, None, None
    outputs = {o.name for o in graph.output}
    rank = len(ctx.input_shape) + 1

    def per_channel(c: np.ndarray) -> np.ndarray | None:
        if c.size == 1:
            return np.full(channels, float(c.reshape(-1)[0]))
        want = (channels,) + (1,) * (rank - 2)
        fits = tuple(c.shape[-len(want) :]) == want and c.size == channels
        return c.reshape(-1).astype(np.float64) if fits else None

    while True:
        readers = [n for n in graph.node if current in n.input]
        ops = ("Mul", "Div", "Sub", "Add")
        if len(readers) != 1 or readers[0].op_type not in ops or current in outputs:
            break
        node = readers[0]
        if node.input[0] != current or node.input[1] not in consts:
            break
        c = per_channel(consts[node.input[1]])
        if c is None:
            break
        op = node.op_type
        if op in ("Mul", "Div") and mean is None and std is None and np.all(c == c[0]):
            scale = scale * float(c[0]) if op == "Mul" else scale / float(c[0])
        elif op in ("Sub", "Add") and mean is None and std is None:
            mean = c if op == "Sub" else -c
        elif op == "Div" and std is None:
            std = c
            mean = np.zeros(channels) if mean is None else mean
        else:
            break
        ctx.skip.add(node.output[0])
        current = node.output[0]
    if current == start:
        return None
    ctx.vals[current] = ctx.vals[start]
    record: dict = {}
    if scale != 1.0:
        record["scale"] = float(np.float32(scale))
    if mean is not None:
        record["mean"] = [float(np.float32(m)) for m in mean]
        spread = std if std is not None else np.ones(channels)
        record["std"] = [float(np.float32(v)) for v in spread]
    return record or None


def _channels_last(ctx: Importer, name: str, rank: int) -> onnx.NodeProto | None:
    """The Transpose to channels-first that is the only reader of a channels-last input."""
    readers = [n for n in ctx.model.graph.node if name in n.input]
    if len(readers) != 1 or readers[0].op_type != "Transpose" or rank < 3:
        return None
    perm = list(attrs(readers[0]).get("perm", []))
    return readers[0] if perm == [0, rank - 1, *range(1, rank - 1)] else None


def _dims_text(dims: list[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
