"""maxpool1d/2d and avgpool1d/2d: windowed pooling; the stride defaults to the window size."""

from __future__ import annotations

from typing import ClassVar

from netspec.layers.base import Ints1, Ints2, Layer, Padding1, Padding2, check_rank
from netspec.layers.conv import window_output
from netspec.shapes import Shape


class _Pool2D(Layer):
    ndim: ClassVar[int] = 2

    size: Ints2 = (2, 2)
    stride: Ints2 | None = None
    padding: Padding2 = "valid"

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (self.ndim + 1,))
        shape, _ = window_output(self, x, x[0])
        return shape


class _Pool1D(_Pool2D):
    ndim: ClassVar[int] = 1

    size: Ints1 = (2,)
    stride: Ints1 | None = None
    padding: Padding1 = "valid"


class MaxPool2D(_Pool2D):
    kind: ClassVar[str] = "maxpool2d"


class AvgPool2D(_Pool2D):
    """Average pooling; padded cells are not counted in the average (as in Keras and ONNX)."""

    kind: ClassVar[str] = "avgpool2d"


class MaxPool1D(_Pool1D):
    kind: ClassVar[str] = "maxpool1d"


class AvgPool1D(_Pool1D):
    kind: ClassVar[str] = "avgpool1d"
