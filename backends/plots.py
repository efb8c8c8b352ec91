"""Training-curve plots (loss and metrics per epoch, training next to validation) as PNG files."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["history_figure", "metric_families", "plot_history"]

# Keys of a history row that are coordinates or bookkeeping, not curves.
_NOT_CURVES = frozenset({"epoch", "step", "time", "epoch_time", "seconds"})
_VAL = "val_"


def metric_families(history: list[dict[str, float]]) -> list[str]:
    """Subplot names: loss first, then metrics in order of first appearance, lr last.

    A family is a key without its "val_" prefix, so "accuracy" and "val_accuracy" share one.
    """
    seen: dict[str, None] = {}
    for row in history:
        for key in row:
            if key in _NOT_CURVES:
                continue
            seen.setdefault(key.removeprefix(_VAL), None)
    families = [f for f in seen if f not in ("loss", "lr")]
    return (["loss"] if "loss" in seen else []) + families + (["lr"] if "lr" in seen else [])


def _series(history: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) for the rows that have `key`; non-finite values become gaps (NaN)."""
    xs: list[float] = []
    ys: list[float] = []
    for i, row in enumerate(history):
        if key in row:
            xs.append(float(row.get("epoch", i + 1)))
            value = float(row[key])
            ys.append(value if math.isfinite(value) else math.nan)
    return xs, ys


def history_figure(history: list[dict[str, float]], *, title: str) -> Figure:
    """A matplotlib Figure with one subplot per metric family (see `metric_families`)."""
    try:
        # Figure + the Agg canvas directly, never pyplot: no global backend switch, no figure
        # registry to leak into, safe in a process that already has an interactive pyplot.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ModuleNotFoundError as e:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "plotting training curves needs matplotlib: pip install matplotlib"
        ) from e
    if not history:
        raise ValueError("cannot plot an empty training history (no epochs)")
    families = metric_families(history)
    if not families:
        raise ValueError(f"nothing to plot in the training history: keys {sorted(history[0])}")
    ncols = 2 if len(families) == 4 else min(3, len(families))  # 2x2 beats 3 + 1
    nrows = math.ceil(len(families) / ncols)
    fig = Figure(figsize=(4.8 * ncols, 3.4 * nrows + 0.5), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title)
    # Markers make a 1-epoch run visible at all and short runs readable; long runs stay clean.
    marker = "o" if len(history) <= 30 else None
    epochs = sorted({float(row.get("epoch", i + 1)) for i, row in enumerate(history)})
    for i, family in enumerate(families):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for key, label in ((family, "training"), (_VAL + family, "validation")):
            xs, ys = _series(history, key)
            if xs:
                ax.plot(xs, ys, marker=marker, markersize=3, label=label)
        if family == "lr":
            label = "learning rate"
            lrs = [row["lr"] for row in history if row.get("lr", 0) > 0]
            if lrs and max(lrs) > 10 * min(lrs):  # schedules spanning decades read better in log
                ax.set_yscale("log")
        else:
            label = family.replace("_", " ")
        ax.set_title(label)
        ax.set_xlabel("epoch")
        if epochs[-1] - epochs[0] < 2:
            # One or two epochs: autoscaling would zoom into fractional epochs around them.
            ax.set_xticks(epochs)
            ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if family != "lr":
            ax.legend()
    return fig


def plot_history(history: list[dict[str, float]], path: Path, *, title: str) -> None:
    """Write the training curves of `history` (one dict per epoch) to the PNG file `path`.

    Written atomically (a temp file in the same directory, then os.replace), so a reader such
    as a dashboard refreshing during training never sees a half-written image.
    """
    path = Path(path)
    fig = history_figure(history, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a plot is an ordinary output file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
