"""multi_head_attention: the torch module holding Keras' MultiHeadAttention tensors (kernels stored (in, out))."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from netspec.ir import Node
from netspec.layers import MultiHeadAttention


class Attention(nn.Module):
    """Self-attention (one input) or cross-attention (query, value); torch's fused
    scaled_dot_product_attention, scaled by 1/sqrt(key_dim)."""

    def __init__(self, layer: MultiHeadAttention, query: tuple[int, ...], value: tuple[int, ...]):
        super().__init__()
        self.heads, self.key_dim, self.value_dim = layer.num_heads, layer.key_dim, layer.head_value
        self.dropout = layer.dropout
        for name, w in layer.weights([query, value], query).items():
            self.register_parameter(name, nn.Parameter(torch.zeros(w.shape)))
        for name in ("query", "key", "value", "output"):
            nn.init.xavier_uniform_(getattr(self, f"{name}_kernel"))  # Keras: glorot, zero bias
        self.causal = layer.causal
        known = query[0] is not None and value[0] is not None
        mask = (
            torch.ones(query[0], value[0], dtype=torch.bool).tril()
            if layer.causal and known
            else None
        )
        self.mask = mask  # a constant of the shapes, not state: moved in _apply

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        if self.mask is not None:
            self.mask = fn(self.mask)
        return super()._apply(fn, recurse)

    def _heads(self, x: Tensor, size: int) -> Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.heads, size).transpose(1, 2)

    def forward(
        self, query: Tensor, value: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """`lengths`: the keys' padding mask (netspec.masks): keys past them get no weight."""
        value = query if value is None else value
        # F.linear on the transposed (in, out) kernels: one addmm with the bias fused, where
        # `x @ kernel + bias` is a matmul and an add (11% of a transformer step, bench_seq.py).
        q = self._heads(F.linear(query, self.query_kernel.t(), self.query_bias), self.key_dim)
        k = self._heads(F.linear(value, self.key_kernel.t(), self.key_bias), self.key_dim)
        v = self._heads(F.linear(value, self.value_kernel.t(), self.value_bias), self.value_dim)
        mask = None if self.mask is None else self.mask.to(q.device)
        if self.causal and mask is None:  # a dynamic time axis: the mask of this call's lengths
            mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
        if lengths is not None:  # [B, 1, 1, S]: real keys; with the causal [T, S] when set
            real = torch.arange(value.shape[1], device=q.device) < lengths[:, None]
            real = real[:, None, None, :]
            mask = real if mask is None else real & mask
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        o = o.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1)
        return F.linear(o, self.output_kernel.t(), self.output_bias)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, key_dim={self.key_dim}, value_dim={self.value_dim}"


def lower_attention(node: Node) -> nn.Module:
    layer: MultiHeadAttention = node.layer  # type: ignore[assignment]
    return Attention(layer, node.input_shapes[0], node.input_shapes[-1])
