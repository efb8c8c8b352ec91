"""permute: reorder the per-sample axes (0-based; the batch axis stays first), e.g. [C, L] <-> [T, F]."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import Annotated, ClassVar

from pydantic import Field

from netspec.layers.base import Layer, ShapeError
from netspec.shapes import Shape


class Permute(Layer):
    """Reorder the per-sample axes: output axis i is input axis `dims[i]` (Keras Permute, 0-based)."""

    kind: ClassVar[str] = "permute"

    dims: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] = Field(
        description="A permutation of the per-sample axes 0..rank-1 (0-based, batch excluded): "
        "[1, 0] turns [channels, length] into [length, channels]."
    )

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        x = inputs[0]
        if sorted(self.dims) != list(range(len(x))):
            raise ShapeError(
                f"dims {list(self.dims)} is not a permutation of the axes 0..{len(x) - 1} "
                f"of the per-sample input {tuple(x)}",
                hint="list every per-sample axis once, 0-based, without the batch axis",
            )
        return tuple(x[d] for d in self.dims)
