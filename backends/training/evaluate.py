"""`netspec evaluate`: a run's final weights scored on its test split or on other data."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from netspec.compiler import compile_source
from netspec.data.arraydata import ArrayData
from netspec.data.pipeline import cut_tiles, prepare
from netspec.errors import DataError, NetspecError, few
from netspec.runs import RunLayout, RunMeta, read_weights, run_source, run_weights

from ..weights import load_weights
from .classify import split_report
from .device import pick_device
from .loop import Trainer
from .normalize import Normalizer


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
    Classification runs also get the report files (training/classify.py) in `out`, by default
    the run directory for its test split and `RUN/evaluate/<data name>` for other data; the
    result's "report" holds the per-class table.
    """
    run_dir = Path(run_dir)
    pick_device(device)  # a wrong --device is reported before any data is read
    source = run_source(run_dir)
    weights_path, notes = run_weights(run_dir)
    for note in notes:
        (log or (lambda s: None))(f"note: {note}")
    train = source.data.get("train") if isinstance(source.data, dict) else None
    data_cfg = train.get("data") if isinstance(train, dict) else None
    kind = data_cfg.get("source") if isinstance(data_cfg, dict) else None
    if data is not None and kind == "builtin":
        raise DataError.one(
            f"--data: the run was trained on a built-in dataset, which has no path to "
            f"replace with {data}",
            hint="evaluate it without --data (on its test split)",
        )
    if data is not None:
        source = run_source(
            run_dir,
            [
                f"train.data.path={Path(data).resolve()}",
                "train.data.val=0.0",
                "train.data.test=0.0",
                "train.data.test_path=null",
                "train.data.limit=null",
            ],
        )
    graph = compile_source(source)
    t = Trainer(graph, graph.train, run_dir, device=device, log=lambda s: None, progress=False)
    t.setup()
    load_weights(t.module, read_weights(weights_path)[0])  # a checkpoint gives its model part
    meta = RunMeta.read(RunLayout(run_dir).meta)
    meta.check(graph.input_shape, graph.output.shape, str(RunLayout(run_dir).meta))
    # The training split's statistics, exactly as recorded, not recomputed on new data.
    pre = meta.preprocessing
    if pre is None:
        raise DataError.one("the run records no preprocessing", str(RunLayout(run_dir).meta))
    if data is not None:
        classes = meta.classes or None
        if classes != t.data.classes:
            raise DataError.one(
                f"--data: the classes of {data} ({few(t.data.classes or ()) or 'none'}) are not those "
                f"the run was trained on ({few(classes or ()) or 'none'})",
                str(data),
            )
        split = t.data.train
        overlap = _in_training_split(run_dir, split)
        if t.data.task == "segmentation" and t.data.tile is not None:
            split = cut_tiles(split, t.data.tile)  # every pixel, once
        name = str(data)
    elif t.data.test is not None:
        split, name = t.data.test, "test"
    else:
        raise DataError.one(f"{run_dir}: the run has no test split", hint="pass --data")
    result = {"split": name, "samples": len(split.y), **t.evaluate_on(split, pre)}
    if t.data.task in ("multiclass", "binary"):
        if out is None:
            out = run_dir if data is None else RunLayout(run_dir).evaluation(Path(data).stem)
        report = split_report(
            t, split, out, split=name, norm=Normalizer(pre, t.device), log=log or (lambda s: None)
        )
        result["report"] = {k: v for k, v in report.items() if k != "roc"}
        if "roc" in report:
            result["report"]["roc_auc"] = report["roc"]["auc"]
    if data is not None and overlap is not None:
        result["in_training_split"] = overlap
        if overlap:
            n = len(t.data.train)
            result["notes"] = [f"{overlap} of {n} samples were in the run's training split"]
    return result


def _in_training_split(run_dir: Path, data: ArrayData) -> int | None:
    """How many samples of `data` the run trained on (equal bytes), or None if unknown."""
    try:
        graph = compile_source(run_source(run_dir))
        assert graph.train is not None
        train = prepare(graph.train, graph.input_shape, graph.output.shape, graph.file).train
    except NetspecError:  # the training data moved or changed shape: nothing to compare
        return None
    seen = {hashlib.sha256(x.tobytes()).digest() for x in train.x}
    return sum(hashlib.sha256(x.tobytes()).digest() in seen for x in data.x)
