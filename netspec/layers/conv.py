"""conv1d / conv2d: convolutions over [C, L] and [C, H, W] inputs."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from pydantic import Field, PositiveInt

from netspec.layers.base import Activation, Ints1, Padding1, ShapeError, Weight, check_rank
from netspec.layers.window import DILATION, KERNEL, PADDING, STRIDE, ConvWindow, window_output
from netspec.shapes import Shape, prod


class Conv(ConvWindow):
    """The convolution family (conv1d, conv2d): one row in each backend."""

    ndim: ClassVar[int]

    groups: PositiveInt = Field(
        1,
        description="Split input and output channels into this many groups; both must divide by it.",
    )
    activation: Activation = "linear"
    bias: bool = Field(True, description="Add a learned bias.")

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


class Conv1D(Conv):
    """A convolution over [channels, length]."""

    kind: ClassVar[str] = "conv1d"
    ndim: ClassVar[int] = 1

    kernel: Ints1 = Field(description=KERNEL)
    stride: Ints1 = Field((1,), description=STRIDE)
    padding: Padding1 = Field("valid", description=PADDING)
    dilation: Ints1 = Field((1,), description=DILATION)


class Conv2D(Conv):
    """A convolution over [channels, height, width]."""

    kind: ClassVar[str] = "conv2d"
    ndim: ClassVar[int] = 2
