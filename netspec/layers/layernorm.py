"""layernorm: normalization over the last axis with a learned scale and shift (Keras default)."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

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
