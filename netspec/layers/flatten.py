"""flatten: [C, H, W] -> [C*H*W], in channels-first (PyTorch/ONNX) order."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from netspec.layers.base import Layer, ShapeError
from netspec.shapes import Shape, dynamic, prod


class Flatten(Layer):
    """[C, H, W] -> [C*H*W], in channels-first order."""

    kind: ClassVar[str] = "flatten"

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        if dynamic(inputs[0]):
            raise ShapeError(
                "cannot flatten: the size depends on the dynamic time axis (None)",
                hint=DYNAMIC_HINT,
            )
        return (prod(inputs[0]),)


# Shared by the layers that need every size (flatten, reshape).
DYNAMIC_HINT = (
    "pool the time axis away first: seq_pool on [time, features], or a global pool "
    "(global_avgpool1d) on [channels, length]; or give the input a fixed length"
)
