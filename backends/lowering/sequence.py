"""Sequence layers (permute, multiply, embedding, position_embedding, seq_pool): torch modules and lowerings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from netspec.ir import Node
from netspec.layers import Embedding, Permute, SeqPool


class PermuteBatch(nn.Module):
    """Permute the per-sample axes; the batch axis stays first."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = (0, *(d + 1 for d in dims))

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


def lower_permute(node: Node) -> nn.Module:
    layer: Permute = node.layer  # type: ignore[assignment]
    return PermuteBatch(layer.dims)


class Product(nn.Module):
    """Element-wise product with numpy broadcasting of the per-sample shapes: an input of lower
    rank gets its missing axes after the batch axis, not before it."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def _full(self, x: Tensor) -> Tensor:
        missing = self.rank + 1 - x.dim()
        return x.reshape(x.shape[0], *(1,) * missing, *x.shape[1:]) if missing else x

    def forward(self, *xs: Tensor) -> Tensor:
        y = self._full(xs[0]) * self._full(xs[1])
        for x in xs[2:]:
            y = y * self._full(x)
        return y


def lower_multiply(node: Node) -> nn.Module:
    return Product(len(node.shape))


class TokenEmbedding(nn.Embedding):
    """nn.Embedding fed the pipeline's float tensor of token ids (cast to integers here)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.embedding(x.long(), self.weight)


def lower_embedding(node: Node) -> nn.Module:
    layer: Embedding = node.layer  # type: ignore[assignment]
    m = TokenEmbedding(layer.input_dim, layer.output_dim)
    nn.init.uniform_(m.weight, -0.05, 0.05)  # Keras' Embedding initializer
    return m


class PositionAdd(nn.Module):
    """Adds the first T rows of a learned (max_length, D) table to a [B, T, D] sequence."""

    def __init__(self, max_length: int, features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_length, features))
        nn.init.xavier_uniform_(self.weight)  # Keras (keras_hub) PositionEmbedding: glorot

    def forward(self, x: Tensor) -> Tensor:
        return x + self.weight[: x.shape[1]]


def lower_position_embedding(node: Node) -> nn.Module:
    return PositionAdd(node.layer.max_length, node.input_shapes[0][-1])  # type: ignore[attr-defined]


class TimePool(nn.Module):
    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: Tensor) -> Tensor:
        if self.op == "mean":
            return x.mean(1)
        if self.op == "max":
            return x.amax(1)
        return x[:, -1]

    def extra_repr(self) -> str:
        return self.op


def lower_seq_pool(node: Node) -> nn.Module:
    layer: SeqPool = node.layer  # type: ignore[assignment]
    return TimePool(layer.op)
