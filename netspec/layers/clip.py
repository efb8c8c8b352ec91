"""clip: limit every value to [min, max] (Keras' ReLU(max_value), ONNX's Clip)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from netspec.layers.base import Layer, _fail


class Clip(Layer):
    """min(max(x, min), max), element-wise; no parameters."""

    kind: ClassVar[str] = "clip"

    min: float = Field(description="Lower bound.")
    max: float = Field(description="Upper bound (>= min).")

    @model_validator(mode="after")
    def _ordered(self) -> Clip:
        if self.min > self.max:
            raise _fail(f"min ({self.min:g}) is above max ({self.max:g})")
        return self
