"""Sequence layers (permute, multiply, embedding, masking, position_embedding, seq_pool): torch modules and lowerings; padding masks as lengths and the NetModule program that passes them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from netspec.ir import Graph, Node
from netspec.items import INPUT
from netspec.layers import Embedding, Permute, SeqPool
from netspec.layers.masking import Masking
from netspec.masks import input_masks, lengths_input, mask_flow


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
    """Pools [B, T, F] over time; given `lengths`, over each sample's first `lengths` steps."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is not None:
            return self._masked(x, lengths)
        if self.op == "mean":
            return x.mean(1)
        if self.op == "max":
            return x.amax(1)
        return x[:, -1]

    def _masked(self, x: Tensor, lengths: Tensor) -> Tensor:
        if self.op == "last":
            return x[torch.arange(x.shape[0], device=x.device), lengths - 1]
        real = (torch.arange(x.shape[1], device=x.device) < lengths[:, None])[..., None]
        if self.op == "mean":
            return (x * real).sum(1) / lengths[:, None].to(x.dtype)
        return x.masked_fill(~real, float("-inf")).amax(1)

    def extra_repr(self) -> str:
        return self.op


def lower_seq_pool(node: Node) -> nn.Module:
    layer: SeqPool = node.layer  # type: ignore[assignment]
    return TimePool(layer.op)


# --- padding masks: lengths at the sources, passed to the layers that read them ------------------


def _lengths(real: Tensor) -> Tensor:
    """[B, T] real steps -> [B] int64 lengths: the last real step + 1 (trailing padding), at
    least 1 (a sequence of padding only counts one step, as the ONNX export does)."""
    steps = torch.arange(1, real.shape[1] + 1, device=real.device)
    return (real * steps).amax(1).clamp(min=1)


def zero_lengths(ids: Tensor) -> Tensor:
    """Lengths of token ids [B, T] padded with id 0 (embedding `mask_zero`)."""
    return _lengths(ids.long() != 0)


def value_lengths(x: Tensor, value: float) -> Tensor:
    """Lengths of a [B, T, F] sequence padded with steps of only `value` (masking)."""
    return _lengths((x != value).any(-1))


def lower_masking(node: Node) -> nn.Module:
    return nn.Identity()  # the mask is the NetModule's lengths, computed from this layer's input


def source_lengths(node: Node) -> Callable[[Tensor], Tensor]:
    layer = node.layer
    if isinstance(layer, Masking):
        return partial(value_lengths, value=layer.value)
    assert isinstance(layer, Embedding) and layer.mask_zero
    return zero_lengths


def _with_lengths(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def call(*xs: Tensor) -> Tensor:
        return fn(*xs[:-1], lengths=xs[-1])

    return call


Program = list[tuple[Callable[..., Tensor], tuple[int, ...], int, tuple[int, ...]]]


def masked_programs(
    graph: Graph, module_of: Callable[[str], Any], last: Callable[..., Tensor]
) -> tuple[Program, Program, int] | None:
    """NetModule's run programs (forward, logits) for a masked network, and their slot count;
    None without a mask (the unmasked programs are then unchanged).

    Slots: 0 the input, 1..k the lengths of each mask source, then one per node (the output
    last). A source's lengths are computed just before it runs, from its input.
    """
    flow = mask_flow(graph)
    if not flow:
        return None
    nodes = graph.nodes
    sources = [n.name for n in nodes if n.name in set(flow.values())]
    lslot = {s: 1 + i for i, s in enumerate(sources)}
    slot = {INPUT: 0} | {n.name: 1 + len(sources) + i for i, n in enumerate(nodes)}

    def program(last_fn: Callable[..., Tensor]) -> Program:
        steps: list[tuple[Callable[..., Tensor], tuple[int, ...], int]] = []
        for i, node in enumerate(nodes):
            if node.name in lslot:
                steps.append((source_lengths(node), (slot[node.inputs[0]],), lslot[node.name]))
            fn = last_fn if i == len(nodes) - 1 else module_of(node.name)
            ins = tuple(slot[x] for x in node.inputs)
            which = lengths_input(node)
            mask = None if which is None else input_masks(node, flow)[which]
            if mask is not None:
                fn, ins = _with_lengths(fn), (*ins, lslot[mask])
            steps.append((fn, ins, slot[node.name]))
        last_use = {s: k for k, (_, ins, _) in enumerate(steps) for s in ins}
        out = slot[nodes[-1].name]
        return [
            (fn, ins, o, tuple(s for s in set(ins) if last_use[s] == k and s not in (0, out)))
            for k, (fn, ins, o) in enumerate(steps)
        ]

    return program(module_of(nodes[-1].name)), program(last), len(slot) + len(sources)
