"""position_embedding and seq_pool: a learned vector added per position, and pooling a sequence over time."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from pydantic import Field, PositiveInt

from netspec.layers.base import Layer, ShapeError, Weight, _choice
from netspec.shapes import Shape


def _sequence(layer: Layer, x: Shape) -> None:
    if len(x) != 2:
        raise ShapeError(
            f"{layer.kind} needs a sequence input [time, features], got {tuple(x)}",
            hint="an embedding gives [time, features]; a [channels, length] input needs "
            "`permute: {dims: [1, 0]}` first",
        )


class PositionEmbedding(Layer):
    """Adds a learned vector per position to a [T, D] sequence (T <= max_length; the first T
    rows of the (max_length, D) table are used): max_length x D parameters."""

    kind: ClassVar[str] = "position_embedding"

    max_length: PositiveInt = Field(description="The longest sequence: rows of the table.")

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        x = inputs[0]
        _sequence(self, x)
        # An unknown length is checked when data arrives (training, predict), not here.
        if x[0] is not None and x[0] > self.max_length:
            raise ShapeError(
                f"the sequence has {x[0]} steps, more than max_length {self.max_length}",
                hint=f"raise max_length to at least {x[0]}",
            )
        return x

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        return {"weight": Weight((self.max_length, inputs[0][-1]))}

    def macs(self, inputs: list[Shape], out: Shape) -> int:
        return 0


class SeqPool(Layer):
    """Pools a [T, F] sequence over time to [F]: the mean, the maximum, or the last step.
    Of a masked sequence (netspec.masks), its real steps only: `last` is the last real step."""

    kind: ClassVar[str] = "seq_pool"

    op: _choice(("mean", "max", "last"), "a pooling") = Field(  # type: ignore[valid-type]
        "mean", description="mean, max or last: how the steps of each feature become one value."
    )

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        _sequence(self, inputs[0])
        return (inputs[0][1],)
