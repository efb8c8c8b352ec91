"""What a run tells as it goes and at the end: the epoch line, the progress bar, metrics.json and metrics.csv."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspec.fileio import write_text
from netspec.jsonio import dumps

from .state import jsonable

# Columns of a history row that are not scores (left out of the epoch line's scores).
_TIMING = ("epoch", "time_s", "samples_per_s", "lr")


def epoch_line(row: dict[str, float], epochs: int) -> str:
    """`epoch 3/10  loss 0.1234  val_accuracy 0.9800  lr 1.00e-03  1.2s (850 samples/s)`."""
    parts = [f"epoch {int(row['epoch'])}/{epochs}"]
    parts += [f"{k} {v:.4f}" for k, v in row.items() if k not in _TIMING]
    parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{row['time_s']:.1f}s ({row['samples_per_s']:,.0f} samples/s)")
    return "  ".join(parts)


def per_class_line(table: dict[str, dict[str, float | None]]) -> str:
    return "  ".join(
        f"{name} iou {_num(v.get('iou'))} dice {_num(v.get('dice'))}" for name, v in table.items()
    )


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def progress_bar(epoch: int, epochs: int, steps: int) -> Callable[[int | None, float, float], None]:
    """A live bar for one epoch: call it with (step, loss, samples/s), and with None to close it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn(f"epoch {epoch}/{epochs}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        transient=True,
    )
    task = progress.add_task("train", total=steps, info="")
    progress.start()

    def update(step: int | None, loss: float, speed: float) -> None:
        if step is None:
            progress.stop()
            return
        progress.update(task, completed=step, info=f"loss {loss:.4f}  {speed:,.0f} samples/s")

    return update


def write_csv(history: list[dict[str, float]], path: Path) -> None:
    """metrics.csv: one row per epoch, a column for every value any epoch recorded."""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    write_text(path, buf.getvalue())


def write_metrics(result: dict[str, Any], path: Path) -> None:
    """metrics.json: the run's result, strict JSON."""
    # NaN and infinities become null: metrics.json stays strict JSON after a diverged run.
    write_text(path, dumps(result, default=jsonable))
