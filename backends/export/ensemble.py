"""`netspec export --ensemble`: several runs in one ONNX graph that averages their outputs."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from netspec.data.preprocess import Preprocessing
from netspec.errors import UsageError

from .card import NO_HEAD, Card, encode_card, props_of
from .emitter import ExportError
from .run import ExportOptions, ExportReport, export_run, write_report

INPUT = "input"  # every member's input name (backends/export/model.py); the ensemble shares it
TOLERANCE = 1e-5  # the ensemble against the mean of its members, both in onnxruntime
# Outputs of the graph are probabilities when the members end in (or are given) this head.
HEADS = {"multiclass": "Softmax", "binary": "Sigmoid"}
# What every member must share: the card's fields, by their metadata key (for messages).
SHARED = {
    "netspec.task": "task",
    "netspec.classes": "classes",
    "netspec.input_shape": "input_shape",
    "netspec.output_shape": "output_shape",
    "netspec.max_length": "max_length",
    "netspec.min_length": "min_length",
}


def _error(message: str, hint: str) -> ExportError:
    return ExportError.one(message, hint=hint)


def _input_steps(card: Card) -> Preprocessing | None:
    """The input side of the preprocessing: each member's graph undoes its own targets."""
    pre = card.preprocessing
    return None if pre is None else replace(pre, target_mean=None, target_std=None)


def _shown(value: Any) -> str:
    """A card value as the metadata spells it."""
    if isinstance(value, str):
        return value
    return json.dumps(list(value) if isinstance(value, (list, tuple)) else value)


def _check_members(models: Sequence[onnx.ModelProto], sources: Sequence[Path]) -> None:
    """One input, one output, and the same task, classes, shapes and input preprocessing."""
    first = Card.of(models[0])
    for model, source in zip(models, sources):
        if [i.name for i in model.graph.input] != [INPUT] or len(model.graph.output) != 1:
            raise ExportError(f"{source}: expected one input named '{INPUT}' and one output")
        card = Card.of(model)
        if first.task == "segmentation":
            raise ExportError(f"{source}: segmentation models are not ensembled")
        for key, name in SHARED.items():
            mine, theirs = getattr(card, name), getattr(first, name)
            if mine != theirs:
                raise _error(
                    f"--ensemble: {source} has {key} {_shown(mine)}, the first member "
                    f"{sources[0]} has {_shown(theirs)}",
                    "ensemble runs of one spec (for example trained with --set train.seed=N)",
                )
        if _input_steps(card) != _input_steps(first):
            raise _error(
                f"--ensemble: {source} preprocesses its input differently from {sources[0]} "
                "(one ONNX input feeds every member, so rescale and normalization must agree)",
                "fix the statistics (normalize: {mean, std}) or the split "
                "(train.data.split_seed) and retrain, or ensemble with `netspec predict --ensemble`",
            )


def _prefixed(model: onnx.ModelProto, prefix: str) -> onnx.GraphProto:
    """The member's graph with every node, tensor and initializer renamed `prefix/...`,
    except the shared input."""
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)

    def name(n: str) -> str:
        return n if n in ("", INPUT) else f"{prefix}/{n}"

    for i, node in enumerate(graph.node):
        node.name = name(node.name or f"{node.op_type}_{i}")
        node.input[:] = [name(n) for n in node.input]
        node.output[:] = [name(n) for n in node.output]
    for tensor in graph.initializer:
        tensor.name = name(tensor.name)
    for value in [*graph.value_info, *graph.output]:
        value.name = name(value.name)
    return graph


def combine(models: Sequence[onnx.ModelProto], names: Sequence[str]) -> onnx.ModelProto:
    """One graph: the shared input, every member renamed `m<i>/`, probabilities, then Mean.

    The output keeps the first member's name and shape; the metadata is the first member's, with
    `netspec.head` set to the head the averaged outputs have and `netspec.ensemble` listing
    the members.
    """
    first = models[0]
    card = Card.of(first)
    op = HEADS.get(card.task or "")
    nodes, inits, infos, outs = [], [], [], []
    for i, model in enumerate(models):
        graph = _prefixed(model, f"m{i}")
        out = graph.output[0].name
        # Scores: the member's probabilities first.
        if op is not None and Card.of(model).head != op.lower():
            nodes.append(helper.make_node(op, [out], [f"{out}/{op.lower()}"], name=f"m{i}/{op}"))
            out = f"{out}/{op.lower()}"
        nodes += graph.node
        inits += graph.initializer
        infos += graph.value_info
        outs.append(out)
    output = onnx.ValueInfoProto()
    output.CopyFrom(first.graph.output[0])
    nodes.append(helper.make_node("Mean", outs, [output.name], name="ensemble_mean"))
    graph = helper.make_graph(
        nodes, "ensemble", [first.graph.input[0]], [output], initializer=inits, value_info=infos
    )
    # The newest of the members' opsets: each took the lowest its own graph needs.
    opsets = [
        max((o for o in m.opset_import if o.domain in ("", "ai.onnx")), key=lambda o: o.version)
        for m in models
    ]
    newest = max(opsets, key=lambda o: o.version)
    model = helper.make_model(graph, opset_imports=[newest], producer_name="netspec")
    model.ir_version = first.ir_version
    props = props_of(first)
    head = op.lower() if op else card.meta.head or NO_HEAD
    props.update(encode_card({"head": head, "ensemble": list(names)}))
    helper.set_model_props(model, props)
    model.doc_string = f"mean of {len(models)} models: {', '.join(names)}"
    return model


