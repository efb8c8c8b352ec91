"""upsample1d, upsample2d: repeat (nearest) or interpolate (bilinear, 2D) steps or pixels by an
integer scale."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from netspec.layers.base import Ints2, Layer, check_rank
from netspec.shapes import Shape


class Upsample2D(Layer):
    """Scale height and width by integers, repeating or interpolating pixels."""

    kind: ClassVar[str] = "upsample2d"

    scale: Ints2 = Field((2, 2), description="Factor: s, or [h, w].")
    mode: Literal["nearest", "bilinear"] = Field(
        "nearest", description="nearest (repeat pixels) or bilinear (interpolate)."
    )

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (3,))
        return (x[0], x[1] * self.scale[0], x[2] * self.scale[1])


class Upsample1D(Layer):
    """Repeat every step of a [C, L] sequence `scale` times (Keras' UpSampling1D)."""

    kind: ClassVar[str] = "upsample1d"

    scale: Annotated[int, Field(ge=1)] = Field(2, description="Factor: each step repeated s times.")

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (2,))
        return (x[0], x[1] * self.scale)
