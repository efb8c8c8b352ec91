"""flatten: [C, H, W] -> [C*H*W], in channels-first (PyTorch/ONNX) order."""

from __future__ import annotations

from typing import ClassVar

from netspec.layers.base import Layer
from netspec.shapes import Shape, prod


class Flatten(Layer):
    """[C, H, W] -> [C*H*W], in channels-first order."""

    kind: ClassVar[str] = "flatten"

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        return (prod(inputs[0]),)
