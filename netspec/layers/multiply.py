"""multiply: the element-wise product of its inputs, broadcast by numpy's rules (gating, squeeze-excite)."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from netspec.layers.base import Layer, ShapeError
from netspec.shapes import Shape


def broadcast(a: Shape, b: Shape) -> Shape | None:
    """numpy's broadcast of two per-sample shapes (aligned from the last axis), or None."""
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:  # different sizes, or a dynamic axis against a fixed size above 1
            return None
    return tuple(out)


class Multiply(Layer):
    """Element-wise product of two or more inputs with numpy broadcasting of the per-sample
    shapes: a shorter shape is aligned to the last axes (its missing leading axes are 1), so a
    [C, 1, 1] gate scales each channel of a [C, H, W] feature map."""

    kind: ClassVar[str] = "multiply"
    arity: ClassVar[tuple[int, int | None]] = (2, None)

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        out: Shape = inputs[0]
        for k, other in enumerate(inputs[1:], 1):
            joined = broadcast(out, other)
            if joined is None:
                raise ShapeError(
                    "inputs {a} and {b} do not broadcast (numpy's rules: from the last axis, "
                    "sizes must be equal or 1)",
                    hint="reshape the smaller input, e.g. a channel gate to [C, 1, 1]",
                    mismatch=(0, k),
                )
            out = joined
        return out
