"""concat and add: the layers that join branches of a graph."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from pydantic import Field

from netspec.layers.base import Axis, Layer, ShapeError
from netspec.shapes import Shape


class Concat(Layer):
    """Concatenate along `axis` of the per-sample shape (default: channels, axis 0)."""

    kind: ClassVar[str] = "concat"
    arity: ClassVar[tuple[int, int | None]] = (2, None)

    axis: Axis = Field(0, description="Per-sample axis: channels (0, the default) or an integer.")

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        first = inputs[0]
        rank = len(first)
        if not -rank <= self.axis < rank:
            raise ShapeError(f"axis {self.axis} is out of range for inputs of rank {rank}")
        axis = self.axis % rank
        for k, other in enumerate(inputs[1:], 1):
            same = len(other) == rank and all(
                a == b for i, (a, b) in enumerate(zip(first, other)) if i != axis
            )
            if not same:
                raise ShapeError(
                    f"inputs {{a}} and {{b}} differ outside the concat axis {axis}",
                    hint="crop2d or zeropad2d one input, or use padding: same in the convolutions",
                    mismatch=(0, k),
                )
        sizes = [s[axis] for s in inputs]
        joined = None if None in sizes else sum(sizes)  # type: ignore[arg-type]
        return (*first[:axis], joined, *first[axis + 1 :])


class Add(Layer):
    """Element-wise sum of inputs of identical shape (residual connections)."""

    kind: ClassVar[str] = "add"
    arity: ClassVar[tuple[int, int | None]] = (2, None)

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        for k, other in enumerate(inputs[1:], 1):
            if tuple(other) != tuple(inputs[0]):
                raise ShapeError(
                    "inputs {a} and {b} must have equal shapes to be added",
                    hint="match them with a 1x1 conv2d projection (and stride) on the shortcut",
                    mismatch=(0, k),
                )
        return inputs[0]
