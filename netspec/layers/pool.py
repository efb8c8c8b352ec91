"""maxpool1d/2d and avgpool1d/2d: windowed pooling; the stride defaults to the window size."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar, Literal

from pydantic import Field

from netspec.layers.base import (
    Ints1,
    Ints2,
    Layer,
    Padding1,
    Padding2,
    ShapeError,
    check_rank,
    member,
)
from netspec.layers.window import PADDING, window_output
from netspec.shapes import Shape


class Pool(Layer):
    """The pooling family (max and average, 2-D here, 1-D below): one row in each backend."""

    ndim: ClassVar[int] = 2
    op: ClassVar[Literal["max", "avg"]]  # the maximum or the mean of each window

    size: Ints2 = Field((2, 2), description="Window size: k, or [h, w].")
    stride: Ints2 | None = Field(
        None, description="Step between windows (default: the window size)."
    )
    padding: Padding2 = Field("valid", description=PADDING)

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (self.ndim + 1,))
        shape, wins = window_output(self, x, x[0])
        for n, w in zip(x[1:], wins):
            if n is None and self.op == "avg" and not (w.symmetric and w.pad_begin <= w.size // 2):
                # Each output's divisor (its real cells) would be a table of the length.
                raise ShapeError(
                    f"average pooling with uneven padding ({w.pad_begin} before, {w.pad_end} "
                    "after) needs a known length, and the time axis is dynamic (null)",
                    hint="use padding: valid, an odd window with padding: same, or maxpool1d",
                )
        return shape


class _Pool1D(Pool):
    ndim: ClassVar[int] = 1

    size: Ints1 = Field((2,), description="Window size.")
    stride: Ints1 | None = Field(
        None, description="Step between windows (default: the window size)."
    )
    padding: Padding1 = Field("valid", description=PADDING)


# The members differ only in these constants; padded cells never count in an average (as in
# Keras and ONNX).
MaxPool2D = member(Pool, "MaxPool2D", "maxpool2d", "Max pooling over height and width.", op="max")
AvgPool2D = member(Pool, "AvgPool2D", "avgpool2d", "Average pooling.", op="avg")
MaxPool1D = member(_Pool1D, "MaxPool1D", "maxpool1d", "Max pooling over the length.", op="max")
AvgPool1D = member(_Pool1D, "AvgPool1D", "avgpool1d", "Average pooling over the length.", op="avg")
