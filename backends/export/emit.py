"""One ONNX emission per layer kind: the `EXPORTS` table, keyed by layer class (or family)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from onnx import TensorProto

from netspec import layers
from netspec.ir import Node
from netspec.layers import (
    BatchNorm,
    Clip,
    Conv,
    ConvTranspose2D,
    Crop2D,
    GlobalPool,
    Layer,
    LayerNorm,
    Pool,
    SeparableConv2D,
    Trim,
    Upsample1D,
    Upsample2D,
    table_entry,
)
from netspec.layers.activations import Act, activation_of
from netspec.layers.window import windows
from netspec.shapes import Window, batch_axis, window_counts

from .emit_sequence import emit_attention, emit_masking, emit_recurrent, emit_seq_pool
from .emitter import Emitter, ExportError

Emit = Callable[[Emitter, Node, list[str]], str]


def _pads(wins: Sequence[Window]) -> list[int]:
    return [w.pad_begin for w in wins] + [w.pad_end for w in wins]


def _act(node: Node) -> Act | None:
    """The node's activation (bare or fused `activation:`), resolved by the core."""
    return activation_of(node.layer, len(node.shape))


def emit_dense(em: Emitter, node: Node, xs: list[str]) -> str:
    if len(node.input_shapes[0]) == 1:
        return em.fused(node, _act(node), "Gemm", [xs[0], *em.weight_inputs(node)], transB=1)
    # On a rank > 1 input, MatMul over the last axis: the kernel is stored transposed, (in, out).
    t = em.plan.tensors[node.name]
    w = em.init(f"{node.name}.weight_t", t["weight"].T)
    if "bias" not in t:
        return em.fused(node, _act(node), "MatMul", [xs[0], w])
    y = em.op("MatMul", [xs[0], w], em.fresh(f"{node.name}/matmul"), node.name)
    return em.fused(node, _act(node), "Add", [y, em.init(f"{node.name}.bias", t["bias"])])


def _conv_input(em: Emitter, node: Node, x: str) -> tuple[str, list[int]]:
    """The convolution's input and its Conv `pads`, from the node's windows."""
    layer: Conv | SeparableConv2D = node.layer  # type: ignore[assignment]
    wins = windows(layer, node.input_shapes[0][1:])
    pads = _pads(wins)
    if all(k == 1 for k in layer.kernel) and any(pads):
        # OpenCV DNN (up to 5.0 at least) returns garbage for a 1x1 Conv with pads: an explicit
        # zero Pad first, then the convolution unpadded, computes the same everywhere.
        full = em.ints(f"{node.name}/pads", [0, 0, *pads[: len(wins)], 0, 0, *pads[len(wins) :]])
        x = em.op("Pad", [x, full], em.fresh(f"{node.name}/padded"), node.name, mode="constant")
        pads = [0] * len(pads)
    return x, pads


def emit_conv(em: Emitter, node: Node, xs: list[str]) -> str:
    layer: Conv = node.layer  # type: ignore[assignment]
    x, pads = _conv_input(em, node, xs[0])
    return em.fused(
        node,
        _act(node),
        "Conv",
        [x, *em.weight_inputs(node)],
        kernel_shape=list(layer.kernel),
        strides=list(layer.stride),
        dilations=list(layer.dilation),
        pads=pads,
        group=layer.groups,
    )


def emit_separable(em: Emitter, node: Node, xs: list[str]) -> str:
    """Two Conv nodes: the depthwise (group = input channels, no bias), then the 1x1 pointwise."""
    layer: SeparableConv2D = node.layer  # type: ignore[assignment]
    x, pads = _conv_input(em, node, xs[0])
    depthwise, pointwise, *bias = em.weight_inputs(node)
    mid = em.op(
        "Conv",
        [x, depthwise],
        em.fresh(f"{node.name}/depthwise"),
        node.name,
        kernel_shape=list(layer.kernel),
        strides=list(layer.stride),
        dilations=list(layer.dilation),
        pads=pads,
        group=node.input_shapes[0][0],
    )
    return em.fused(node, _act(node), "Conv", [mid, pointwise, *bias], kernel_shape=[1, 1])


def emit_clip(em: Emitter, node: Node, xs: list[str]) -> str:
    layer: Clip = node.layer  # type: ignore[assignment]
    bounds = [em.const(layer.min), em.const(layer.max)]
    return em.op("Clip", [xs[0], *bounds], node.name, node.name)


