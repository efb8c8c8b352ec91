"""dropout: zero a fraction `rate` of activations while training; identity at inference."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import Annotated, ClassVar

from pydantic import Field

from netspec.layers.base import Layer


class Dropout(Layer):
    """Zero a fraction of the activations while training; identity at inference."""

    kind: ClassVar[str] = "dropout"

    rate: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.5, description="Fraction of activations zeroed while training."
    )
