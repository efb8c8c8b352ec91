"""multi_head_attention: self- and cross-attention with Keras' MultiHeadAttention parameters."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import Annotated, ClassVar

from pydantic import Field, PositiveInt

from netspec.layers.base import Layer, ShapeError, Weight
from netspec.shapes import Shape


class MultiHeadAttention(Layer):
    """Scaled dot-product attention over `num_heads` heads (Keras MultiHeadAttention).

    One input: self-attention; `inputs: [query, value]`: cross-attention (the value is also
    the key). The output is [T, query features]. Kernels are stored (in, out) with the heads
    flattened head-major, so Keras' (D, H, key_dim) kernel is `query_kernel` reshaped:
    `query_kernel` (Dq, H*key_dim), `key_kernel` (Dv, H*key_dim), `value_kernel`
    (Dv, H*value_dim), `output_kernel` (H*value_dim, Dq), each with its bias.
    `causal` lets step t attend to steps <= t only (aligned at the top left when the lengths
    differ, as Keras and torch do).
    """

    kind: ClassVar[str] = "multi_head_attention"
    arity: ClassVar[tuple[int, int | None]] = (1, 2)

    num_heads: PositiveInt = Field(description="Number of attention heads.")
    key_dim: PositiveInt = Field(description="Size of each head's query and key.")
    value_dim: PositiveInt | None = Field(
        None, description="Size of each head's value (default: key_dim)."
    )
    causal: bool = Field(False, description="Mask future steps (a decoder's self-attention).")
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.0, description="Dropout on the attention weights while training."
    )

    @property
    def head_value(self) -> int:
        return self.value_dim or self.key_dim

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        for x in inputs:
            if len(x) != 2:
                raise ShapeError(
                    f"{self.kind} needs sequence inputs [time, features], got {tuple(x)}",
                    hint="an embedding or a recurrent layer with return_sequences gives one",
                )
        return inputs[0]

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        dq, dv = inputs[0][-1], inputs[-1][-1]
        hk, hv = self.num_heads * self.key_dim, self.num_heads * self.head_value
        return {
            "query_kernel": Weight((dq, hk)),
            "query_bias": Weight((hk,)),
            "key_kernel": Weight((dv, hk)),
            "key_bias": Weight((hk,)),
            "value_kernel": Weight((dv, hv)),
            "value_bias": Weight((hv,)),
            "output_kernel": Weight((hv, dq)),
            "output_bias": Weight((dq,)),
        }

    def macs(self, inputs: list[Shape], out: Shape) -> int:
        (t, dq), (s, dv) = inputs[0], inputs[-1]
        hk, hv = self.num_heads * self.key_dim, self.num_heads * self.head_value
        projections = t * dq * hk + s * dv * (hk + hv) + t * hv * dq
        return projections + t * s * (hk + hv)  # scores, and the weighted sum of values
