"""Training memory estimated from the IR: weights, gradients, optimizer state, activations, data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from netspec.ir import Graph, at_length
from netspec.layers.activations import ActivationLayer, activation_of
from netspec.layers.recurrent import Recurrent
from netspec.train_spec import TrainSpec

FLOAT32_BYTES = 4


@dataclass(frozen=True)
class MemoryRow:
    what: str
    bytes: int
    note: str


def optimizer_slots(spec: TrainSpec | None) -> int:
    """Tensors the optimizer keeps per trainable parameter (torch.optim's state)."""
    o = spec.optimizer if spec is not None else None
    if o is None or o.name in ("adam", "adamw"):
        return 2  # exp_avg, exp_avg_sq (the default optimizer is adam)
    if o.name == "sgd":
        return 1 if o.momentum > 0 else 0  # momentum_buffer
    return 1 + (1 if o.momentum > 0 else 0)  # rmsprop: square_avg, momentum_buffer


def activation_elements(graph: Graph) -> int:
    """Per-sample floats kept for the backward pass: each node's output, the input, and a second
    copy where a fused activation keeps both its input and its output (conv then relu).

    A dynamic time axis is counted at the graph's stated length (`Graph.length`)."""
    graph = at_length(graph)
    total = math.prod(graph.input_shape)
    for n in graph.nodes:
        size = math.prod(n.shape)
        # A fused activation (conv then relu in one layer) keeps the pre-activation too; an
        # activation layer of its own (relu, softmax, `activation {fn}`) only its output: its
        # input is the node before it, counted there.
        fused = (
            not isinstance(n.layer, ActivationLayer)
            and activation_of(n.layer, len(n.shape)) is not None
        )
        total += size * (2 if fused else 1)
        if isinstance(n.layer, Recurrent):
            # Every step keeps its gates, hidden (and LSTM cell) state for backward: an estimate,
            # (gates + 2) x units per step and direction (the kernels' workspaces vary).
            layer = n.layer
            steps = n.input_shapes[0][0]
            total += steps * layer.directions * (layer.gates + 2) * layer.units
    return total


def estimate(graph: Graph, batch_size: int, data_bytes: int | None = None) -> tuple[MemoryRow, ...]:
    """Bytes training needs at `batch_size`, by part; float32 throughout.

    Weights, gradients and optimizer state are exact for torch.optim; activations are the
    outputs kept for backward (tests/test_memory.py measures them against torch's saved tensors).
    """
    spec = graph.train
    trainable = sum(n.trainable_params for n in graph.nodes)
    weights = sum(n.params for n in graph.nodes) * FLOAT32_BYTES
    slots = optimizer_slots(spec)
    name = spec.optimizer.name if spec is not None else "adam"
    rows = [
        MemoryRow("weights", weights, "parameters and buffers"),
        MemoryRow("gradients", trainable * FLOAT32_BYTES, "one per trainable parameter"),
        MemoryRow("optimizer", slots * trainable * FLOAT32_BYTES, f"{name}: {slots} per parameter"),
        MemoryRow(
            "activations",
            batch_size * activation_elements(graph) * FLOAT32_BYTES,
            f"kept for backward, batch {batch_size}",
        ),
    ]
    if data_bytes is not None:
        rows.append(MemoryRow("data", data_bytes, "the loaded splits"))
    return tuple(rows)


def total(rows: tuple[MemoryRow, ...]) -> int:
    return sum(r.bytes for r in rows)


def host_available(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """MemAvailable in bytes (Linux), else None: the check is then skipped."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
