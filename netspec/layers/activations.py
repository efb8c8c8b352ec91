"""The activation family (`activation {fn}`, `relu`, `softmax`, ...) and `Act`, what each computes."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from netspec.layers.base import ACTIVATIONS, ActivationName, Axis, Layer, ShapeError, member
from netspec.layers.dense import Dense
from netspec.shapes import Shape

LEAKY_RELU_SLOPE = 0.01  # the `leaky_relu` layer's default, also used for `activation: leaky_relu`


@dataclass(frozen=True)
class Act:
    """What an activation computes, resolved: every backend lowers this, never a layer class.

    `fn` is one of ACTIVATIONS; `axis` is the per-sample axis of a softmax (the backends add
    the batch axis), `slope` that of leaky_relu, `approximate` that of gelu, `alpha` that of elu.
    """

    fn: str
    axis: int = 0
    slope: float = LEAKY_RELU_SLOPE
    approximate: str = "none"
    alpha: float = 1.0


class ActivationLayer(Layer):
    """The activation family: a parameter-free layer applying one function to its input.

    A member says what it computes with `act`; the default is the function named like the kind
    (`relu`, `sigmoid`, ...). Each backend has one row for the whole family, found through the
    class hierarchy (`netspec.layers.table_entry`), so a new activation layer is a subclass here
    and its name in ACTIVATIONS, and no backend row.
    """

    def act(self, rank: int) -> Act:
        """What the layer computes on a per-sample input of `rank`."""
        return Act(self.kind)


class Activation(ActivationLayer):
    """An activation function named by `fn`."""

    kind: ClassVar[str] = "activation"

    fn: ActivationName = Field(
        description="linear, relu, leaky_relu, sigmoid, tanh, softmax, gelu, silu, relu6, hard_sigmoid, "
        "hard_swish or elu."
    )

    def act(self, rank: int) -> Act:
        return Act(self.fn)  # a softmax over the channel/feature axis 0, as the bare softmax


class LeakyReLU(ActivationLayer):
    """x for x > 0, negative_slope * x below."""

    kind: ClassVar[str] = "leaky_relu"

    negative_slope: Annotated[float, Field(ge=0.0)] = Field(
        LEAKY_RELU_SLOPE, description="Slope for negative inputs."
    )

    def act(self, rank: int) -> Act:
        return Act("leaky_relu", slope=self.negative_slope)


class ELU(ActivationLayer):
    """x for x > 0, alpha * (exp(x) - 1) below (Keras' and torch's ELU; `activation: elu` has
    alpha 1)."""

    kind: ClassVar[str] = "elu"

    alpha: Annotated[float, Field(gt=0.0)] = Field(1.0, description="Scale of the negative part.")

    def act(self, rank: int) -> Act:
        return Act("elu", alpha=self.alpha)


class Softmax(ActivationLayer):
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

    def act(self, rank: int) -> Act:
        return Act("softmax", axis=self.axis % rank)


class GELU(ActivationLayer):
    """The Gaussian error linear unit."""

    kind: ClassVar[str] = "gelu"

    approximate: Literal["none", "tanh"] = Field(
        "none", description="none (exact, with erf) or tanh (the tanh approximation)."
    )

    def act(self, rank: int) -> Act:
        return Act("gelu", approximate=self.approximate)


# The members that compute the function named like their kind, with no option.
ReLU = member(ActivationLayer, "ReLU", "relu", "max(x, 0).")
Sigmoid = member(ActivationLayer, "Sigmoid", "sigmoid", "1 / (1 + exp(-x)).")
Tanh = member(ActivationLayer, "Tanh", "tanh", "The hyperbolic tangent.")
SiLU = member(ActivationLayer, "SiLU", "silu", "x * sigmoid(x) (swish).")
ReLU6 = member(ActivationLayer, "ReLU6", "relu6", "min(max(x, 0), 6).")
# Keras 3's and torch's definitions (Keras 2's hard_sigmoid was clip(0.2x + 0.5, 0, 1)).
HardSigmoid = member(ActivationLayer, "HardSigmoid", "hard_sigmoid", "relu6(x + 3) / 6.")
HardSwish = member(ActivationLayer, "HardSwish", "hard_swish", "x * hard_sigmoid(x) (hard_silu).")


def activation_of(layer: Layer, rank: int) -> Act | None:
    """The activation a layer applies to its output of per-sample `rank` (None: none, or linear).

    Covers the activation layers and the fused `activation:` of weighted layers (dense,
    convolutions). A fused softmax runs over dense's units (the last axis) and over a
    convolution's channels (axis 0), like the bare `softmax` layer's default.
    """
    if isinstance(layer, ActivationLayer):
        act = layer.act(rank)
        return None if act.fn == "linear" else act
    fn = getattr(layer, "activation", None)
    if fn is None or fn == "linear":
        return None
    assert fn in ACTIVATIONS, fn
    return Act(fn, axis=rank - 1 if fn == "softmax" and isinstance(layer, Dense) else 0)
