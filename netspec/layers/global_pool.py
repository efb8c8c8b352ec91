"""Global pooling, mean or maximum, 2-D over H and W or 1-D over L: [C, ...] -> [C]."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar, Literal

from pydantic import Field

from netspec.layers.base import Layer, ShapeError, check_rank, member
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


class _GlobalPool1D(GlobalPool):
    ndim: ClassVar[int] = 1


_2D, _1D = GlobalPool, _GlobalPool1D  # short names keep each member on one line
GlobalAvgPool2D = member(_2D, "GlobalAvgPool2D", "global_avgpool2d", "Mean over H and W.", op="avg")
GlobalMaxPool2D = member(_2D, "GlobalMaxPool2D", "global_maxpool2d", "Max over H and W.", op="max")
GlobalAvgPool1D = member(_1D, "GlobalAvgPool1D", "global_avgpool1d", "Mean over L.", op="avg")
GlobalMaxPool1D = member(_1D, "GlobalMaxPool1D", "global_maxpool1d", "Max over L.", op="max")
