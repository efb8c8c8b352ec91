"""dropout: zero a fraction `rate` of activations while training; identity at inference."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from netspec.layers.base import Layer


class Dropout(Layer):
    """Zero a fraction of the activations while training; identity at inference."""

    kind: ClassVar[str] = "dropout"

    rate: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.5, description="Fraction of activations zeroed while training."
    )
