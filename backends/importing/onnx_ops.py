"""One handler per ONNX op type (the `OPS` table): each turns a node into a netspec layer, a view of one, or a refusal.

Semantics from the ONNX operator spec (onnx/onnx docs/Operators.md): Conv pads are [begins...,
ends...], Gemm is alpha*A'B' + beta*C, recurrent W/R/B stack gates in ONNX's order (LSTM i, o,
f, c; GRU z, r, h) with B = [Wb; Rb], Y is [T, D, B, H] and Y_h [D, B, H].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from netspec.layers import KINDS
from netspec.layers.window import windows

from .onnx_graph import Importer, Unsupported, attrs, short_float

Handler = Callable[[Importer, onnx.NodeProto], None]


def uniform(values: list[int]) -> int | list[int]:
    """`3` for [3, 3], the list otherwise: the spec as a user would write it."""
    return values[0] if len(set(values)) == 1 else list(values)


def _pads_of(node: onnx.NodeProto, n: int, a: dict[str, Any]) -> tuple[list[int], list[int]]:
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "VALID"):
        raise Unsupported(f"auto_pad {auto}")  # SAME_*: resolved by the caller's candidates
    pads = list(a.get("pads", [0] * 2 * n)) if auto == "NOTSET" else [0] * 2 * n
    return pads[:n], pads[n:]


def _window_args(
    ctx: Importer,
    kind: str,
    base: dict[str, Any],
    spatial: tuple[int, ...],
    node: onnx.NodeProto,
    a: dict[str, Any],
) -> dict[str, Any] | None:
    """`base` with the netspec padding that resolves to the node's pads (valid, same or
    symmetric integers), or None when the pads are asymmetric and not `same`."""
    n = len(spatial)
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto == "SAME_UPPER":
        return {**base, "padding": "same"}
    if auto == "SAME_LOWER":
        raise Unsupported("auto_pad SAME_LOWER (the extra pad first)")
    begins, ends = _pads_of(node, n, a)
    wanted = [(b, e) for b, e in zip(begins, ends)]
    for padding in ("valid", "same", uniform(begins) if begins == ends else None):
        if padding is None:
            continue
        args = {**base, "padding": padding}
        try:
            layer = KINDS[kind].model_validate(args)
            got = [(w.pad_begin, w.pad_end) for w in windows(layer, spatial)]
        except Exception:
            continue
        if got == wanted:
            return args
    return None


def _spatial(ctx: Importer, layer: str, rank: int) -> tuple[int, ...]:
    shape = ctx.shape_of(layer)
    if len(shape) != rank + 1:
        raise Unsupported(f"an input of per-sample shape {shape} (needs {rank} spatial axes)")
    return tuple(shape[1:])


# --- weighted layers ---------------------------------------------------------------------------


def op_conv(ctx: Importer, node: onnx.NodeProto) -> None:
    a = attrs(node)
    w = ctx.need_const(node, 1, "kernel")
    b = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if w.ndim not in (3, 4):
        raise Unsupported(f"a {w.ndim - 2}-D convolution (netspec has conv1d and conv2d)")
    n = w.ndim - 2
    src = ctx.source(ctx.val(node.input[0]), node)
    spatial = _spatial(ctx, src, n)
    kind = f"conv{n}d"
    base: dict[str, Any] = {"filters": int(w.shape[0]), "kernel": uniform(list(w.shape[2:]))}
    if any(s != 1 for s in a.get("strides", [1] * n)):
        base["stride"] = uniform(list(a["strides"]))
    if any(d != 1 for d in a.get("dilations", [1] * n)):
        base["dilation"] = uniform(list(a["dilations"]))
    if a.get("group", 1) != 1:
        base["groups"] = int(a["group"])
    weights = {"weight": w}
    if b is not None:
        weights["bias"] = b
    elif len(node.input) > 2 and node.input[2]:
        raise Unsupported("a computed bias")
    else:
        base["bias"] = False
    args = _window_args(ctx, kind, base, spatial, node, a)
    if args is None:  # asymmetric pads: a zeropad2d first, then the convolution unpadded
        if n != 2:
            raise Unsupported("asymmetric pads on a 1-D convolution")
        begins, ends = _pads_of(node, n, a)
        pad = ctx.add(
            node,
            "zeropad2d",
            {"padding": [begins[0], ends[0], begins[1], ends[1]]},
            [src],
            bind=False,
            base="zeropad2d",
        )
        src, args = pad.name, {**base, "padding": "valid"}
    if args.get("padding") == "valid":
        del args["padding"]
    ctx.add(node, kind, args, [src], weights)


def op_conv_transpose(ctx: Importer, node: onnx.NodeProto) -> None:
    a = attrs(node)
    w = ctx.need_const(node, 1, "kernel")
    b = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if w.ndim != 4:
        raise Unsupported("a transposed convolution that is not 2-D")
    if a.get("group", 1) != 1 or "output_shape" in a:
        raise Unsupported("group or output_shape")
    src = ctx.source(ctx.val(node.input[0]), node)
    _spatial(ctx, src, 2)
    begins, ends = _pads_of(node, 2, a)
    extra = list(a.get("output_padding", [0, 0]))
    base: dict[str, Any] = {"filters": int(w.shape[1]), "kernel": uniform(list(w.shape[2:]))}
    for key, attr in (("stride", "strides"), ("dilation", "dilations")):
        if any(v != 1 for v in a.get(attr, [1, 1])):
            base[key] = uniform(list(a[attr]))
    weights = {"weight": w}
    if b is not None:
        weights["bias"] = b
    else:
        base["bias"] = False
    # The netspec arguments whose ONNX emission has these pads and output padding.
    candidates = [{"padding": "valid"}, {"padding": "same"}]
    if begins == ends:
        sym = {"padding": uniform(begins)}
        candidates += [sym, {**sym, "output_padding": uniform(extra)}]
    for extra_args in candidates:
        args = {**base, **extra_args}
        try:
            layer = KINDS["conv_transpose2d"].model_validate(args)
            pads = layer.pads()
        except Exception:
            continue
        given = layer.output_padding or (0, 0)
        got_b = [p[0] for p in pads]
        got_e = [max(p[1], 0) for p in pads]
        got_x = [g + max(-p[1], 0) for g, p in zip(given, pads)]
        if (got_b, got_e, got_x) == (begins, ends, extra):
            if args.get("padding") == "valid":
                del args["padding"]
            ctx.add(node, "conv_transpose2d", args, [src], weights)
            return
    raise Unsupported(f"pads {begins + ends} with output_padding {extra}")


def op_gemm(ctx: Importer, node: onnx.NodeProto) -> None:
    a = attrs(node)
    if a.get("transA", 0):
        raise Unsupported("transA=1")
    w = ctx.need_const(node, 1, "weight matrix")
    w = w if a.get("transB", 0) else w.T  # netspec's dense keeps (out, in), as transB=1
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    if alpha != 1.0:
        w = w * np.float32(alpha)
    src = ctx.source(ctx.val(node.input[0]), node)
    weights = {"weight": w}
    args: dict[str, Any] = {"units": int(w.shape[0])}
    if len(node.input) > 2 and node.input[2]:
        c = ctx.need_const(node, 2, "bias")
        if c.size not in (1, w.shape[0]):
            raise Unsupported(f"a bias C of shape {c.shape}")
        weights["bias"] = np.broadcast_to(c.reshape(-1) * np.float32(beta), (w.shape[0],))
    else:
        args["bias"] = False
    ctx.add(node, "dense", args, [src], weights)


def op_matmul(ctx: Importer, node: onnx.NodeProto) -> None:
    w = ctx.const(node.input[1])
    if w is None:
        raise Unsupported("a product of two computed tensors (attention is not imported yet)")
    if w.ndim != 2:
        raise Unsupported(f"a {w.ndim}-D constant operand")
    src = ctx.source(ctx.val(node.input[0]), node)
    ctx.add(node, "dense", {"units": int(w.shape[1]), "bias": False}, [src], {"weight": w.T})


def op_batchnorm(ctx: Importer, node: onnx.NodeProto) -> None:
    a = attrs(node)
    if len([o for o in node.output if o]) > 1 or a.get("training_mode", 0):
        raise Unsupported("training mode (running statistics as outputs)")
    scale, bias, mean, var = (
        ctx.need_const(node, k, w) for k, w in enumerate(("", "scale", "B", "mean", "var")) if k
    )
    src = ctx.source(ctx.val(node.input[0]), node)
    args: dict[str, Any] = {"eps": short_float(a.get("epsilon", 1e-5))}
    if "momentum" in a and short_float(a["momentum"]) != 0.9:
        args["momentum"] = short_float(a["momentum"])
    weights = {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var}
    ctx.add(node, "batchnorm", args, [src], weights)


def op_layernorm(ctx: Importer, node: onnx.NodeProto) -> None:
    a = attrs(node)
    v = ctx.val(node.input[0])
    if a.get("axis", -1) not in (-1, len(v.dims) - 1):
        raise Unsupported("normalization over more than the last axis")
    if len([o for o in node.output if o]) > 1:
        raise Unsupported("mean or inverse deviation as outputs")
    scale = ctx.need_const(node, 1, "scale")
    bias = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    bias = np.zeros_like(scale) if bias is None else bias
    src = ctx.source(v, node)
    args = {"eps": short_float(a.get("epsilon", 1e-5))}
    ctx.add(node, "layernorm", args, [src], {"weight": scale, "bias": bias})


# --- activations -------------------------------------------------------------------------------


def activation(kind: str, **args: Any) -> Handler:
    def handle(ctx: Importer, node: onnx.NodeProto) -> None:
        src = ctx.source(ctx.val(node.input[0]), node)
        ctx.add(node, kind, dict(args), [src])

    return handle


def op_leaky_relu(ctx: Importer, node: onnx.NodeProto) -> None:
    slope = short_float(attrs(node).get("alpha", 0.01))
    src = ctx.source(ctx.val(node.input[0]), node)
    ctx.add(node, "leaky_relu", {} if slope == 0.01 else {"negative_slope": slope}, [src])


def op_elu(ctx: Importer, node: onnx.NodeProto) -> None:
    alpha = short_float(attrs(node).get("alpha", 1.0))
    src = ctx.source(ctx.val(node.input[0]), node)
    ctx.add(node, "elu", {} if alpha == 1.0 else {"alpha": alpha}, [src])


def op_prelu(ctx: Importer, node: onnx.NodeProto) -> None:
    """PRelu with a constant slope: one for all, or one per channel (broadcast along axis 1)."""
    slope = ctx.need_const(node, 1, "constant slope")
    src = ctx.source(ctx.val(node.input[0]), node)
    shape = ctx.shape_of(src)
    dims = (1,) * (len(shape) + 1 - slope.ndim) + tuple(slope.shape)
    if slope.size == 1:
        ctx.add(node, "prelu", {"shared": True}, [src], {"weight": slope.reshape(1)})
    elif len(dims) == len(shape) + 1 and dims[1] == shape[0] and slope.size == shape[0]:
        ctx.add(node, "prelu", {}, [src], {"weight": slope.reshape(-1)})
    else:
        raise Unsupported(
            f"a slope of shape {list(slope.shape)} for an input of {list(shape)}: netspec's prelu "
            "has one slope per channel or one for all"
        )


def op_softmax(ctx: Importer, node: onnx.NodeProto) -> None:
    v = ctx.val(node.input[0])
    rank = len(v.dims)
    axis = attrs(node).get("axis", -1 if ctx.opset >= 13 else 1) % rank
    if ctx.opset < 13 and axis != rank - 1:
        raise Unsupported("softmax over a flattened block of axes (opset < 13, axis not last)")
    if axis == 0:
        raise Unsupported("softmax over the batch axis")
    src = ctx.source(v, node)
    ctx.add(node, "softmax", {} if axis == 1 else {"axis": axis - 1}, [src])


def op_gelu(ctx: Importer, node: onnx.NodeProto) -> None:
    approx = attrs(node).get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    src = ctx.source(ctx.val(node.input[0]), node)
    ctx.add(node, "gelu", {} if approx == "none" else {"approximate": approx}, [src])


def op_clip(ctx: Importer, node: onnx.NodeProto) -> None:
    a = attrs(node)
    if ctx.opset < 11:
        lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
    else:
        lo = ctx.const(node.input[1]) if len(node.input) > 1 and node.input[1] else -np.inf
        hi = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.inf
        if lo is None or hi is None:
            raise Unsupported("computed bounds")
    lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in (lo, hi))
    src = ctx.source(ctx.val(node.input[0]), node)
    if (lo, hi) == (0.0, 6.0):
        ctx.add(node, "relu6", {}, [src])
    elif (lo, hi) == (0.0, np.inf):
        ctx.add(node, "relu", {}, [src])
    elif np.isfinite(lo) and np.isfinite(hi):
        ctx.add(node, "clip", {"min": short_float(lo), "max": short_float(hi)}, [src])
    else:
        raise Unsupported(f"Clip({lo:g}, {hi:g}): a one-sided bound other than relu's (0, inf)")


def op_hard_sigmoid(ctx: Importer, node: onnx.NodeProto) -> None:
    a = attrs(node)
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if abs(alpha - 1 / 6) > 1e-6 or abs(beta - 0.5) > 1e-6:  # ONNX's default is Keras 2's 0.2
        raise Unsupported(
            f"HardSigmoid(alpha={alpha:g}, beta={beta:g}): netspec's hard_sigmoid is "
            "relu6(x + 3) / 6 (alpha 1/6, beta 0.5)"
        )
    ctx.add(node, "hard_sigmoid", {}, [ctx.source(ctx.val(node.input[0]), node)])


def op_hard_swish(ctx: Importer, node: onnx.NodeProto) -> None:
    ctx.add(node, "hard_swish", {}, [ctx.source(ctx.val(node.input[0]), node)])


# --- pooling -----------------------------------------------------------------------------------


def pool(op: str) -> Handler:
    def handle(ctx: Importer, node: onnx.NodeProto) -> None:
        a = attrs(node)
        if len([o for o in node.output if o]) > 1:
            raise Unsupported("the indices output")
        if a.get("ceil_mode", 0):
            raise Unsupported("ceil_mode=1")
        k = list(a["kernel_shape"])
        if any(d != 1 for d in a.get("dilations", [1] * len(k))):
            raise Unsupported("dilated pooling")
        src = ctx.source(ctx.val(node.input[0]), node)
        spatial = _spatial(ctx, src, len(k))
        kind = f"{op}pool{len(k)}d"
        base: dict[str, Any] = {"size": uniform(k)}
        strides = list(a.get("strides", [1] * len(k)))
        if strides != k:
            base["stride"] = uniform(strides)
        args = _window_args(ctx, kind, base, spatial, node, a)
        if args is None:
            raise Unsupported("asymmetric pads")
        padded = args.get("padding") != "valid"
        if op == "avg" and padded and a.get("count_include_pad", 0):
            raise Unsupported("count_include_pad=1 (netspec averages the real cells only)")
        if not padded:
            del args["padding"]
        ctx.add(node, kind, args, [src])

    return handle


def global_pool(op: str) -> Handler:
    def handle(ctx: Importer, node: onnx.NodeProto) -> None:
        src = ctx.source(ctx.val(node.input[0]), node)
        n = len(ctx.shape_of(src)) - 1
        if n not in (1, 2):
            raise Unsupported(f"global pooling over {n} axes")
        ctx.add(node, f"global_{op}pool{n}d", {"keepdims": True}, [src])

    return handle


def reduce(op: str) -> Handler:
    """ReduceMean/ReduceMax over every spatial axis: a global pool; over time of [T, F]: seq_pool."""

    def handle(ctx: Importer, node: onnx.NodeProto) -> None:
        a = attrs(node)
        v = ctx.val(node.input[0])
        rank = len(v.dims)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = ctx.need_const(node, 1, "axes").tolist()
        if axes is None:
            raise Unsupported("a reduction over every axis, the batch included")
        axes = sorted(x % rank for x in axes)
        keep = bool(a.get("keepdims", 1))
        src = ctx.source(v, node)
        if rank in (3, 4) and axes == list(range(2, rank)):
            ctx.add(node, f"global_{op}pool{rank - 2}d", {"keepdims": keep}, [src])
        elif rank == 3 and axes == [1] and not keep:
            ctx.add(node, "seq_pool", {"op": "mean" if op == "avg" else "max"}, [src])
        else:
            raise Unsupported(f"a reduction over axes {axes} of a rank-{rank} tensor")

    return handle
