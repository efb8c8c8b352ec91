"""history.png, and what every picture shares: showing an input, writing a PNG, no matplotlib."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from netspec.fileio import save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "bands_shown",
    "display_image",
    "history_figure",
    "matplotlib_missing",
    "metric_families",
    "plot_history",
    "save_png",
]

# Keys of a history row that are coordinates or bookkeeping, not curves: throughput and epoch
# times are machine noise, kept in metrics.csv only.
_NOT_CURVES = frozenset(
    {"epoch", "step", "time", "epoch_time", "seconds", "time_s", "samples_per_s"}
)
_VAL = "val_"


def matplotlib_missing(err: ModuleNotFoundError) -> bool:
    """Whether `err` says matplotlib is absent (optional: the caller notes it and goes on),
    rather than that one of our own imports is broken (a bug, to be raised)."""
    return (err.name or "").split(".")[0] == "matplotlib"


def lr_changes(history: list[dict[str, float]]) -> bool:
    """Whether the learning rate changed during the run (a constant one gets no panel)."""
    lrs = [float(row["lr"]) for row in history if "lr" in row and math.isfinite(row["lr"])]
    return bool(lrs) and max(lrs) - min(lrs) > 1e-9 * max(abs(v) for v in lrs)


def metric_families(history: list[dict[str, float]]) -> list[str]:
    """Subplot names: loss first, then metrics in order of first appearance, lr last (only if
    it changes).

    A family is a key without its "val_" prefix, so "accuracy" and "val_accuracy" share one.
    """
    seen: dict[str, None] = {}
    for row in history:
        for key in row:
            if key in _NOT_CURVES:
                continue
            seen.setdefault(key.removeprefix(_VAL), None)
    families = [f for f in seen if f not in ("loss", "lr")]
    lr = ["lr"] if "lr" in seen and lr_changes(history) else []
    return (["loss"] if "loss" in seen else []) + families + lr


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


def _monitored(
    history: list[dict[str, float]], epoch: int, monitor: str
) -> tuple[str, float] | None:
    """(key, value) of `monitor` at `epoch`; `val_x` falls back to `x` (callbacks.value's rule)."""
    for i, row in enumerate(history):
        if int(row.get("epoch", i + 1)) == epoch:
            for key in (monitor, monitor.removeprefix(_VAL)):
                if key in row:
                    return key, float(row[key])
    return None


def score(v: float) -> str:
    """A metric for a picture: 4 decimals below 1000 (0.9667), whole numbers with thousands
    separators above (a dollar MAE of 45,123, not 45123.4567)."""
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"


def history_figure(
    history: list[dict[str, float]],
    *,
    title: str,
    loss_name: str | None = None,
    best_epoch: int | None = None,
    monitor: str | None = None,
    test: dict[str, float] | None = None,
) -> Figure:
    """One panel per metric family (see `metric_families`): training and validation curves,
    named axes; `best_epoch` (the one `monitor` chose) marked by a dashed line and a star on
    the monitored curve; each `test` score a dotted line, and all of them under the title."""
    try:
        # Figure + the Agg canvas directly, never pyplot: no global backend switch, no figure
        # registry to leak into, safe in a process that already has an interactive pyplot.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as e:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "plotting training curves needs matplotlib: pip install matplotlib", name="matplotlib"
        ) from e
    if not history:
        raise ValueError("cannot plot an empty training history (no epochs)")
    families = metric_families(history)
    if not families:
        raise ValueError(f"nothing to plot in the training history: keys {sorted(history[0])}")
    ncols = 2 if len(families) in (2, 4) else min(3, len(families))  # 2x2 beats 3 + 1
    nrows = math.ceil(len(families) / ncols)
    test = {k: v for k, v in (test or {}).items() if isinstance(v, (int, float))}
    fig = Figure(figsize=(5.2 * ncols, 3.6 * nrows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    if test:
        scores = ", ".join(f"{k.replace('_', ' ')} {score(v)}" for k, v in test.items())
        fig.suptitle(f"{title}\ntest: {scores}")
    else:
        fig.suptitle(title)
    best = _monitored(history, best_epoch, monitor) if best_epoch and monitor else None
    # Markers make a 1-epoch run visible at all and short runs readable; long runs stay clean.
    marker = "o" if len(history) <= 30 else None
    for i, family in enumerate(families):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        _panel(ax, history, family, loss_name, best_epoch, best, test, marker=marker)
    return fig


def _panel(
    ax: Axes,
    history: list[dict[str, float]],
    family: str,
    loss_name: str | None,
    best_epoch: int | None,
    best: tuple[str, float] | None,
    test: dict[str, float],
    *,
    marker: str | None,
) -> None:
    """One metric family's panel of `history_figure`: its curves, the best epoch, the test score."""
    from matplotlib.ticker import MaxNLocator

    epochs = sorted({float(row.get("epoch", i + 1)) for i, row in enumerate(history)})
    pairs = ((family, "training"), (_VAL + family, "validation"))
    if family == "lr":
        pairs = (("lr", "learning rate"),)
    for key, label in pairs:
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, marker=marker, markersize=3, label=label)
    if family == "lr":
        name = "learning rate"
        lrs = [row["lr"] for row in history if row.get("lr", 0) > 0]
        if lrs and max(lrs) > 10 * min(lrs):  # schedules spanning decades read better in log
            ax.set_yscale("log")
    elif family == "loss" and loss_name:
        name = f"loss ({loss_name})"
    else:
        name = family.replace("_", " ")
    ax.set_title(name)
    ax.set_ylabel(loss_name if family == "loss" and loss_name else name)
    ax.set_xlabel("epoch")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="best epoch")
    if best is not None and best[0].removeprefix(_VAL) == family:
        ax.plot(
            [best_epoch],
            [best[1]],
            marker="*",
            markersize=13,
            color="C3",
            linestyle="none",
            label=f"best {best[0]} {score(best[1])} (epoch {best_epoch})",
        )
    if family in test:
        ax.axhline(
            test[family],
            color="C2",
            linestyle=":",
            linewidth=1.5,
            label=f"test {score(test[family])}",
        )
    if epochs[-1] - epochs[0] < 2:
        # One or two epochs: autoscaling would zoom into fractional epochs around them.
        ax.set_xticks(epochs)
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    if family != "lr" or best_epoch:
        ax.legend(fontsize=8)


