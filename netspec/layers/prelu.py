"""prelu: a leaky ReLU whose negative slope is learned, one per channel or one for all (Keras'
PReLU with its spatial axes shared, torch's nn.PReLU, ONNX's PRelu)."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from pydantic import Field

from netspec.layers.base import Layer, Weight, check_rank
from netspec.shapes import Shape


class PReLU(Layer):
    """max(x, 0) + slope * min(x, 0); `weight` holds the slopes of the channels (the first axis:
    the features of [F], the channels of [C, L] and [C, H, W])."""

    kind: ClassVar[str] = "prelu"

    shared: bool = Field(
        False, description="One slope for every value (true) instead of one per channel."
    )

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        check_rank(self, inputs[0], (1, 2, 3))
        return inputs[0]

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        return {"weight": Weight((1,) if self.shared else (inputs[0][0],))}
