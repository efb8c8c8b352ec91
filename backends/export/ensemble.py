"""`netspec export --ensemble`: several runs in one ONNX graph that averages their outputs."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .emitter import ExportError
from .run import ExportReport, export_run, write_model
from .sidecar import precision, sidecar_path

INPUT = "input"  # every member's input name (backends/export/model.py); the ensemble shares it
TOLERANCE = 1e-5  # the ensemble against the mean of its members, both in onnxruntime
# Outputs of the graph are probabilities when the members end in (or are given) this head.
HEADS = {"multiclass": "Softmax", "binary": "Sigmoid"}
# Only the output side of preprocessing may differ: each member's graph undoes its own targets.
OUTPUT_STEPS = ("target_mean", "target_std")


def _error(message: str, hint: str) -> ExportError:
    return ExportError.one(message, hint=hint)


def _meta(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _input_steps(meta: dict[str, str]) -> dict[str, object]:
    pre = json.loads(meta.get("netspec.preprocessing", "{}"))
    return {k: v for k, v in pre.items() if k not in OUTPUT_STEPS}


def _check_members(models: Sequence[onnx.ModelProto], sources: Sequence[Path]) -> None:
    """One input, one output, and the same task, classes, shapes and input preprocessing."""
    first = _meta(models[0])
    keys = ("netspec.task", "netspec.classes", "netspec.input_shape", "netspec.output_shape")
    for model, source in zip(models, sources):
        if [i.name for i in model.graph.input] != [INPUT] or len(model.graph.output) != 1:
            raise ExportError(f"{source}: expected one input named '{INPUT}' and one output")
        meta = _meta(model)
        if first.get("netspec.task") == "segmentation":
            raise ExportError(f"{source}: segmentation models are not ensembled")
        for key in keys:
            if meta.get(key) != first.get(key):
                raise _error(
                    f"--ensemble: {source} has {key} {meta.get(key)}, the first member "
                    f"{sources[0]} has {first.get(key)}",
                    "ensemble runs of one spec (for example trained with --set train.seed=N)",
                )
        if _input_steps(meta) != _input_steps(first):
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
    meta = _meta(first)
    op = HEADS.get(meta.get("netspec.task", ""))
    nodes, inits, infos, outs = [], [], [], []
    for i, model in enumerate(models):
        graph = _prefixed(model, f"m{i}")
        out = graph.output[0].name
        head = _meta(model).get("netspec.head")
        if op is not None and head != op.lower():  # scores: the member's probabilities first
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
    meta["netspec.head"] = op.lower() if op else meta.get("netspec.head", "none")
    meta["netspec.ensemble"] = json.dumps(list(names))
    helper.set_model_props(model, meta)
    model.doc_string = f"mean of {len(models)} models: {', '.join(names)}"
    return model


def member_mean(models: Sequence[onnx.ModelProto], x: np.ndarray) -> np.ndarray:
    """The mean of the members' probabilities (values for regression), each run on its own."""
    from netspec.backends.predict.session import open_session

    outs = []
    for model in models:
        y = open_session(model.SerializeToString(), "cpu").run(None, {INPUT: x})[0]
        meta = _meta(model)
        op = HEADS.get(meta.get("netspec.task", ""))
        if op == "Softmax" and meta.get("netspec.head") != "softmax":
            y = np.exp(y - y.max(axis=1, keepdims=True))
            y = y / y.sum(axis=1, keepdims=True)
        elif op == "Sigmoid" and meta.get("netspec.head") != "sigmoid":
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
    *,
    opset: int | None = None,
    batch: int | None = None,
    check: bool = True,
) -> ExportReport:
    """Export each run (checked as `export_run` checks it), join them, check, write atomically.

    Default output: <first run>/ensemble.onnx, with its JSON sidecar. `opset` None: the lowest
    each member needs, the newest of them for the whole. The joined model passes onnx.checker
    and must match the mean of its members in onnxruntime within TOLERANCE on random batches.
    """
    if len(sources) < 2:
        raise ExportError("--ensemble: give at least two runs (the first, then --ensemble RUN)")
    notes: list[str] = []
    models = []
    folded = removed = 0
    with tempfile.TemporaryDirectory(prefix="netspec-ensemble-") as tmp:
        for i, source in enumerate(sources):
            report = export_run(
                Path(source), Path(tmp) / f"m{i}.onnx", opset=opset, batch=batch, check=check
            )
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
    if check:
        onnx.checker.check_model(model, full_check=True)
        shape = json.loads(_meta(model)["netspec.input_shape"])
        rng = np.random.default_rng(0)
        for n in (1, 7) if batch is None else (batch,):
            x = rng.standard_normal((n, *shape)).astype(np.float32)
            diffs[f"members' mean, batch {n}"] = parity(model, models, x)
        if max(diffs.values()) > TOLERANCE:
            raise ExportError(
                f"the ensemble differs from the mean of its members by {max(diffs.values()):.1e}"
                f" (tolerance {TOLERANCE:.0e}); nothing was written"
            )
    home = paths[0] if paths[0].is_dir() else paths[0].parent  # a run, or its weights file
    path = Path(out) if out is not None else home / "ensemble.onnx"
    data = write_model(model, path)
    if diffs:
        worst = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
        notes.append(f"the ensemble matches its members' mean in onnxruntime: {worst}")
    return ExportReport(
        path=path,
        size=len(data),
        opset=model.opset_import[0].version,
        batch=batch,
        fp16=False,
        precision=precision(model),
        nodes=len(model.graph.node),
        folded_batchnorm=folded,
        removed_dropout=removed,
        sidecar=sidecar_path(path),
        notes=notes,
    )
