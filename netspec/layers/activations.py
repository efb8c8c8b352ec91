"""Activation layers: `activation {fn}` and the bare ones (`relu`, `softmax`, ...); none has weights."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from netspec.layers.base import ActivationName, Axis, Layer, ShapeError
from netspec.shapes import Shape


class Activation(Layer):
    kind: ClassVar[str] = "activation"

    fn: ActivationName


class ReLU(Layer):
    kind: ClassVar[str] = "relu"


class LeakyReLU(Layer):
    kind: ClassVar[str] = "leaky_relu"

    negative_slope: Annotated[float, Field(ge=0.0)] = 0.01


class Sigmoid(Layer):
    kind: ClassVar[str] = "sigmoid"


class Tanh(Layer):
    kind: ClassVar[str] = "tanh"


class Softmax(Layer):
    """Softmax over `axis` of the per-sample shape; the default is the channel/feature axis 0."""

    kind: ClassVar[str] = "softmax"

    axis: Axis = 0

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        rank = len(inputs[0])
        if not -rank <= self.axis < rank:
            raise ShapeError(
                f"axis {self.axis} is out of range for a per-sample input of rank {rank}"
            )
        return inputs[0]


class GELU(Layer):
    kind: ClassVar[str] = "gelu"

    approximate: Literal["none", "tanh"] = "none"


class SiLU(Layer):
    kind: ClassVar[str] = "silu"


class ReLU6(Layer):
    kind: ClassVar[str] = "relu6"
