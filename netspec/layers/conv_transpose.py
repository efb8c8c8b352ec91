"""conv_transpose2d: the learned upsampling ("up-convolution") of U-Net and decoders."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from pydantic import Field, PositiveInt

from netspec.layers.base import (
    Activation,
    Ints2,
    Layer,
    Padding2,
    ShapeError,
    Weight,
    _ints,
    check_rank,
)
from netspec.layers.window import DILATION, KERNEL, STRIDE
from netspec.shapes import Shape, conv_transpose_out, prod

# 0 (the default) is valid: only the extra rows/columns added at the end, each < the stride.
OutputPadding = _ints(2, 0, "an output padding")


class ConvTranspose2D(Layer):
    """Output sizes follow Keras: `same` gives n*s; `valid` gives n*s + max(k - s, 0).

    An integer padding, or an explicit `output_padding`, uses the PyTorch/ONNX formula
    (n-1)s - 2p + d(k-1) + output_padding + 1.
    """

    kind: ClassVar[str] = "conv_transpose2d"

    filters: PositiveInt = Field(description="Output channels.")
    kernel: Ints2 = Field(description=KERNEL)
    stride: Ints2 = Field((1, 1), description=STRIDE)
    padding: Padding2 = Field(
        "valid", description="valid (n*s + max(k - s, 0)), same (n*s), p, or [h, w]."
    )
    output_padding: OutputPadding | None = Field(
        None,
        description="Rows and columns added at the end, each below the stride; selects the "
        "PyTorch size formula.",
    )
    dilation: Ints2 = Field((1, 1), description=DILATION)
    activation: Activation = "linear"
    bias: bool = Field(True, description="Add a learned bias.")

    def pads(self) -> tuple[tuple[int, int], ...]:
        """(begin, end) cropping of the full transposed output (n-1)s + d(k-1) + 1, per axis.

        A negative `end` means the output grows instead: rows added at the end, which the
        lowering expresses as output padding (it is always smaller than the stride).
        """
        if not isinstance(self.padding, str):
            return tuple((p, p) for p in self.padding)  # type: ignore[return-value]
        if self.output_padding is not None:
            return ((0, 0), (0, 0))  # valid with an explicit output padding: the torch formula
        pads = []
        for i in range(2):
            extent = self.dilation[i] * (self.kernel[i] - 1) + 1
            total = extent - self.stride[i]  # full size minus n*s
            if self.padding == "valid":
                pads.append((0, min(total, 0)))  # Keras: n*s + max(k - s, 0)
            else:  # same: exactly n*s, the odd extra row cropped at the end (SAME_UPPER)
                begin = max(total, 0) // 2
                pads.append((begin, total - begin))
        return tuple(pads)

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (3,))
        op = self.output_padding or (0, 0)
        if self.output_padding is not None and self.padding == "same":
            raise ShapeError(
                "output_padding cannot be combined with padding: same, which already makes "
                "the output input*stride",
                hint="drop output_padding, or use padding: valid or an integer",
            )
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

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        # (in_channels, filters, *kernel), as torch ConvTranspose2d and ONNX ConvTranspose
        w = {"weight": Weight((inputs[0][0], self.filters, *self.kernel))}
        return w | {"bias": Weight((self.filters,))} if self.bias else w

    def macs(self, inputs: list[Shape], out: Shape) -> int:
        # Every input element is scattered through the whole kernel into every output channel.
        return prod(inputs[0]) * self.filters * prod(self.kernel)
