"""What `netspec bench` times: a spec (random weights), a run, or an .onnx file with or without its run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import DataError, UsageError

from ..export.card import IN_GRAPH, Card
from .timing import BenchError

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass
class Target:
    """The model to time: its graph and weights when PyTorch can run it, and its ONNX model."""

    name: str
    source: str
    graph: Any = None  # netspec Graph, when PyTorch can be timed
    weights: dict[str, np.ndarray] | None = None
    module: Any = None
    onnx: bytes | Path | None = None
    notes: list[str] = field(default_factory=list)
    run: Any = None  # the netspec Run, when there is one (its data for int8 comparisons)


def load_target(source: Path, seed: int, sets: Sequence[str] = ()) -> Target:
    """A spec (random weights from `seed`, `sets` its `--set` overrides), a run directory, or an
    .onnx file (its run beside)."""
    source = Path(source)
    if not source.exists():
        raise DataError.one("no such spec, run directory or .onnx file", str(source))
    if sets and source.suffix.lower() not in SPEC_SUFFIXES:
        raise UsageError.one("--set changes a spec; this is a run or an .onnx file", str(source))
    if source.is_dir():
        from netspec.runs import read_run

        run = read_run(source)
        return Target(run.graph.name, "run", run.graph, run.weights, notes=run.notes, run=run)
    if source.suffix.lower() == ".onnx":
        from netspec.runs import RunLayout, read_run

        beside = RunLayout(source.parent)
        if beside.spec.is_file() and any(
            (beside.directory / f).is_file() for f in (beside.WEIGHTS, *beside.STAND_INS)
        ):
            run = read_run(beside.directory)
            return Target(
                run.graph.name,
                "onnx + run",
                run.graph,
                run.weights,
                onnx=source,
                notes=run.notes,
                run=run,
            )
        return Target(
            source.stem,
            "onnx",
            onnx=source,
            notes=[
                "no run beside the .onnx file (spec.yaml, model.safetensors): "
                "onnxruntime timed alone, no PyTorch comparison"
            ],
        )
    if source.suffix.lower() in SPEC_SUFFIXES:
        import torch

        from netspec.compiler import compile_source
        from netspec.source import apply_overrides, read

        from ..lowering import build_module
        from ..weights import module_weights

        graph = compile_source(apply_overrides(read(source), list(sets)))
        torch.manual_seed(seed)
        module = build_module(graph).eval()
        return Target(
            graph.name,
            f"spec (random weights, seed {seed})",
            graph,
            module_weights(module),
            module=module,
        )
    raise DataError.one("expected a spec (.yaml), a run directory or an .onnx file", str(source))


def input_shape(
    session: Any, card: Card, props: Mapping[str, str], length: int | None, notes: list[str]
) -> tuple[tuple[int, ...], int | None]:
    """The input shape without the batch axis (a dynamic time axis at `length`, default that of
    the summary: 100 within the card's min_length and max_length), and the fixed batch size
    (None: dynamic)."""
    from netspec.ir import DEFAULT_LENGTH

    first = session.get_inputs()[0]
    if props.get(IN_GRAPH) == "true":
        # Its time depends on each image's size, and PyTorch has no such preprocessing to
        # compare with: bench times the network on the input the two engines share.
        raise UsageError.one(
            f"the model takes decoded images (input '{first.name}' {first.type}, any size) and "
            "preprocesses them in its graph (export --preprocess); netspec bench times the "
            "network on its preprocessed input",
            hint="bench the run, or its export without --preprocess",
        )
    dims = first.shape
    rest = list(dims[1:])
    free = [i for i, d in enumerate(rest) if not (isinstance(d, int) and d > 0)]
    if len(free) > 1:
        raise BenchError(f"the model's input {dims} has several dynamic dimensions")
    if free:
        steps = length or min(DEFAULT_LENGTH, card.max_length or DEFAULT_LENGTH)
        steps = max(steps, card.min_length or 1)
        if card.max_length is not None and steps > card.max_length:
            raise UsageError.one(
                f"--length {steps}: the model takes at most {card.max_length} steps",
                hint=f"pass --length {card.max_length} or less",
            )
        rest[free[0]] = steps
        notes.append(f"the dynamic time axis is timed at length {steps} (--length)")
    elif length is not None:
        raise UsageError.one(
            f"--length {length}: the model's input {dims} has no dynamic time axis",
            hint="--length applies to a model whose input is like [batch, time, features]",
        )
    batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    return tuple(rest), batch
