"""Sliding windows, shared by the convolutions and pools: their window fields (ConvWindow, the
argument descriptions) and the arithmetic from kernel, stride, dilation and padding to sizes."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from pydantic import Field, PositiveInt

from netspec.layers.base import Ints2, Layer, Padding2, ShapeError
from netspec.shapes import Shape, Window, resolve_window

AXES = ("height", "width")
# Argument descriptions shared by the convolutions and pools (the schema and the docs show them).
KERNEL = "Window size: k, or [h, w] in 2d."
STRIDE = "Step between windows: s, or [h, w] in 2d."
PADDING = "valid (none), same (output ceil(n/s), as Keras and ONNX SAME_UPPER), p, or [h, w] in 2d."
DILATION = "Spacing between kernel taps: d, or [h, w] in 2d."


def windows(layer: Layer, spatial: Shape) -> tuple[Window, ...]:
    """Resolve a windowed layer's kernel/stride/dilation/padding into per-axis windows."""
    size = getattr(layer, "kernel", None) or layer.size  # type: ignore[attr-defined]
    stride = layer.stride or size  # type: ignore[attr-defined]
    dilation = getattr(layer, "dilation", (1,) * len(spatial))
    padding = layer.padding  # type: ignore[attr-defined]
    if padding == "same" and any(n is None and s > 1 for n, s in zip(spatial, stride)):
        # SAME's padding with a stride depends on the length (n mod stride): no fixed pads.
        raise ShapeError(
            "padding: same with a stride above 1 needs a known length, and the time axis is "
            "dynamic (null)",
            hint="use padding: valid (or an integer) with the stride, or a fixed input length",
        )
    return tuple(
        resolve_window(
            n, size[i], stride[i], dilation[i], padding if isinstance(padding, str) else padding[i]
        )
        for i, n in enumerate(spatial)
    )


def window_output(layer: Layer, shape: Shape, channels: int) -> tuple[Shape, tuple[Window, ...]]:
    """Output shape of a sliding-window layer, with the arithmetic spelled out when it is < 1."""
    spatial = shape[1:]
    wins = windows(layer, spatial)
    out = []
    axes = ("length",) if len(spatial) == 1 else AXES
    for axis, n, w in zip(axes, spatial, wins):
        size = w.out(n)
        if size is None:  # the dynamic time axis stays dynamic
            out.append(None)
            continue
        if size < 1:
            raise ShapeError(
                f"output {axis} would be {w.formula(n)} < 1: a window of {w.size}"
                f"{f' (dilation {w.dilation})' if w.dilation > 1 else ''} does not fit the input "
                f"{axis} {n}{' with this padding' if w.pad_begin or w.pad_end else ''}",
                hint="use padding: same, a smaller kernel or stride, or fewer downsampling layers before it",
            )
        out.append(size)
    return (channels, *out), wins


class ConvWindow(Layer):
    """The fields every convolution but the transposed one starts with (conv2d, separable_conv2d;
    conv1d narrows them to one axis): its output channels and its window."""

    filters: PositiveInt = Field(description="Output channels.")
    kernel: Ints2 = Field(description=KERNEL)
    stride: Ints2 = Field((1, 1), description=STRIDE)
    padding: Padding2 = Field("valid", description=PADDING)
    dilation: Ints2 = Field((1, 1), description=DILATION)
