"""embedding: token ids [T] to vectors [T, output_dim], a learned table of input_dim rows (Keras Embedding)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, PositiveInt

from netspec.layers.base import Layer, Weight, _fail
from netspec.shapes import Shape


def _no_mask(v: bool) -> bool:
    if v:
        raise _fail(
            "mask_zero: true is not supported yet (padding masks are not implemented)",
            "leave mask_zero out (false): id 0 is then an ordinary token",
        )
    return v


class Embedding(Layer):
    """A learned vector per token id: any per-sample shape of ids gains a last axis of
    `output_dim` ([T] -> [T, output_dim]). The ids arrive as floats and are truncated to
    integers; `weight` is the (input_dim, output_dim) table, as torch.nn.Embedding and Keras."""

    kind: ClassVar[str] = "embedding"

    input_dim: PositiveInt = Field(description="Vocabulary size: ids are 0..input_dim-1.")
    output_dim: PositiveInt = Field(description="Length of each token's vector.")
    mask_zero: Annotated[bool, AfterValidator(_no_mask)] = Field(
        False, description="Id 0 is padding, masked downstream (not supported yet: false only)."
    )

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        return (*inputs[0], self.output_dim)

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        return {"weight": Weight((self.input_dim, self.output_dim))}

    def macs(self, inputs: list[Shape], out: Shape) -> int:
        return 0  # a lookup; prod(out) copies
