"""global_avgpool2d / global_maxpool2d (and 1d): reduce every spatial axis, [C, ...] -> [C]."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from netspec.layers.base import Layer, ShapeError, check_rank
from netspec.shapes import Shape


class GlobalPool(Layer):
    """The global pooling family (mean and maximum, 2-D or 1-D): one row in each backend."""

    ndim: ClassVar[int] = 2
    op: ClassVar[Literal["max", "avg"]]  # the maximum or the mean over the axes

    keepdims: bool = Field(
        False, description="Keep the pooled axes with size 1: [C, 1, 1] instead of [C]."
    )

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        (x,) = inputs
        check_rank(self, x, (self.ndim + 1,))
        if x[0] is None:
            raise ShapeError(
                f"{self.kind} keeps axis 0 (channels) and pools the rest, but axis 0 of "
                f"{tuple(x)} is the dynamic time axis",
                hint="pool a [time, features] sequence with seq_pool, or permute it to "
                "[features, time] first",
            )
        return (x[0], *(1,) * self.ndim) if self.keepdims else (x[0],)


class GlobalAvgPool2D(GlobalPool):
    """The mean over height and width: [C, H, W] -> [C]."""

    kind: ClassVar[str] = "global_avgpool2d"
    op: ClassVar[Literal["max", "avg"]] = "avg"


class GlobalMaxPool2D(GlobalPool):
    """The maximum over height and width: [C, H, W] -> [C]."""

    kind: ClassVar[str] = "global_maxpool2d"
    op: ClassVar[Literal["max", "avg"]] = "max"


class GlobalAvgPool1D(GlobalPool):
    """The mean over the length: [C, L] -> [C]."""

    kind: ClassVar[str] = "global_avgpool1d"
    op: ClassVar[Literal["max", "avg"]] = "avg"
    ndim: ClassVar[int] = 1


class GlobalMaxPool1D(GlobalPool):
    """The maximum over the length: [C, L] -> [C]."""

    kind: ClassVar[str] = "global_maxpool1d"
    op: ClassVar[Literal["max", "avg"]] = "max"
    ndim: ClassVar[int] = 1
