"""clip: limit every value to [min, max] (Keras' ReLU(max_value), ONNX's Clip)."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from pydantic import Field, model_validator

from netspec.layers.base import Layer, _fail


class Clip(Layer):
    """min(max(x, min), max), element-wise; no parameters."""

    kind: ClassVar[str] = "clip"

    min: float = Field(description="Lower bound.")
    max: float = Field(description="Upper bound (>= min).")

    @model_validator(mode="after")
    def _ordered(self) -> "Clip":
        if self.min > self.max:
            raise _fail(f"min ({self.min:g}) is above max ({self.max:g})")
        return self
