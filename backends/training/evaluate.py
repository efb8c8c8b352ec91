"""`netspec evaluate`: a run's final weights scored on its test split or on other data."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from netspec.compiler import compile_source
from netspec.data.arraydata import ArrayData
from netspec.data.table import check_columns
from netspec.errors import DataError, NetspecError
from netspec.run_data import RunData, run_data
from netspec.runs import RunLayout, RunMeta, check_weights, read_weights, run_source, run_weights

from ..lowering import build_module
from ..weights import load_weights
from .classify import split_report
from .device import pick_device, use_channels_last
from .objective import choose_loss, default_metrics, make_metrics
from .scoring import Scorer, probabilities, score


def evaluate_run(
    run_dir: Path,
    *,
    data: Path | None = None,
    device: str = "auto",
    log=None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Metrics of a run's final weights on its test split, or on all of `data`.

    An interrupted run is scored with its checkpoint (`runs.run_weights`); `log` gets the note.
    The data come from `runs.run_data`, preprocessed with the run's recorded preprocessing.
    Classification runs also get the report files (training/classify.py) in `out`, by default
    the run directory for its test split and `RUN/evaluate/<data name>` for other data; the
    result's "report" holds the per-class table.
    """
    run_dir = Path(run_dir)
    log = log or (lambda s: None)
    dev = pick_device(device)  # a wrong --device is reported before any data is read
    weights_path, notes = run_weights(run_dir)
    for note in notes:
        log(f"note: {note}")
    held = _held_out(run_dir, data)
    graph = compile_source(run_source(run_dir))
    assert graph.train is not None
    spec, meta = graph.train, held.meta
    task = meta.task or "regression"
    module = build_module(graph).to(dev)
    weights = read_weights(weights_path)[0]  # a checkpoint gives its model part
    check_weights(graph, weights, strict=True, file=weights_path)  # the error names the file
    load_weights(module, weights)
    channels_last = use_channels_last(graph, spec)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    loss_fn = choose_loss(spec, task, meta.classes, graph, lambda: _train(run_dir).y).to(dev)
    scorer = Scorer(
        module, held.preprocessing, dev, loss_fn.on_logits, channels_last, spec.precision == "bf16"
    )
    metrics = make_metrics(default_metrics(task, spec.metrics), task, meta.classes)
    split = held.data
    name = "test" if data is None else str(data)
    result = {
        "split": name,
        "samples": len(split.y),
        **score(scorer, split, task, loss_fn, metrics),
    }
    if task in ("multiclass", "binary"):
        if out is None:
            out = run_dir if data is None else RunLayout(run_dir).evaluation(Path(data).stem)
        report = split_report(
            probabilities(scorer, split),
            split,
            out,
            split=name,
            classes=meta.classes or (),
            name=graph.name,
            pictures=spec.log.pictures,
            rgb=spec.data.rgb_bands,
            log=log,
        )
        result["report"] = {k: v for k, v in report.items() if k != "roc"}
        if "roc" in report:
            result["report"]["roc_auc"] = report["roc"]["auc"]
    if data is not None and meta.imported_from is None:  # an imported model trained elsewhere
        overlap = _in_training_split(run_dir, split)
        if overlap is not None:
            result["in_training_split"] = overlap
            if overlap:
                n = len(split)
                result["notes"] = [f"{overlap} of {n} samples were in the run's training split"]
    return result


def _held_out(run_dir: Path, data: Path | None) -> RunData:
    """The data to score (run_data's): the run's test split, or all of `data`."""
    if data is not None and Path(data).suffix.lower() == ".csv":
        layout = RunLayout(run_dir)
        table = RunMeta.read(layout.meta).table if layout.meta.is_file() else None
        if table:  # a table run: name the columns a new CSV lacks, before its shape is checked
            check_columns(data, table)
    try:
        return run_data(run_dir, "test" if data is None else Path(data))
    except DataError as err:
        if data is None and "has no test split" in err.problems[0].message:
            raise DataError.one(
                f"{run_dir}: the run has no test split", hint="pass --data"
            ) from None
        raise


def _train(run_dir: Path) -> ArrayData:
    return run_data(run_dir, "train").data


def _in_training_split(run_dir: Path, data: ArrayData) -> int | None:
    """How many samples of `data` the run trained on (equal bytes), or None if unknown."""
    try:
        train = _train(run_dir)
    except NetspecError:  # the training data moved or changed shape: nothing to compare
        return None
    seen = {hashlib.sha256(x.tobytes()).digest() for x in train.x}
    return sum(hashlib.sha256(x.tobytes()).digest() in seen for x in data.x)
