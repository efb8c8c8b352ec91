"""conv_transpose2d: the learned upsampling ("up-convolution") of U-Net and decoders."""

from __future__ import annotations

from typing import ClassVar

from pydantic import PositiveInt

from netspec.layers.base import (
    ActivationName,
    Ints2,
    Layer,
    Padding2,
    Params,
    ShapeError,
    check_rank,
)
from netspec.shapes import Shape, conv_transpose_out, prod


class ConvTranspose2D(Layer):
    """`padding: same` gives output = input * stride (Keras); `valid` is no padding."""

    kind: ClassVar[str] = "conv_transpose2d"

    filters: PositiveInt
    kernel: Ints2
    stride: Ints2 = (1, 1)
    padding: Padding2 = "valid"
    output_padding: Ints2 | None = None
    dilation: Ints2 = (1, 1)
    activation: ActivationName = "linear"
    bias: bool = True

    def pads(self) -> tuple[tuple[int, int], ...]:
        """(begin, end) cropping of the full transposed output, per axis."""
        if self.padding == "valid":
            return ((0, 0), (0, 0))
        if self.padding == "same":
            # Full output is (n-1)s + d(k-1) + 1; SAME keeps n*s of it, dropping the odd one at the end.
            totals = [
                max(self.dilation[i] * (self.kernel[i] - 1) + 1 - self.stride[i], 0)
                for i in range(2)
            ]
            return tuple((t // 2, t - t // 2) for t in totals)  # type: ignore[return-value]
        return tuple((p, p) for p in self.padding)  # type: ignore[return-value]

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (3,))
        op = self.output_padding or (0, 0)
        for i in range(2):
            if op[i] >= max(self.stride[i], self.dilation[i]):
                raise ShapeError(
                    f"output_padding {op[i]} must be smaller than the stride or dilation "
                    f"({max(self.stride[i], self.dilation[i])})"
                )
        out = []
        for i, (n, (b, e)) in enumerate(zip(x[1:], self.pads())):
            size = (
                conv_transpose_out(n, self.kernel[i], 0, self.stride[i], self.dilation[i], op[i])
                - b
                - e
            )
            if size < 1:
                raise ShapeError(
                    f"output {('height', 'width')[i]} would be ({n}-1)*{self.stride[i]} - {b + e}"
                    f" + {self.dilation[i]}*({self.kernel[i]}-1) + {op[i]} + 1 = {size} < 1",
                    hint="use less padding",
                )
            out.append(size)
        return (self.filters, *out)

    def params(self, inputs: list[Shape], out: Shape) -> Params:
        return Params(
            inputs[0][0] * self.filters * prod(self.kernel) + (self.filters if self.bias else 0)
        )

    def macs(self, inputs: list[Shape], out: Shape) -> int:
        # Every input element is scattered through the whole kernel into every output channel.
        return prod(inputs[0]) * self.filters * prod(self.kernel)