def emit_prelu(em: Emitter, node: Node, xs: list[str]) -> str:
    """PRelu, its slopes (the declared `weight`, [C]) reshaped to broadcast along the channel
    axis ([C, 1, 1] for a map)."""
    (slope,) = em.weight_inputs(node)
    rank = len(node.shape)
    if rank > 1 and node.weights["weight"].shape[0] > 1:
        shape = em.ints(f"{node.name}/slope_shape", [-1] + [1] * (rank - 1))
        slope = em.op("Reshape", [slope, shape], em.fresh(f"{node.name}/slope"), node.name)
    return em.op("PRelu", [xs[0], slope], node.name, node.name)


def emit_conv_transpose(em: Emitter, node: Node, xs: list[str]) -> str:
    layer: ConvTranspose2D = node.layer  # type: ignore[assignment]
    begins, ends, extra = [], [], []
    for b, e in layer.pads():
        begins.append(b)
        ends.append(max(e, 0))
        extra.append(max(-e, 0))  # a negative end grows the output: output padding
    given = layer.output_padding or (0, 0)
    return em.fused(
        node,
        _act(node),
        "ConvTranspose",
        [xs[0], *em.weight_inputs(node)],
        kernel_shape=list(layer.kernel),
        strides=list(layer.stride),
        dilations=list(layer.dilation),
        pads=begins + ends,
        output_padding=[g + x for g, x in zip(given, extra)],
    )


def emit_pool(em: Emitter, node: Node, xs: list[str]) -> str:
    layer: Pool = node.layer  # type: ignore[assignment]
    spatial = node.input_shapes[0][1:]
    wins = windows(layer, spatial)
    is_max = layer.op == "max"
    attrs: dict[str, Any] = {
        "kernel_shape": [w.size for w in wins],
        "strides": [w.stride for w in wins],
    }
    if all(w.pad_begin < w.size and w.pad_end < w.size for w in wins):
        if is_max:
            return em.op("MaxPool", xs, node.name, node.name, pads=_pads(wins), **attrs)
        return em.op(
            "AveragePool", xs, node.name, node.name, pads=_pads(wins), count_include_pad=0, **attrs
        )
    # A pad as large as the window (an explicit integer padding): ONNX pools refuse it, so pad
    # first (-inf for max), pool unpadded, and rescale averages by the real cells per window.
    zeros = [0, 0]
    pads = em.ints(
        f"{node.name}/pads", zeros + [w.pad_begin for w in wins] + zeros + [w.pad_end for w in wins]
    )
    fill = em.const(-math.inf if is_max else 0.0)
    padded = em.op("Pad", [xs[0], pads, fill], em.fresh(f"{node.name}/padded"), node.name)
    if is_max:
        return em.op("MaxPool", [padded], node.name, node.name, **attrs)
    pooled = em.op("AveragePool", [padded], em.fresh(f"{node.name}/pooled"), node.name, **attrs)
    scale = np.ones(())
    with np.errstate(divide="ignore"):  # a window of padding only: inf, as in PyTorch
        for w, n in zip(wins, spatial):
            scale = scale[..., None] * (w.size / np.asarray(window_counts(w, n)))
    return em.op("Mul", [pooled, em.init(f"{node.name}/divisor", scale)], node.name, node.name)


def emit_global_pool(em: Emitter, node: Node, xs: list[str]) -> str:
    layer: GlobalPool = node.layer  # type: ignore[assignment]
    op = {"avg": "GlobalAveragePool", "max": "GlobalMaxPool"}[layer.op]
    if layer.keepdims:
        return em.op(op, xs, node.name, node.name)
    y = em.op(op, xs, em.fresh(f"{node.name}/pooled"), node.name)
    return em.op("Flatten", [y], node.name, node.name, axis=1)


def emit_flatten(em: Emitter, node: Node, xs: list[str]) -> str:
    return em.op("Flatten", xs, node.name, node.name, axis=1)


def emit_reshape(em: Emitter, node: Node, xs: list[str]) -> str:
    shape = em.ints(f"{node.name}/shape", [0, *node.shape])  # 0: keep the batch size
    return em.op("Reshape", [xs[0], shape], node.name, node.name)


def emit_dropout(em: Emitter, node: Node, xs: list[str]) -> str:
    return xs[0]  # inference: the identity


# After these ops OpenCV DNN (up to 5.0 at least) fuses a BatchNormalization into the activation
# wrongly (errors of about 3): there the batchnorm is written as the per-channel Mul and Add it is.
MISFUSED_BEFORE_BATCHNORM = frozenset({"Sigmoid", "Tanh", "HardSigmoid", "Mul"})  # Mul: SiLU


