"""conv1d / conv2d: convolutions over [C, L] and [C, H, W] inputs."""

from __future__ import annotations

from typing import ClassVar

from pydantic import PositiveInt

from netspec.layers.base import (
    ActivationName,
    Ints1,
    Ints2,
    Layer,
    Padding1,
    Padding2,
    ShapeError,
    Weight,
    check_rank,
)
from netspec.shapes import Shape, Window, prod, resolve_window

AXES = ("height", "width")


def windows(layer: Layer, spatial: Shape) -> tuple[Window, ...]:
    """Resolve a windowed layer's kernel/stride/dilation/padding into per-axis windows."""
    size = getattr(layer, "kernel", None) or layer.size  # type: ignore[attr-defined]
    stride = layer.stride or size  # type: ignore[attr-defined]
    dilation = getattr(layer, "dilation", (1,) * len(spatial))
    padding = layer.padding  # type: ignore[attr-defined]
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
        if size < 1:
            raise ShapeError(
                f"output {axis} would be {w.formula(n)} < 1: a window of {w.size}"
                f"{f' (dilation {w.dilation})' if w.dilation > 1 else ''} does not fit the input "
                f"{axis} {n}{' with this padding' if w.pad_begin or w.pad_end else ''}",
                hint="use padding: same, a smaller kernel or stride, or fewer downsampling layers before it",
            )
        out.append(size)
    return (channels, *out), wins


class _Conv(Layer):
    ndim: ClassVar[int]

    filters: PositiveInt
    kernel: Ints2
    stride: Ints2 = (1, 1)
    padding: Padding2 = "valid"
    dilation: Ints2 = (1, 1)
    groups: PositiveInt = 1
    activation: ActivationName = "linear"
    bias: bool = True

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (self.ndim + 1,))
        if x[0] % self.groups or self.filters % self.groups:
            raise ShapeError(
                f"groups={self.groups} must divide both the input channels ({x[0]}) "
                f"and filters ({self.filters})"
            )
        shape, _ = window_output(self, x, self.filters)
        return shape

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        # (filters, in_channels / groups, *kernel), as torch and ONNX Conv
        w = {"weight": Weight((self.filters, inputs[0][0] // self.groups, *self.kernel))}
        return w | {"bias": Weight((self.filters,))} if self.bias else w

    def macs(self, inputs: list[Shape], out: Shape) -> int:
        return prod(out) * (inputs[0][0] // self.groups) * prod(self.kernel)


class Conv1D(_Conv):
    kind: ClassVar[str] = "conv1d"
    ndim: ClassVar[int] = 1

    kernel: Ints1
    stride: Ints1 = (1,)
    padding: Padding1 = "valid"
    dilation: Ints1 = (1,)


class Conv2D(_Conv):
    kind: ClassVar[str] = "conv2d"
    ndim: ClassVar[int] = 2
