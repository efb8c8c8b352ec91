"""upsample2d: repeat (nearest) or interpolate (bilinear) pixels by an integer scale."""

from __future__ import annotations

from typing import ClassVar, Literal

from netspec.layers.base import Ints2, Layer, check_rank
from netspec.shapes import Shape


class Upsample2D(Layer):
    kind: ClassVar[str] = "upsample2d"

    scale: Ints2 = (2, 2)
    mode: Literal["nearest", "bilinear"] = "nearest"

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (3,))
        return (x[0], x[1] * self.scale[0], x[2] * self.scale[1])