def emit_batchnorm(em: Emitter, node: Node, xs: list[str]) -> str:
    if node.name in em.plan.folded:
        return xs[0]
    layer: BatchNorm = node.layer  # type: ignore[assignment]
    if em.producer(xs[0]) in MISFUSED_BEFORE_BATCHNORM:
        t = em.plan.tensors[node.name]
        g = t["weight"] / np.sqrt(t["running_var"] + layer.eps)
        view = (-1,) + (1,) * (len(node.shape) - 1)  # channels first, per sample
        scale = em.init(f"{node.name}.scale", g.reshape(view))
        shift = em.init(f"{node.name}.shift", (t["bias"] - t["running_mean"] * g).reshape(view))
        y = em.op("Mul", [xs[0], scale], em.fresh(f"{node.name}/scaled"), node.name)
        return em.op("Add", [y, shift], node.name, node.name)
    # Declared as weight, bias, running_mean, running_var: ONNX's scale, B, mean, var.
    inputs = [xs[0], *em.weight_inputs(node)]
    return em.op("BatchNormalization", inputs, node.name, node.name, epsilon=float(layer.eps))


def emit_layernorm(em: Emitter, node: Node, xs: list[str]) -> str:
    layer: LayerNorm = node.layer  # type: ignore[assignment]
    inputs = [xs[0], *em.weight_inputs(node)]  # weight, bias: ONNX's Scale, B
    return em.op(
        "LayerNormalization", inputs, node.name, node.name, axis=-1, epsilon=float(layer.eps)
    )


def emit_activation(em: Emitter, node: Node, xs: list[str]) -> str:
    """Every activation layer (`activation {fn}`, `relu`, `softmax`, ...), from its core `Act`."""
    return em.activation(_act(node), xs[0], node.name, node.name, len(node.shape))


def emit_upsample(em: Emitter, node: Node, xs: list[str]) -> str:
    layer: Upsample2D = node.layer  # type: ignore[assignment]
    scales = em.init(
        f"{node.name}/scales", np.array([1, 1, *layer.scale], dtype=np.float32), np.float32
    )
    if layer.mode == "bilinear":  # torch's align_corners=False
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    else:  # torch's nearest: source index floor(i / scale)
        attrs = {
            "mode": "nearest",
            "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor",
        }
    return em.op("Resize", [xs[0], "", scales], node.name, node.name, **attrs)


def emit_upsample1d(em: Emitter, node: Node, xs: list[str]) -> str:
    """torch's nearest on [N, C, L]: source step floor(i / scale)."""
    layer: Upsample1D = node.layer  # type: ignore[assignment]
    scales = em.init(f"{node.name}/scales", np.array([1, 1, layer.scale], np.float32), np.float32)
    attrs = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    return em.op("Resize", [xs[0], "", scales], node.name, node.name, mode="nearest", **attrs)


def emit_zeropad(em: Emitter, node: Node, xs: list[str]) -> str:
    """zeropad2d (top, bottom, left, right) and zeropad1d (left, right)."""
    pads = node.layer.padding  # type: ignore[attr-defined]
    if len(pads) == 2:
        onnx_pads = [0, 0, pads[0], 0, 0, pads[1]]
    else:
        top, bottom, left, right = pads
        onnx_pads = [0, 0, top, left, 0, 0, bottom, right]
    pads_name = em.ints(f"{node.name}/pads", onnx_pads)
    return em.op("Pad", [xs[0], pads_name], node.name, node.name, mode="constant")


def emit_trim(em: Emitter, node: Node, xs: list[str]) -> str:
    """trim1d, trim2d: a Slice of the axes after the channels, its bounds from the IR's shape."""
    layer: Trim = node.layer  # type: ignore[assignment]
    begins = [b for b, _ in layer.edges()]
    starts = em.ints(f"{node.name}/starts", begins)
    ends = em.ints(
        f"{node.name}/ends", [b + n for b, n in zip(begins, node.shape[1:], strict=True)]
    )
    axes = em.ints(f"{node.name}/axes", list(range(2, 2 + len(begins))))
    return em.op("Slice", [xs[0], starts, ends, axes], node.name, node.name)


def emit_crop(em: Emitter, node: Node, xs: list[str]) -> str:
    layer: Crop2D = node.layer  # type: ignore[assignment]
    top, left = layer.offsets(node.input_shapes[0], node.shape)
    starts = em.ints(f"{node.name}/starts", [top, left])
    ends = em.ints(f"{node.name}/ends", [top + node.shape[1], left + node.shape[2]])
    axes = em.ints(f"{node.name}/axes", [2, 3])
    return em.op("Slice", [xs[0], starts, ends, axes], node.name, node.name)


