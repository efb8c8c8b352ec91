"""Batchnorm folding: a pass from the IR and its weights to the weights the ONNX graph stores.

A batchnorm folds into the convolution or dense layer before it when that layer has no
activation and feeds only the batchnorm (W' = W*g, b' = (b - mean)*g + beta with
g = gamma/sqrt(var + eps), per output channel), else into the dense layer or unpadded
convolution after it when it feeds only that one (W' = W*g per input channel,
b' = b + W.(beta - mean*g)); otherwise it stays a BatchNormalization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from netspec.ir import Graph, Node
from netspec.items import INPUT
from netspec.layers import Activation, BatchNorm, Conv1D, Conv2D, ConvTranspose2D, Dense, Dropout
from netspec.layers.window import windows

# The layers a batchnorm folds into, and the axis of their `weight` that holds output channels.
OUT_AXIS: dict[type, int] = {Dense: 0, Conv1D: 0, Conv2D: 0, ConvTranspose2D: 1}


@dataclass
class FoldPlan:
    """The tensors each node's ONNX op reads, by node then tensor name, and what folded where.

    `tensors[node]` holds the node's declared weights (`Node.weights`, in their order), folded
    where a batchnorm was folded in, as float64; a layer without bias gains a `bias` by folding.
    A folded batchnorm has no entry.
    """

    tensors: dict[str, dict[str, np.ndarray]]
    folded: dict[str, str]  # batchnorm name -> the layer it was folded into


def is_identity(node: Node) -> bool:
    """Nodes that compute nothing at inference time."""
    return isinstance(node.layer, Dropout) or (
        isinstance(node.layer, Activation) and node.layer.fn == "linear"
    )


def plan_folding(graph: Graph, weights: dict[str, np.ndarray], fold: bool = True) -> FoldPlan:
    """Decide which batchnorms fold into which layer and compute the folded weights."""
    tensors = {
        node.name: {
            t: np.asarray(weights[f"{node.name}.{t}"], dtype=np.float64) for t in node.weights
        }
        for node in graph.nodes
        if node.weights
    }
    plan = FoldPlan(tensors, {})
    if not fold:
        return plan
    by_name = {n.name: n for n in graph.nodes}
    consumers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    output = graph.output.name

    def uses(name: str) -> tuple[list[Node], bool]:
        """Non-identity readers of a value (through dropouts), and whether it is the output."""
        found, is_output, stack = [], name == output, [name]
        while stack:
            for c in consumers.get(stack.pop(), []):
                if is_identity(c):
                    is_output |= c.name == output
                    stack.append(c.name)
                else:
                    found.append(c)
        return found, is_output

    def source(name: str) -> str:
        while name != INPUT and is_identity(by_name[name]):
            name = by_name[name].inputs[0]
        return name

    for bn in graph.nodes:
        if not isinstance(bn.layer, BatchNorm):
            continue
        stats = tensors[bn.name]
        g = stats["weight"] / np.sqrt(stats["running_var"] + bn.layer.eps)
        shift = stats["bias"] - stats["running_mean"] * g
        src = source(bn.inputs[0])
        producer = by_name.get(src) if src != INPUT else None
        if producer is not None and _folds_back(producer, bn, uses):
            t = tensors[producer.name]
            view = [1] * t["weight"].ndim
            view[OUT_AXIS[type(producer.layer)]] = -1
            t["weight"] = t["weight"] * g.reshape(view)
            t["bias"] = t.get("bias", 0.0) * g + shift
            plan.folded[bn.name] = producer.name
            del tensors[bn.name]
            continue
        readers, is_output = uses(bn.name)
        if len(readers) == 1 and not is_output and _folds_forward(readers[0]):
            reader = readers[0]
            t = tensors[reader.name]
            w = t["weight"]
            groups = getattr(reader.layer, "groups", 1)
            per_group = w.shape[1]
            # The input channel each (output channel, kernel input channel) pair reads.
            channel = (np.arange(w.shape[0]) // (w.shape[0] // groups))[:, None] * per_group
            channel = channel + np.arange(per_group)[None, :]
            view = (*channel.shape, *(1,) * (w.ndim - 2))
            t["weight"] = w * g[channel].reshape(view)
            extra = (w * shift[channel].reshape(view)).reshape(w.shape[0], -1).sum(axis=1)
            t["bias"] = t["bias"] + extra if "bias" in t else extra
            plan.folded[bn.name] = reader.name
            del tensors[bn.name]
    return plan


def _folds_back(producer: Node, bn: Node, uses: Callable[[str], tuple[list[Node], bool]]) -> bool:
    layer = producer.layer
    if type(layer) not in OUT_AXIS or layer.activation != "linear":  # type: ignore[attr-defined]
        return False
    if isinstance(layer, Dense) and len(producer.shape) != 1:
        return False  # batchnorm normalizes axis 0, dense's units are the last axis
    readers, is_output = uses(producer.name)
    return not is_output and len(readers) == 1 and readers[0] is bn


def _folds_forward(reader: Node) -> bool:
    layer = reader.layer
    if isinstance(layer, Dense):
        return len(reader.input_shapes[0]) == 1
    if isinstance(layer, (Conv1D, Conv2D)):
        # Padding cells would be zeros, not the batchnorm's shift: only unpadded windows fold.
        return all(
            w.pad_begin == 0 and w.pad_end == 0 for w in windows(layer, reader.input_shapes[0][1:])
        )
    return False
