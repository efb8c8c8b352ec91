"""Activation layers (`activation {fn}`, `relu`, `softmax`, ...) and the one table of what each computes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from netspec.layers.base import ACTIVATIONS, ActivationName, Axis, Layer, ShapeError
from netspec.shapes import Shape

LEAKY_RELU_SLOPE = 0.01  # the `leaky_relu` layer's default, also used for `activation: leaky_relu`


class Activation(Layer):
    """An activation function named by `fn`."""

    kind: ClassVar[str] = "activation"

    fn: ActivationName = Field(
        description="linear, relu, leaky_relu, sigmoid, tanh, softmax, gelu, silu or relu6."
    )


class ReLU(Layer):
    """max(x, 0)."""

    kind: ClassVar[str] = "relu"


class LeakyReLU(Layer):
    """x for x > 0, negative_slope * x below."""

    kind: ClassVar[str] = "leaky_relu"

    negative_slope: Annotated[float, Field(ge=0.0)] = Field(
        LEAKY_RELU_SLOPE, description="Slope for negative inputs."
    )


class Sigmoid(Layer):
    """1 / (1 + exp(-x))."""

    kind: ClassVar[str] = "sigmoid"


class Tanh(Layer):
    """The hyperbolic tangent."""

    kind: ClassVar[str] = "tanh"


class Softmax(Layer):
    """Softmax over `axis` of the per-sample shape; the default is the channel/feature axis 0."""

    kind: ClassVar[str] = "softmax"

    axis: Axis = Field(0, description="Per-sample axis: channels (0, the default) or an integer.")

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        rank = len(inputs[0])
        if not -rank <= self.axis < rank:
            raise ShapeError(
                f"axis {self.axis} is out of range for a per-sample input of rank {rank}"
            )
        return inputs[0]


class GELU(Layer):
    """The Gaussian error linear unit."""

    kind: ClassVar[str] = "gelu"

    approximate: Literal["none", "tanh"] = Field(
        "none", description="none (exact, with erf) or tanh (the tanh approximation)."
    )


class SiLU(Layer):
    """x * sigmoid(x) (swish)."""

    kind: ClassVar[str] = "silu"


class ReLU6(Layer):
    """min(max(x, 0), 6)."""

    kind: ClassVar[str] = "relu6"


@dataclass(frozen=True)
class Act:
    """What an activation computes, resolved: every backend lowers this, never a layer class.

    `fn` is one of ACTIVATIONS; `axis` is the per-sample axis of a softmax (the backends add
    the batch axis), `slope` that of leaky_relu, `approximate` that of gelu.
    """

    fn: str
    axis: int = 0
    slope: float = LEAKY_RELU_SLOPE
    approximate: str = "none"


# Bare activation layers without arguments: the layer kind is the function's name.
_PLAIN = {"relu", "sigmoid", "tanh", "silu", "relu6"}


def activation_of(layer: Layer, rank: int) -> Act | None:
    """The activation a layer applies to its output of per-sample `rank` (None: none, or linear).

    Covers the activation layers and the fused `activation:` of weighted layers (dense,
    convolutions). A fused softmax runs over dense's units (the last axis) and over a
    convolution's channels (axis 0), like the bare `softmax` layer's default.
    """
    if isinstance(layer, Softmax):
        return Act("softmax", axis=layer.axis % rank)
    if isinstance(layer, LeakyReLU):
        return Act("leaky_relu", slope=layer.negative_slope)
    if isinstance(layer, GELU):
        return Act("gelu", approximate=layer.approximate)
    if layer.kind in _PLAIN:
        return Act(layer.kind)
    fn = layer.fn if isinstance(layer, Activation) else getattr(layer, "activation", None)
    if fn is None or fn == "linear":
        return None
    assert fn in ACTIVATIONS, fn
    fused_dense = not isinstance(layer, Activation) and layer.kind == "dense"
    return Act(fn, axis=rank - 1 if fused_dense and fn == "softmax" else 0)