def member_mean(models: Sequence[onnx.ModelProto], x: np.ndarray) -> np.ndarray:
    """The mean of the members' probabilities (values for regression), each run on its own."""
    from netspec.backends.predict.session import open_session

    outs = []
    for model in models:
        y = open_session(model.SerializeToString(), "cpu").run(None, {INPUT: x})[0]
        card = Card.of(model)
        op = HEADS.get(card.task or "")
        if op == "Softmax" and card.head != "softmax":
            y = np.exp(y - y.max(axis=1, keepdims=True))
            y = y / y.sum(axis=1, keepdims=True)
        elif op == "Sigmoid" and card.head != "sigmoid":
            y = 1.0 / (1.0 + np.exp(-y))
        outs.append(y.astype(np.float64))
    return np.mean(outs, axis=0)


def parity(ensemble: onnx.ModelProto, models: Sequence[onnx.ModelProto], x: np.ndarray) -> float:
    """Max abs difference between the ensemble's output and `member_mean` on the batch x."""
    from netspec.backends.predict.session import open_session

    got = open_session(ensemble.SerializeToString(), "cpu").run(None, {INPUT: x})[0]
    return float(np.abs(got - member_mean(models, x)).max())


def export_ensemble(
    sources: Sequence[Path],
    out: Path | None = None,
    options: ExportOptions | None = None,
) -> ExportReport:
    """Export each run (checked as `export_run` checks it), join them, check, write atomically.

    Default output: <first run>/ensemble.onnx, with its JSON sidecar. `options.opset` None: the
    lowest each member needs, the newest of them for the whole; float32 only. The joined model passes onnx.checker
    and must match the mean of its members in onnxruntime within TOLERANCE on random batches.
    """
    options = options or ExportOptions()
    if options.fp16 or options.fp16_io or options.int8 or options.preprocess:
        raise UsageError(
            "--ensemble: --fp16, --int8 and --preprocess are not supported for ensembles"
        )
    if len(sources) < 2:
        raise ExportError("--ensemble: give at least two runs (the first, then --ensemble RUN)")
    notes: list[str] = []
    models = []
    folded = removed = 0
    with tempfile.TemporaryDirectory(prefix="netspec-ensemble-") as tmp:
        for i, source in enumerate(sources):
            report = export_run(Path(source), Path(tmp) / f"m{i}.onnx", options)
            if report.max_abs_diff:
                worst = max(report.max_abs_diff.values())
                notes.append(f"m{i} = {source}: matches PyTorch (max abs diff {worst:.1e})")
            else:
                notes.append(f"m{i} = {source}: not checked")
            models.append(onnx.load(report.path))
            folded += report.folded_batchnorm
            removed += report.removed_dropout
    paths = [Path(s) for s in sources]
    _check_members(models, paths)
    model = combine(models, [str(s) for s in sources])
    diffs: dict[str, float] = {}
    if options.check:
        onnx.checker.check_model(model, full_check=True)
        card = Card.of(model)
        # A dynamic time axis is checked at two lengths (within a position table's).
        shortest = card.min_length or 1
        lengths = (max(shortest, min(16, card.max_length or 16)), max(shortest, 5))
        rng = np.random.default_rng(0)
        for t in lengths if None in (card.input_shape or ()) else (None,):
            shape = tuple(t if d is None else d for d in card.input_shape or ())
            at = "" if t is None else f", length {t}"
            for n in (1, 7) if options.batch is None else (options.batch,):
                x = rng.standard_normal((n, *shape)).astype(np.float32)
                diffs[f"members' mean, batch {n}{at}"] = parity(model, models, x)
        if max(diffs.values()) > TOLERANCE:
            raise ExportError(
                f"the ensemble differs from the mean of its members by {max(diffs.values()):.1e}"
                f" (tolerance {TOLERANCE:.0e}); nothing was written"
            )
    home = paths[0] if paths[0].is_dir() else paths[0].parent  # a run, or its weights file
    if diffs:
        worst = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
        notes.append(f"the ensemble matches its members' mean in onnxruntime: {worst}")
    return write_report(
        model,
        Path(out) if out is not None else home / "ensemble.onnx",
        batch=options.batch,
        fp16=False,
        folded=folded,
        removed=removed,
        notes=notes,
    )
