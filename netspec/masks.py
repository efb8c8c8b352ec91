"""Padding masks in the IR: which layer's output carries a mask and from which source, and the located error where a mask would reach a layer that mixes padded steps.

Padding is trailing: a masked sequence [T, ...] holds its real steps first. A mask is therefore
one length per sample (the last real step + 1), computed once at its source (`embedding` with
`mask_zero`, `masking`) and read by the layers that must skip padding (recurrent layers,
attention's keys, `seq_pool`). Lengths map directly to torch's packed sequences and to the
`sequence_lens` input of ONNX's LSTM/GRU/RNN. Pure: no torch, no numpy.
"""

from __future__ import annotations

from netspec.errors import Problem, SpecError
from netspec.ir import Graph, Node, _problem
from netspec.items import INPUT
from netspec.layers import (
    Add,
    Concat,
    Dense,
    Dropout,
    Embedding,
    Layer,
    LayerNorm,
    MultiHeadAttention,
    Multiply,
    PositionEmbedding,
    Recurrent,
    SeqPool,
    table_entry,
)
from netspec.layers.activations import ActivationLayer, activation_of
from netspec.layers.masking import Masking

# Layers whose output at a step depends on the input at that step only: the mask goes through.
PER_STEP: dict[type[Layer], bool] = dict.fromkeys(
    (Dense, LayerNorm, Dropout, PositionEmbedding, Add, Multiply, ActivationLayer), True
)
HINT = (
    "pool the sequence first (seq_pool, or a recurrent layer without return_sequences), "
    "or drop the mask (mask_zero: false, no masking layer)"
)


def source_key(node: Node) -> tuple[object, ...] | None:
    """What a mask source computes its lengths from (None: the node is no source). Two sources
    with one key (two embeddings of the same ids) give the same mask."""
    layer = node.layer
    if isinstance(layer, Embedding) and layer.mask_zero:
        return ("zero", node.inputs[0])
    if isinstance(layer, Masking):
        return ("value", layer.value, node.inputs[0])
    return None


def lengths_input(node: Node) -> int | None:
    """Which input's lengths a mask-aware layer reads: the sequence of a recurrent layer or
    seq_pool, attention's keys (its last input); None for every other layer."""
    if isinstance(node.layer, (Recurrent, SeqPool)):
        return 0
    if isinstance(node.layer, MultiHeadAttention):
        return len(node.inputs) - 1
    return None


def _keeps(node: Node, masked: list[int]) -> bool | str:
    """True: the output carries the (one) mask of the inputs `masked`; False: consumed; a
    string: why the layer cannot take a mask."""
    layer, rank = node.layer, len(node.shape)
    if isinstance(layer, Recurrent):
        return layer.return_sequences
    if isinstance(layer, SeqPool):
        return False
    if isinstance(layer, Concat):
        if layer.axis % rank == rank - 1:
            return True
        return "it joins sequences along the time axis (only the last axis keeps the mask)"
    if isinstance(layer, ActivationLayer):
        act = activation_of(layer, rank)
        if act is not None and act.fn == "softmax" and act.axis % rank == 0:
            return "its softmax runs over the time axis, padded steps included"
    if table_entry(PER_STEP, type(layer)):
        shapes = [node.input_shapes[i] for i in masked]
        if all(len(s) == rank and s[0] == node.shape[0] for s in shapes):
            return True
        return "it changes the rank of the masked sequence"
    return "it mixes the steps of a sequence, padded ones included"


def mask_flow(graph: Graph) -> dict[str, str]:
    """Every node whose output carries a mask, with the source node that mask comes from.

    Call `check_masks` first (the compiler does): here a layer that cannot take a mask just
    drops it. Empty for a network without a mask source, so unmasked networks pay nothing.
    """
    flow, _ = _propagate(graph)
    return flow


def input_masks(node: Node, flow: dict[str, str]) -> tuple[str | None, ...]:
    """The mask source of each of a node's inputs (None: unmasked)."""
    return tuple(flow.get(i) if i != INPUT else None for i in node.inputs)


def _propagate(graph: Graph) -> tuple[dict[str, str], list[Problem]]:
    if not any(source_key(n) for n in graph.nodes):
        return {}, []  # no mask source: nothing to follow
    flow: dict[str, str] = {}
    canonical: dict[tuple[object, ...], str] = {}
    problems: list[Problem] = []
    for node in graph.nodes:
        per_input = input_masks(node, flow)
        masks = {m for m in per_input if m is not None}
        key = source_key(node)
        if key is not None:
            if isinstance(node.layer, Embedding) and len(node.input_shapes[0]) != 1:
                problems.append(
                    _problem(
                        node,
                        f"a mask needs token ids [time], got {tuple(node.input_shapes[0])}",
                        "give the embedding a [time] input, or leave mask_zero out",
                    )
                )
                continue
            flow[node.name] = canonical.setdefault(key, node.name)
            continue
        if not masks:
            continue
        if isinstance(node.layer, MultiHeadAttention):  # the query's mask; the keys' is read
            if per_input[0] is not None:
                flow[node.name] = per_input[0]
            continue
        if len(masks) > 1:
            names = ", ".join(f"'{m}'" for m in sorted(masks))
            problems.append(
                _problem(
                    node,
                    f"its inputs carry different padding masks (from {names})",
                    "mask the sequences from one source, or pool each one first (seq_pool)",
                )
            )
            continue
        keeps = _keeps(node, [i for i, m in enumerate(per_input) if m is not None])
        if isinstance(keeps, str):
            (source,) = masks
            problems.append(
                _problem(node, f"a padding mask (from '{source}') reaches it, but {keeps}", HINT)
            )
        elif keeps:
            flow[node.name] = masks.pop()
    return flow, problems


def check_masks(graph: Graph) -> Graph:
    """Mask stage: every mask reaches only layers that keep padded steps apart (after shapes)."""
    _, problems = _propagate(graph)
    if problems:
        raise SpecError(problems, stage="shapes").located(graph.file)
    return graph
