"""A training run's files as it writes them: model.json first (the marker of a run), the spec and
summary, each epoch's checkpoint and metrics.csv, the final weights and metrics.json.

Every name comes from `RunLayout`; every write is atomic (netspec/fileio.py, checkpoint.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from netspec.data.pipeline import Prepared
from netspec.errors import Interrupted
from netspec.ir import Graph
from netspec.run_record import RunLayout, RunMeta
from netspec.version import __version__

from ..weights import weights
from . import checkpoint
from .report import write_csv, write_metrics
from .state import Resumable, RunState, save_state


def run_meta(graph: Graph, data: Prepared, head: str | None, spec_sha256: str) -> RunMeta:
    """What an app needs to use the weights (also exported to ONNX metadata later)."""
    train = data.train
    return RunMeta(
        name=graph.name,
        netspec_version=__version__,
        spec_sha256=spec_sha256,
        task=data.task,
        classes=tuple(data.classes) if data.classes else None,
        input_shape=tuple(graph.input_shape),
        output_shape=tuple(graph.output.shape),
        head=head,
        preprocessing=data.preprocessing,
        # A table's columns, so predict reads rows in the training CSV's own format.
        features=tuple(train.feature_names) if train.feature_names else None,
        table=train.table,
        tokenizer=data.tokenizer,
    )


def nothing_saved(layout: RunLayout) -> bool:
    """A run stopped before its first checkpoint (resuming it is starting it over)."""
    return not layout.last.is_file() and not layout.weights.is_file()


def save_checkpoint(
    layout: RunLayout,
    resumable: Resumable,
    state: RunState,
    spec_sha256: str,
    ranks: dict[str, torch.Tensor] | None,
) -> None:
    """checkpoint/last.safetensors: weights, optimizer, schedule and every RNG after an epoch."""
    save_state(layout.last, resumable, state, spec_sha256, ranks)


def save_history(layout: RunLayout, history: list[dict[str, float]]) -> None:
    write_csv(history, layout.metrics_csv)


def save_model(layout: RunLayout, module: torch.nn.Module, meta: RunMeta) -> None:
    """model.safetensors: the final weights, the record in its header (a weights file alone
    still says what it is)."""
    checkpoint.save(layout.weights, weights(module), {"netspec": meta.to_json()})


def save_metrics(layout: RunLayout, result: dict[str, Any]) -> None:
    write_metrics(result, layout.metrics_json)


def interrupted(run_dir: Path, saved: int, *, final: bool) -> Interrupted:
    """The error of a Ctrl-C: during an epoch, or while the final model was written (`final`);
    `saved` is the last epoch whose checkpoint was written."""
    if final:
        return Interrupted.one(
            f"interrupted while writing the final model; epoch {saved} is saved in {run_dir}",
            hint=f"finish with: netspec train SPEC --out {run_dir} --resume",
        )
    where = f"epoch {saved} is saved in {run_dir}" if saved else "no epoch was completed"
    return Interrupted.one(
        f"interrupted during epoch {saved + 1}; {where}",
        hint=f"continue with: netspec train SPEC --out {run_dir} --resume",
    )