def emit_concat(em: Emitter, node: Node, xs: list[str]) -> str:
    axis = batch_axis(node.layer.axis, len(node.shape))  # type: ignore[attr-defined]
    return em.op("Concat", xs, node.name, node.name, axis=axis)


def emit_add(em: Emitter, node: Node, xs: list[str]) -> str:
    return em.op("Add" if len(xs) == 2 else "Sum", xs, node.name, node.name)


def emit_permute(em: Emitter, node: Node, xs: list[str]) -> str:
    perm = [0, *(d + 1 for d in node.layer.dims)]  # type: ignore[attr-defined]
    return em.op("Transpose", xs, node.name, node.name, perm=perm)


def emit_multiply(em: Emitter, node: Node, xs: list[str]) -> str:
    rank = len(node.shape)
    full = []
    for x, shape in zip(xs, node.input_shapes):
        missing = rank - len(shape)
        if missing:  # a lower-rank input's missing axes go after the batch axis (numpy, per sample)
            axes = em.ints(f"{node.name}/axes", list(range(1, 1 + missing)))
            x = em.op("Unsqueeze", [x, axes], em.fresh(f"{node.name}/unsqueezed"), node.name)
        full.append(x)
    y = full[0]
    for k, x in enumerate(full[1:], 2):
        out = node.name if k == len(full) else em.fresh(f"{node.name}/product")
        y = em.op("Mul", [y, x], out, node.name)
    return y


def emit_embedding(em: Emitter, node: Node, xs: list[str]) -> str:
    ids = em.op("Cast", xs, em.fresh(f"{node.name}/ids"), node.name, to=TensorProto.INT64)
    return em.op("Gather", [*em.weight_inputs(node), ids], node.name, node.name, axis=0)


def emit_position_embedding(em: Emitter, node: Node, xs: list[str]) -> str:
    (table,) = em.weight_inputs(node)
    steps = node.shape[0]
    # A dynamic time axis: the rows to add are as many as this input's steps (Shape, then its
    # axis 1); predict refuses a sequence longer than the table before it gets here.
    end = em.ints(f"{node.name}/end", [steps]) if steps is not None else em.dim(xs[0], 1, node.name)
    rows = em.op(
        "Slice",
        [table, em.ints(f"{node.name}/start", [0]), end],
        em.fresh(f"{node.name}/rows"),
        node.name,
    )
    return em.op("Add", [xs[0], rows], node.name, node.name)


# Looked up like LOWERINGS, through the class hierarchy (netspec.layers.table_entry).
EXPORTS: dict[type[Layer], Emit] = {
    layers.Dense: emit_dense,
    layers.Conv: emit_conv,  # conv1d, conv2d
    layers.SeparableConv2D: emit_separable,
    layers.ConvTranspose2D: emit_conv_transpose,
    layers.Pool: emit_pool,  # max and average, 1-D and 2-D
    layers.GlobalPool: emit_global_pool,  # mean and maximum, 1-D and 2-D
    layers.Flatten: emit_flatten,
    layers.Reshape: emit_reshape,
    layers.Dropout: emit_dropout,
    layers.BatchNorm: emit_batchnorm,
    layers.LayerNorm: emit_layernorm,
    layers.ActivationLayer: emit_activation,  # the whole family, by its Act
    layers.Clip: emit_clip,
    layers.PReLU: emit_prelu,
    layers.Upsample1D: emit_upsample1d,
    layers.Upsample2D: emit_upsample,
    layers.ZeroPad1D: emit_zeropad,
    layers.ZeroPad2D: emit_zeropad,
    layers.Crop2D: emit_crop,
    layers.Trim: emit_trim,  # trim1d, trim2d
    layers.Concat: emit_concat,
    layers.Add: emit_add,
    layers.Permute: emit_permute,
    layers.Multiply: emit_multiply,
    layers.Embedding: emit_embedding,
    layers.Masking: emit_masking,
    layers.Recurrent: emit_recurrent,  # simple_rnn, gru, lstm
    layers.PositionEmbedding: emit_position_embedding,
    layers.SeqPool: emit_seq_pool,
    layers.MultiHeadAttention: emit_attention,
}


def emit_fn(node: Node) -> Emit:
    """The emission of a node's layer kind, or an ExportError naming the kind."""
    fn = table_entry(EXPORTS, type(node.layer))
    if fn is None:
        raise ExportError(
            f"layer '{node.name}': no ONNX export for layer kind '{node.kind}' "
            "(add one to netspec.backends.export.emit.EXPORTS)"
        )
    return fn
