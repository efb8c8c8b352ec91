"""dense: a fully connected layer on the last axis (Keras Dense, torch Linear)."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from pydantic import Field, PositiveInt

from netspec.layers.base import Activation, Layer, Weight
from netspec.shapes import Shape, prod


class Dense(Layer):
    """A fully connected layer on the last axis (Keras Dense, torch Linear)."""

    kind: ClassVar[str] = "dense"

    units: PositiveInt = Field(description="Output features: the new size of the last axis.")
    activation: Activation = "linear"
    bias: bool = Field(True, description="Add a learned bias.")

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        return (*inputs[0][:-1], self.units)

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        w = {"weight": Weight((self.units, inputs[0][-1]))}  # (out, in), as torch.nn.Linear
        return w | {"bias": Weight((self.units,))} if self.bias else w

    def macs(self, inputs: list[Shape], out: Shape) -> int:
        return prod(inputs[0]) * self.units
