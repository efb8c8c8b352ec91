"""layernorm: normalization over the last axis with a learned scale and shift (Keras default)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from netspec.layers.base import Layer, Params
from netspec.shapes import Shape


class LayerNorm(Layer):
    kind: ClassVar[str] = "layernorm"

    eps: Annotated[float, Field(gt=0.0)] = 1e-5

    def params(self, inputs: list[Shape], out: Shape) -> Params:
        return Params(2 * inputs[0][-1])
