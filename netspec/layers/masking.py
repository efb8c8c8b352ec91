"""masking: marks the steps of a float sequence whose features all equal `value` as padding (Keras Masking)."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from pydantic import Field

from netspec.layers.base import Layer, ShapeError
from netspec.shapes import Shape


class Masking(Layer):
    """A mask source for float sequences [T, F]: a step whose F features all equal `value` is
    padding. The output is the input unchanged; the layers after it skip the padded steps
    (trailing padding: a sequence's length is its last step with any other value, plus one)."""

    kind: ClassVar[str] = "masking"

    value: float = Field(
        0.0, description="The padding value: a step of only this value is padding."
    )

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        if len(inputs[0]) != 2:
            raise ShapeError(
                f"masking needs a sequence input [time, features], got {tuple(inputs[0])}",
                hint="a [channels, length] input needs `permute: {dims: [1, 0]}` first",
            )
        return inputs[0]