def plot_history(history: list[dict[str, float]], path: Path, **marks: Any) -> None:
    """Write the training curves of `history` (one dict per epoch) to the PNG file `path`.

    Written atomically, so a reader such as a dashboard refreshing during training never sees
    a half-written image. `marks`: `history_figure`'s keywords (title, best epoch, ...).
    """
    save_png(history_figure(history, **marks), Path(path))


def bands_shown(channels: int, rgb: Sequence[int] | None = None) -> str:
    """Which bands `display_image` shows, for a title: `bands 4, 3, 2 of 13 as RGB` (1-based)."""
    if rgb is not None:
        return f"bands {', '.join(map(str, rgb))} of {channels} as RGB"
    if channels == 1:
        return "grey"
    if channels == 3:
        return "RGB"
    if channels == 2:
        return "band 1 of 2, grey"
    return f"bands 1, 2, 3 of {channels} as RGB"


def display_image(
    image: np.ndarray, rgb: Sequence[int] | None = None
) -> tuple[np.ndarray, str | None]:
    """(C, H, W) -> an (H, W) grey or (H, W, 3) RGB image in [0, 1], and the colormap.

    Each band is stretched between its own 2nd and 98th percentiles, as remote-sensing viewers
    do: raw reflectances, 16-bit counts and standardized values all come out visible, and a few
    saturated pixels do not wash the rest out. `rgb` (band numbers from 1, the spec's
    `data.rgb_bands`) picks the bands shown as red, green and blue; otherwise 3 bands show as
    RGB, other counts their first 3 (2 bands: the first, in grey).
    """
    if rgb is None:
        rgb = (1, 2, 3) if image.shape[0] >= 3 else (1,)
    bands = image[[b - 1 for b in rgb]]
    out = np.zeros(bands.shape, dtype=float)
    for i, band in enumerate(bands.astype(float)):
        finite = np.isfinite(band)
        if not finite.any():
            continue
        lo, hi = np.percentile(band[finite], [2, 98])
        if hi > lo:
            out[i] = np.clip((np.where(finite, band, lo) - lo) / (hi - lo), 0, 1)
    if len(out) == 1:
        return out[0], "gray"
    return np.moveaxis(out, 0, -1), None


def save_png(fig: Figure, path: Path) -> None:
    """savefig through netspec.fileio's atomic write: never a half-written PNG."""
    save_figure(fig, path, "png", dpi=100)
