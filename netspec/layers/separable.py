"""separable_conv2d: Keras' SeparableConv2D, a depthwise convolution then a 1x1 pointwise one."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from pydantic import Field, PositiveInt

from netspec.layers.base import Activation, Weight, check_rank
from netspec.layers.window import ConvWindow, window_output
from netspec.shapes import Shape, prod


class SeparableConv2D(ConvWindow):
    """A depthwise conv2d (one group per input channel, `depth_multiplier` filters each, no bias)
    and a 1x1 conv2d to `filters` with the bias and activation: one layer, as Keras counts it
    (k*k*C*dm + C*dm*filters + filters)."""

    kind: ClassVar[str] = "separable_conv2d"

    filters: PositiveInt = Field(description="Output channels (of the pointwise convolution).")
    depth_multiplier: PositiveInt = Field(
        1, description="Depthwise filters per input channel (the pointwise input is C * this)."
    )
    activation: Activation = "linear"
    bias: bool = Field(True, description="Add a learned bias after the pointwise convolution.")

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (3,))
        shape, _ = window_output(self, x, self.filters)
        return shape

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        # torch/ONNX Conv layouts: depthwise (C*dm, 1, kh, kw), grouped by input channel;
        # pointwise (filters, C*dm, 1, 1).
        mid = inputs[0][0] * self.depth_multiplier
        w = {
            "depthwise_weight": Weight((mid, 1, *self.kernel)),
            "pointwise_weight": Weight((self.filters, mid, 1, 1)),
        }
        return w | {"bias": Weight((self.filters,))} if self.bias else w

    def macs(self, inputs: list[Shape], out: Shape) -> int:
        mid = inputs[0][0] * self.depth_multiplier
        spatial = prod(out[1:])
        return spatial * mid * (prod(self.kernel) + self.filters)
