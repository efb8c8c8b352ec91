"""trim1d, trim2d: cut fixed numbers of steps or pixels off the edges (Keras' Cropping1D/2D)."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import Annotated, Any, ClassVar

from pydantic import Field, PlainValidator, WithJsonSchema

from netspec.layers.base import Layer, ShapeError, _fail, _is_int, check_rank
from netspec.shapes import Shape


def _cuts(n: int, form: str):
    """Validator for `c` or a list of n (each edge's count, begin before end per axis)."""

    def validate(v: Any) -> tuple[int, ...]:
        if _is_int(v) and v >= 0:
            return (v,) * n
        if isinstance(v, (list, tuple)) and len(v) == n and all(_is_int(x) and x >= 0 for x in v):
            return tuple(v)
        raise _fail(f"expected an integer >= 0 or {form}")

    item = {"type": "integer", "minimum": 0}
    schema = {"anyOf": [item, {"type": "array", "items": item, "minItems": n, "maxItems": n}]}
    return Annotated[tuple[int, ...], PlainValidator(validate), WithJsonSchema(schema)]


class Trim(Layer):
    """The family: `trim` counts, begin and end of each axis after the channels, cut off."""

    rank: ClassVar[int] = 0
    trim: tuple[int, ...]

    def edges(self) -> list[tuple[int, int]]:
        """(begin, end) cut off each axis after the channels."""
        t = self.trim
        return [(t[2 * i], t[2 * i + 1]) for i in range(len(t) // 2)]

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (self.rank,))
        out = [x[0]]
        for size, (begin, end) in zip(x[1:], self.edges(), strict=True):
            if begin + end >= size:
                raise ShapeError(
                    f"cannot trim {begin} + {end} off an axis of {size}: nothing would be left",
                    hint="trim less, or trim a larger input",
                )
            out.append(size - begin - end)
        return tuple(out)


class Trim1D(Trim):
    """Cut steps off both ends of a [C, L] sequence."""

    kind: ClassVar[str] = "trim1d"
    rank: ClassVar[int] = 2

    trim: _cuts(2, "[left, right]") = Field((1, 1), description="c, or [left, right].")  # type: ignore[valid-type]


class Trim2D(Trim):
    """Cut rows and columns off the edges of a [C, H, W] map."""

    kind: ClassVar[str] = "trim2d"
    rank: ClassVar[int] = 3

    trim: _cuts(4, "[top, bottom, left, right]") = Field(  # type: ignore[valid-type]
        (1, 1, 1, 1), description="c, or [top, bottom, left, right]."
    )
