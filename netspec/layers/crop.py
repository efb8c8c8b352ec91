"""crop2d: center-crop height and width to another layer's spatial size (U-Net's skip crop)."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from pydantic import Field

from netspec.layers.base import Layer, ShapeError, check_rank
from netspec.shapes import Shape


class Crop2D(Layer):
    """`to` names an earlier layer; the extra pixel of an odd difference is cut at the end."""

    kind: ClassVar[str] = "crop2d"
    ref_fields: ClassVar[tuple[str, ...]] = ("to",)

    to: str = Field(description="An earlier layer whose height and width to crop to.")

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (3,))
        target = refs[self.to]
        if len(target) != 3:
            raise ShapeError(f"crop2d target '{self.to}' has shape {tuple(target)}, not [C, H, W]")
        if target[1] > x[1] or target[2] > x[2]:
            raise ShapeError(
                f"cannot crop {tuple(x)} to the {target[1]}x{target[2]} of '{self.to}': "
                "the target is larger than the input",
                hint="crop the larger map to the smaller one (swap the input and `to`)",
            )
        return (x[0], target[1], target[2])

    def offsets(self, x: Shape, target: Shape) -> tuple[int, int]:
        """(top, left) of the crop window."""
        return ((x[1] - target[1]) // 2, (x[2] - target[2]) // 2)
