"""`netspec evaluate`: a run's final weights scored on its test split or on other data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from netspec.compiler import compile_source
from netspec.data.pipeline import cut_tiles
from netspec.data.preprocess import Preprocessing
from netspec.errors import DataError, Problem
from netspec.runs import META_FILE, run_source, run_weights

from ..weights import load_weights
from . import checkpoint
from .device import pick_device
from .loop import Trainer


def evaluate_run(
    run_dir: Path, *, data: Path | None = None, device: str = "auto", log=None
) -> dict[str, Any]:
    """Metrics of a run's final weights on its test split, or on all of `data`.

    An interrupted run is scored with its checkpoint (`runs.run_weights`); `log` gets the note.
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
        raise DataError(
            [
                Problem(
                    f"--data: the run was trained on a built-in dataset, which has no path to "
                    f"replace with {data}",
                    hint="evaluate it without --data (on its test split)",
                )
            ]
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
    tensors, _ = checkpoint.load(weights_path)
    if any(k.startswith("model/") for k in tensors):  # checkpoint/last: its model part
        tensors = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    load_weights(t.module, tensors)
    meta = json.loads((run_dir / META_FILE).read_text())
    # The training split's statistics, exactly as recorded, not recomputed on new data.
    pre = Preprocessing.from_dict(meta["preprocessing"])
    if data is not None:
        classes = tuple(meta["classes"]) if meta.get("classes") else None
        if classes != t.data.classes:
            raise DataError(
                [
                    Problem(
                        f"--data: the classes of {data} ({_few(t.data.classes)}) are not those "
                        f"the run was trained on ({_few(classes)})",
                        str(data),
                    )
                ]
            )
        split = t.data.train
        if t.data.task == "segmentation" and t.data.tile is not None:
            split = cut_tiles(split, t.data.tile)  # every pixel, once
        name = str(data)
    elif t.data.test is not None:
        split, name = t.data.test, "test"
    else:
        raise DataError([Problem(f"{run_dir}: the run has no test split", hint="pass --data")])
    return {"split": name, "samples": len(split.y), **t.evaluate_on(split, pre)}


def _few(names: tuple[str, ...] | None) -> str:
    if not names:
        return "none"
    return ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
