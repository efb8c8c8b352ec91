"""zeropad1d, zeropad2d: pad length, or height and width, with zeros (`p`, `[left, right]`;
`p`, `[h, w]` or `[top, bottom, left, right]`)."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import Annotated, Any, ClassVar

from pydantic import Field, PlainValidator, WithJsonSchema

from netspec.layers.base import Layer, _fail, _is_int, check_rank
from netspec.shapes import Shape


def _pads(v: Any) -> tuple[int, int, int, int]:
    if _is_int(v) and v >= 0:
        return (v, v, v, v)
    if isinstance(v, (list, tuple)) and all(_is_int(x) and x >= 0 for x in v):
        if len(v) == 2:
            return (v[0], v[0], v[1], v[1])
        if len(v) == 4:
            return tuple(v)  # type: ignore[return-value]
    raise _fail("expected an integer >= 0, [h, w] or [top, bottom, left, right]")


Pads = Annotated[
    tuple[int, int, int, int],
    PlainValidator(_pads),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "array", "items": {"type": "integer"}},
            ]
        }
    ),
]


class ZeroPad2D(Layer):
    """Pad height and width with zeros."""

    kind: ClassVar[str] = "zeropad2d"

    padding: Pads = Field((1, 1, 1, 1), description="p, [h, w] or [top, bottom, left, right].")

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (3,))
        top, bottom, left, right = self.padding
        return (x[0], x[1] + top + bottom, x[2] + left + right)


def _pads1(v: Any) -> tuple[int, int]:
    if _is_int(v) and v >= 0:
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(x) and x >= 0 for x in v):
        return tuple(v)  # type: ignore[return-value]
    raise _fail("expected an integer >= 0 or [left, right]")


Pads1 = Annotated[
    tuple[int, int],
    PlainValidator(_pads1),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0},
                    "minItems": 2,
                    "maxItems": 2,
                },
            ]
        }
    ),
]


class ZeroPad1D(Layer):
    """Pad the length of a [C, L] sequence with zeros (Keras' ZeroPadding1D)."""

    kind: ClassVar[str] = "zeropad1d"

    padding: Pads1 = Field((1, 1), description="p, or [left, right].")

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (2,))
        left, right = self.padding
        return (x[0], x[1] + left + right)
