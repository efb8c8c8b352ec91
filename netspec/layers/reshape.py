"""reshape: a new per-sample shape with the same number of elements (one -1 is inferred)."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import Annotated, ClassVar

from pydantic import Field

from netspec.layers.base import Layer, ShapeError
from netspec.layers.flatten import DYNAMIC_HINT
from netspec.shapes import Shape, dynamic, prod


class Reshape(Layer):
    """A new per-sample shape with the same number of values."""

    kind: ClassVar[str] = "reshape"

    shape: Annotated[list[Annotated[int, Field(ge=-1)]], Field(min_length=1)] = Field(
        description="The new per-sample shape; one -1 is inferred."
    )

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        if dynamic(inputs[0]):
            raise ShapeError(
                "cannot reshape: a fixed shape needs the length of the dynamic time axis (None)",
                hint=DYNAMIC_HINT,
            )
        n = prod(inputs[0])
        wanted = list(self.shape)
        if 0 in wanted or wanted.count(-1) > 1:
            raise ShapeError(f"shape {tuple(wanted)} may hold at most one -1 and no 0")
        known = prod(tuple(d for d in wanted if d != -1))
        if -1 in wanted:
            if n % known:
                raise ShapeError(
                    f"cannot reshape {tuple(inputs[0])} ({n} values) to {tuple(wanted)}: "
                    f"{n} is not divisible by {known}"
                )
            wanted[wanted.index(-1)] = n // known
        elif known != n:
            raise ShapeError(
                f"cannot reshape {tuple(inputs[0])} ({n} values) to {tuple(wanted)} ({known} values)",
                hint="use -1 for one dimension to have it inferred",
            )
        return tuple(wanted)
