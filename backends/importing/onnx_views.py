"""ONNX ops that join, view, pad, crop or resize values: merges (Add, Concat, Mul), the views (Transpose, Squeeze, Unsqueeze), Shape and Gather, Slice, Pad, Resize/Upsample."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from .onnx_graph import BATCH, Importer, Unsupported, Val, attrs
from .onnx_ops import uniform

# --- merges ------------------------------------------------------------------------------------


def _bias_target(ctx: Importer, node: onnx.NodeProto, v: Val, c: np.ndarray) -> bool:
    """Add of a constant to a bias-less dense or convolution read only here: its bias."""
    lay = ctx.layers.get(v.layer)
    if lay is None or lay.args.get("bias", True) or not ctx.single_reader(lay.onnx_value):
        return False
    if lay.onnx_value not in node.input or lay.kind not in ("dense", "conv1d", "conv2d"):
        return False
    units = lay.shape[-1] if lay.kind == "dense" else lay.shape[0]
    flat = c.reshape(-1)
    if flat.size != units:
        return False
    want = (units,) if lay.kind == "dense" else (units,) + (1,) * (len(lay.shape) - 1)
    if tuple(c.shape[-len(want) :]) != want:  # else it broadcasts along another axis
        return False
    del lay.args["bias"]
    lay.weights["bias"] = np.ascontiguousarray(flat, dtype=np.float32)
    ctx.vals[node.output[0]] = v
    lay.onnx_value = node.output[0]
    return True


def op_add(ctx: Importer, node: onnx.NodeProto) -> None:
    x, y = node.input[0], node.input[1]
    cx, cy = ctx.const(x), ctx.const(y)
    if cx is not None or cy is not None:
        v, c = (ctx.val(y), cx) if cx is not None else (ctx.val(x), cy)
        if _bias_target(ctx, node, v, c):  # type: ignore[arg-type]
            return
        shift = _channels(c, v.dims)  # type: ignore[arg-type]
        if shift is None or len(v.dims) > 4:
            raise Unsupported("an added constant that is neither a bias nor one per channel")
        _batchnorm(ctx, node, v, np.ones_like(shift), shift, node.output[0])
        return
    _merge(ctx, node, "add", {})


def _merge(ctx: Importer, node: onnx.NodeProto, kind: str, args: dict[str, Any]) -> None:
    vals = [ctx.val(i) for i in node.input]
    if len({len(v.dims) for v in vals}) != 1:
        raise Unsupported("inputs of different ranks")
    srcs = [ctx.source(v, node) for v in vals]
    ctx.add(node, kind, args, srcs)


def op_sum(ctx: Importer, node: onnx.NodeProto) -> None:
    if len(node.input) == 1:
        ctx.vals[node.output[0]] = ctx.val(node.input[0])
        return
    _merge(ctx, node, "add", {})


def op_concat(ctx: Importer, node: onnx.NodeProto) -> None:
    vals = [ctx.val(i) for i in node.input]
    axis = attrs(node)["axis"] % len(vals[0].dims)
    if axis == 0:
        raise Unsupported("concatenation along the batch axis")
    _merge(ctx, node, "concat", {} if axis == 1 else {"axis": axis - 1})


def _channels(c: np.ndarray, dims: tuple[int | None, ...]) -> np.ndarray | None:
    """A constant that scales or shifts each channel (ONNX axis 1) of a value of `dims`, as a
    vector of one value per channel; None when it varies along another axis."""
    channels, rank = dims[1], len(dims)
    if c.size == 1:
        return np.full(channels, c.reshape(-1)[0], dtype=np.float32)  # type: ignore[arg-type]
    want = (channels,) + (1,) * (rank - 2)
    if c.size != channels or tuple(c.shape[-len(want) :]) != want:
        return None
    return c.reshape(-1).astype(np.float32)


def _affine(ctx: Importer, node: onnx.NodeProto) -> None:
    """x * scale (+ shift) per channel, as tf2onnx writes a folded batch normalization and
    netspec's export a batchnorm after a sigmoid-like activation: a batchnorm of mean 0 and
    variance 1 - eps (so that it divides by exactly 1)."""
    const = next(i for i in node.input if ctx.const(i) is not None)
    v = ctx.val(next(i for i in node.input if i != const))
    scale = _channels(ctx.const(const), v.dims)  # type: ignore[arg-type]
    if scale is None or len(v.dims) > 4:
        raise Unsupported("a product with a constant that is not one factor per channel")
    readers = [n for n in ctx.model.graph.node if node.output[0] in n.input]
    shift = np.zeros_like(scale)
    out = node.output[0]
    if len(readers) == 1 and readers[0].op_type == "Add" and ctx.single_reader(out):
        add = readers[0]
        other = [i for i in add.input if i != out]
        c = ctx.const(other[0]) if len(other) == 1 else None
        per = _channels(c, v.dims) if c is not None else None
        if per is not None:
            shift, out = per, add.output[0]
            ctx.skip.add(out)
    _batchnorm(ctx, node, v, scale, shift, out)


def _batchnorm(
    ctx: Importer, node: onnx.NodeProto, v: Val, scale: np.ndarray, shift: np.ndarray, out: str
) -> None:
    src = ctx.source(v, node)
    eps = 1e-3  # netspec's default
    weights = {
        "weight": scale,
        "bias": shift,
        "running_mean": np.zeros_like(scale),
        "running_var": np.full_like(scale, 1.0 - eps),
    }
    lay = ctx.add(node, "batchnorm", {}, [src], weights, bind=False)
    lay.onnx_value = out
    ctx.set_layer_value(out, lay)


def op_mul(ctx: Importer, node: onnx.NodeProto) -> None:
    if any(ctx.const(i) is not None for i in node.input):
        _affine(ctx, node)
        return
    a, b = ctx.val(node.input[0]), ctx.val(node.input[1])
    for x, s in ((a, b), (b, a)):  # x * sigmoid(x): silu
        lay = ctx.layers.get(s.layer)
        if (
            lay is not None
            and lay.kind == "sigmoid"
            and lay.inputs == [x.layer]
            and s.tokens == x.tokens
            and ctx.single_reader(lay.onnx_value)
        ):
            lay.kind = "silu"
            ctx.vals[node.output[0]] = s
            lay.onnx_value = node.output[0]
            return
    _merge(ctx, node, "multiply", {})


# --- shapes and views --------------------------------------------------------------------------


def op_identity(ctx: Importer, node: onnx.NodeProto) -> None:
    if len(node.output) > 1 and node.output[1] and ctx.readers.get(node.output[1]):
        raise Unsupported("the dropout mask output")
    ctx.vals[node.output[0]] = ctx.val(node.input[0])


def op_transpose(ctx: Importer, node: onnx.NodeProto) -> None:
    v = ctx.val(node.input[0])
    perm = attrs(node).get("perm", list(range(len(v.dims)))[::-1])
    ctx.vals[node.output[0]] = Val(
        v.layer, tuple(v.tokens[p] for p in perm), tuple(v.dims[p] for p in perm)
    )


def _axes(ctx: Importer, node: onnx.NodeProto) -> list[int] | None:
    a = attrs(node)
    if "axes" in a:
        return list(a["axes"])
    if len(node.input) > 1 and node.input[1]:
        return ctx.need_const(node, 1, "axes").reshape(-1).tolist()
    return None


def op_unsqueeze(ctx: Importer, node: onnx.NodeProto) -> None:
    v = ctx.val(node.input[0])
    axes = _axes(ctx, node) or []
    rank = len(v.dims) + len(axes)
    tokens, dims = list(v.tokens), list(v.dims)
    for ax in sorted(x % rank for x in axes):
        tokens.insert(ax, None)
        dims.insert(ax, 1)
    ctx.vals[node.output[0]] = Val(v.layer, tuple(tokens), tuple(dims))


def op_squeeze(ctx: Importer, node: onnx.NodeProto) -> None:
    v = ctx.val(node.input[0])
    rank = len(v.dims)
    axes = _axes(ctx, node)
    drop = (
        {x % rank for x in axes}
        if axes is not None
        else {i for i, d in enumerate(v.dims) if d == 1}
    )
    if any(v.dims[i] != 1 for i in drop):
        raise Unsupported("squeezing an axis that is not of size 1 (the batch?)")
    keep = [i for i in range(rank) if i not in drop]
    ctx.vals[node.output[0]] = Val(
        v.layer, tuple(v.tokens[i] for i in keep), tuple(v.dims[i] for i in keep)
    )


def op_shape(ctx: Importer, node: onnx.NodeProto) -> None:
    v = ctx.val(node.input[0])
    a = attrs(node)
    dims = np.asarray([BATCH if d is None else d for d in v.dims], dtype=np.int64)
    ctx.consts[node.output[0]] = dims[a.get("start", 0) : a.get("end", len(dims))]


def op_cast(ctx: Importer, node: onnx.NodeProto) -> None:
    """Casts between float and integer ids: the value itself (an embedding truncates ids)."""
    if attrs(node).get("to") not in NUMBERS:
        raise Unsupported("a cast to a type that is not a number")
    ctx.vals[node.output[0]] = ctx.val(node.input[0])


NUMBERS = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.INT64,
    onnx.TensorProto.INT32,
}


def op_gather(ctx: Importer, node: onnx.NodeProto) -> None:
    table = ctx.const(node.input[0])
    if table is not None:  # rows of a constant table by computed ids: an embedding
        if table.ndim != 2 or attrs(node).get("axis", 0) != 0:
            raise Unsupported("a lookup that is not of rows of a 2-D table")
        src = ctx.source(ctx.val(node.input[1]), node)
        args = {"input_dim": int(table.shape[0]), "output_dim": int(table.shape[1])}
        ctx.add(node, "embedding", args, [src], {"weight": table})
        return
    v = ctx.val(node.input[0])
    index = ctx.need_const(node, 1, "indices")
    axis = attrs(node).get("axis", 0) % len(v.dims)
    if len(v.dims) == 3 and axis == 1 and index.ndim == 0 and int(index) in (-1, v.dims[1] - 1):
        src = ctx.source(v, node)
        ctx.add(node, "seq_pool", {"op": "last"}, [src])
        return
    raise Unsupported("a gather that is not the last step of a sequence")


def op_slice(ctx: Importer, node: onnx.NodeProto) -> None:
    """Steps or pixels cut off the edges (trim1d, trim2d; `[a:b]` with negative or clamped
    bounds as torch writes them); a centred crop of H and W to an earlier layer's size is crop2d
    (a skip connection's crop)."""
    v = ctx.val(node.input[0])
    if ctx.opset < 10:
        a = attrs(node)
        starts, ends, axes = a["starts"], a["ends"], a.get("axes", list(range(len(a["starts"]))))
    else:
        starts = ctx.need_const(node, 1, "starts").tolist()
        ends = ctx.need_const(node, 2, "ends").tolist()
        axes = (
            ctx.need_const(node, 3, "axes").tolist()
            if len(node.input) > 3 and node.input[3]
            else list(range(len(starts)))
        )
        if len(node.input) > 4 and node.input[4] and any(ctx.need_const(node, 4, "steps") != 1):
            raise Unsupported("steps other than 1")
    rank = len(v.dims)
    axes = [x % rank for x in axes]
    if rank not in (3, 4) or not axes or any(ax < 2 for ax in axes) or len(set(axes)) < len(axes):
        raise Unsupported("a slice that is not a crop of the length, or of height and width")
    src = ctx.source(v, node)
    shape = ctx.shape_of(src)
    box = {ax: (0, shape[ax - 1]) for ax in range(2, rank)}
    for ax, s, e in zip(axes, starts, ends):
        n = shape[ax - 1]
        s, e = (max(0, min(i + n if i < 0 else i, n)) for i in (s, e))
        if e <= s:
            raise Unsupported(f"a slice [{s}:{e}] of an axis of {n} that leaves nothing")
        box[ax] = (s, e)
    cuts = [c for ax in range(2, rank) for c in (box[ax][0], shape[ax - 1] - box[ax][1])]
    kind = "trim1d" if rank == 3 else "trim2d"
    if rank == 4 and sorted(axes) == [2, 3]:
        h, w = box[2][1] - box[2][0], box[3][1] - box[3][0]
        to = next(
            (
                n
                for n in reversed(list(ctx.layers))
                if ctx.layers[n].shape[1:] == (h, w) and len(ctx.layers[n].shape) == 3
            ),
            None,
        )
        # U-Net's centred skip crop to an earlier layer's size stays crop2d (it says why)
        if to is not None and (box[2][0], box[3][0]) == ((shape[1] - h) // 2, (shape[2] - w) // 2):
            ctx.add(node, "crop2d", {"to": to}, [src])
            return
    ctx.add(node, kind, {"trim": uniform(cuts)}, [src])


def op_pad(ctx: Importer, node: onnx.NodeProto) -> None:
    a = attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise Unsupported(f"{mode} padding (netspec pads with zeros)")
    if ctx.opset < 11:
        pads, value = list(a["pads"]), a.get("value", 0.0)
    else:
        pads = ctx.need_const(node, 1, "pads").tolist()
        value = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else 0.0
        if len(node.input) > 3 and node.input[3]:
            raise Unsupported("the axes input")
    if value is None or np.any(np.asarray(value) != 0):
        raise Unsupported("a pad value other than zero")
    v = ctx.val(node.input[0])
    if len(pads) == 6 and not any(pads[i] for i in (0, 1, 3, 4)) and min(pads) >= 0:
        src = ctx.source(v, node)
        ctx.add(node, "zeropad1d", {"padding": uniform([pads[2], pads[5]])}, [src])
        return
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
        raise Unsupported(
            "padding other than of the length of [N, C, L] or height and width of [N, C, H, W]"
        )
    src = ctx.source(v, node)
    ctx.add(node, "zeropad2d", {"padding": [pads[2], pads[6], pads[3], pads[7]]}, [src])


def op_resize(ctx: Importer, node: onnx.NodeProto) -> None:
    a = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs(node).items()}
    v = ctx.val(node.input[0])
    if len(v.dims) not in (3, 4):
        raise Unsupported("resizing that is not of the length of [N, C, L] or height and width")
    mode = a.get("mode", "nearest")
    if node.op_type == "Upsample":
        scales = a.get("scales") or ctx.need_const(node, 1, "scales").tolist()
        transform, nearest = "asymmetric", "floor"
    else:
        scales = None
        k_scales = 1 if ctx.opset < 11 else 2
        s = (
            ctx.const(node.input[k_scales])
            if len(node.input) > k_scales and node.input[k_scales]
            else None
        )
        if s is not None and s.size:
            scales = s.tolist()
        elif len(node.input) > 3 and node.input[3]:
            sizes = ctx.need_const(node, 3, "sizes").tolist()
            scales = [1.0, 1.0] + [o / i for o, i in zip(sizes[2:], v.dims[2:])]
        else:
            raise Unsupported("no scales or sizes")
        transform = a.get("coordinate_transformation_mode", "half_pixel")
        nearest = a.get("nearest_mode", "round_prefer_floor")
    if list(scales[:2]) != [1.0, 1.0] or any(float(s) != int(s) or s < 1 for s in scales[2:]):
        raise Unsupported(f"scales {scales} (netspec upsamples the spatial axes by integers)")
    factor = [int(s) for s in scales[2:]]
    if mode == "nearest":
        # Source index floor(i / s) (netspec's, torch's): asymmetric with floor, or the half-pixel
        # modes with rounding, which give the same index for integer scales.
        ok = (transform == "asymmetric" and nearest == "floor") or (
            transform in ("half_pixel", "pytorch_half_pixel") and nearest.startswith("round")
        )
        args: dict[str, Any] = {"scale": uniform(factor)}
    elif mode == "linear":
        ok = transform in ("half_pixel", "pytorch_half_pixel")
        args = {"scale": uniform(factor), "mode": "bilinear"}
    else:
        ok = False
    if not ok or (len(v.dims) == 3 and mode != "nearest"):
        raise Unsupported(f"mode {mode} with coordinate transformation {transform}")
    src = ctx.source(v, node)
    ctx.add(node, "upsample1d" if len(v.dims) == 3 else "upsample2d", args, [src])
