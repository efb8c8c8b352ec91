"""embedding: token ids [T] to vectors [T, output_dim], a learned table of input_dim rows (Keras Embedding)."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import ClassVar

from pydantic import Field, PositiveInt

from netspec.layers.base import Layer, Weight
from netspec.shapes import Shape


class Embedding(Layer):
    """A learned vector per token id: any per-sample shape of ids gains a last axis of
    `output_dim` ([T] -> [T, output_dim]). The ids arrive as floats and are truncated to
    integers; `weight` is the (input_dim, output_dim) table, as torch.nn.Embedding and Keras."""

    kind: ClassVar[str] = "embedding"

    input_dim: PositiveInt = Field(description="Vocabulary size: ids are 0..input_dim-1.")
    output_dim: PositiveInt = Field(description="Length of each token's vector.")
    mask_zero: bool = Field(
        False,
        description="Id 0 is padding (trailing): the layers after it skip padded steps "
        "(netspec.masks).",
    )

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        return (*inputs[0], self.output_dim)

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        return {"weight": Weight((self.input_dim, self.output_dim))}

    def macs(self, inputs: list[Shape], out: Shape) -> int:
        return 0  # a lookup; prod(out) copies
