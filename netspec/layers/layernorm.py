"""layernorm: normalization over the last axis with a learned scale and shift (Keras default)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from netspec.layers.base import Layer, Weight
from netspec.shapes import Shape


class LayerNorm(Layer):
    """Normalization over the last axis with a learned scale and shift."""

    kind: ClassVar[str] = "layernorm"

    eps: Annotated[float, Field(gt=0.0)] = Field(1e-5, description="Added to the variance.")

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        c = (inputs[0][-1],)
        return {"weight": Weight(c), "bias": Weight(c)}
