"""The Python API for trained runs: load_run -> Run (metrics, history, module, predict, export, evaluate)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netspec.errors import DataError
from netspec.run_record import RunLayout, RunMeta

# torch is imported by Run.module, export_onnx and evaluate only; reading metrics needs none.
if TYPE_CHECKING:
    from collections.abc import Iterable

    import numpy as np
    import torch

    from netspec.ir import Graph


def load_run(path: str | Path) -> Run:
    """A run directory made by `netspec train` (or its weights file): metrics, history, module."""
    return Run(path)


class Run:
    """A trained run: its metrics and history, its torch module, export and evaluation.

    Reads lazily: nothing but the directory is checked until an attribute is used.
    """

    def __init__(self, path: str | Path) -> None:
        from netspec.runs import find_run

        self.dir, self.weights_path, self.notes = find_run(Path(path))
        self._source = Path(path)

    def __repr__(self) -> str:
        return f"<Run {str(self.dir)!r}>"

    @cached_property
    def graph(self) -> Graph:
        """The network the run trained, compiled from its recorded spec.yaml."""
        from netspec.compiler import compile_source
        from netspec.runs import run_source

        return compile_source(run_source(self.dir))

    @cached_property
    def meta(self) -> RunMeta | None:
        """model.json: task, classes, head, preprocessing, shapes (or the copy in the weights
        file's header, as `netspec export` reads it; None if neither)."""
        from netspec.runs import run_meta, weights_header

        return run_meta(self.dir, weights_header(self.weights_path))

    @property
    def metrics(self) -> dict[str, Any]:
        """metrics.json without its history: epochs, best epoch's row, test scores, stopped.

        {} for a run whose training did not finish (its history is in metrics.csv).
        """
        data = _json(RunLayout(self.dir).metrics_json) or {}
        return {k: v for k, v in data.items() if k != "history"}

    @property
    def history(self) -> list[dict[str, float | int | None]]:
        """One dict per finished epoch (epoch, loss, metrics, val_*, lr, time_s), from metrics.csv."""
        return read_history(RunLayout(self.dir).metrics_csv)

    def history_frame(self) -> Any:
        """The history as a pandas DataFrame indexed by epoch (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("history_frame() needs pandas: pip install pandas") from None
        return pd.DataFrame(self.history).set_index("epoch")

    @cached_property
    def module(self) -> torch.nn.Module:
        """The trained network as a torch module, in eval mode (built on first use)."""
        from netspec.backends.weights import load_module
        from netspec.runs import check_weights, read_weights

        weights, _ = read_weights(self.weights_path)
        check_weights(self.graph, weights, strict=True, file=self.weights_path)  # as read_run
        return load_module(self.graph, weights)

    def export_onnx(
        self,
        path: str | Path | None = None,
        *,
        opset: int | None = None,
        batch_dim: int | None = None,
        fp16: bool = False,
        int8: bool = False,
        max_drop: float | None = None,
        check: bool = True,
    ) -> Path:
        """Export to ONNX (default <run>/model.onnx, with its JSON sidecar model.onnx.json),
        checked against PyTorch as `netspec export` does. `opset` None is the lowest the network
        needs, `batch_dim` None a dynamic batch dimension (`--batch-dim`); `fp16` stores float16 weights (float32 input
        and output), `int8` quantizes and checks test accuracy (at most `max_drop` points lost,
        default 1). Returns the file's path."""
        from netspec.backends.export.run import ExportOptions, export_run

        options = ExportOptions(opset, batch_dim, fp16, int8=int8, max_drop=max_drop, check=check)
        return export_run(self._source, None if path is None else Path(path), options).path

    def predict(
        self,
        inputs: str | Path | np.ndarray | Iterable[str | Path | np.ndarray],
        *,
        device: str = "auto",
        top_k: int = 5,
        batch: int = 64,
        out: str | Path | None = None,
        overlap: int | None = None,
        tta: bool = False,
        keep_going: bool = False,
    ) -> list[dict[str, Any]]:
        """Predictions of the trained module on raw inputs, as `netspec predict --json` gives
        them for this run's export: files, arrays of raw values, and texts (a `str`) for a text
        model, with the run's recorded preprocessing; no export needed. The arguments are
        `Predictor`'s and `Predictor.predict`'s (`device`, `top_k`, `batch`, `out` as the CLI's
        options). The module moves to `device` (auto: CUDA when there is one)."""
        from netspec.backends.predict.module_model import ModuleModel
        from netspec.predictor import Predictor

        model = ModuleModel(self.graph, self.meta, self.module, self.weights_path, device)
        return Predictor._of(model, top_k).predict(
            inputs, batch=batch, out=out, overlap=overlap, tta=tta, keep_going=keep_going
        )

    def evaluate(
        self,
        data: str | Path | None = None,
        *,
        device: str = "auto",
        echo: Callable[[str], None] | None = None,
        out: str | Path | None = None,
    ) -> dict[str, Any]:
        """Scores of the final weights on the run's test split, or on all of `data` (same kind
        of data as the run's): the dict `netspec evaluate` prints. Classification also writes
        the report files (classification_report.txt/.json, confusion_matrix.png, mistakes.png,
        roc.png) into `out` (default: the run directory; with `data`, RUN/evaluate/<name>)."""
        from netspec.backends.training.evaluate import evaluate_run

        return evaluate_run(
            self.dir,
            data=None if data is None else Path(data),
            device=device,
            log=echo,
            out=None if out is None else Path(out),
        )


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError.one(f"cannot read: {exc}", str(path)) from None


def read_history(path: Path) -> list[dict[str, float | int | None]]:
    """metrics.csv as rows of numbers: `epoch` an int, an empty cell None (a value some epochs
    lack), NaN as written."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [
            {k: _number(k, v) for k, v in row.items() if k is not None} for row in csv.DictReader(f)
        ]


def _number(key: str, cell: str | None) -> float | int | None:
    if cell is None or cell == "":
        return None
    value = float(cell)
    return int(value) if key == "epoch" and math.isfinite(value) else value
