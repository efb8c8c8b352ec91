"""Training-curve plots and segmentation prediction grids (input, true, predicted) as PNG files."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from netspec.palette import IGNORED, class_colors, class_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "history_figure",
    "metric_families",
    "plot_history",
    "plot_predictions",
    "predictions_figure",
]

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
    _save_png(history_figure(history, title=title), Path(path))


# --- segmentation predictions: one row per tile ------------------------------------------------

# Label -1 (ignored) in netspec.palette's grey, as [0, 1] floats for imshow.
IGNORED_COLOR = tuple(v / 255 for v in IGNORED)
# The errors column: magenta is in neither palette, so it cannot be read as a class colour.
_CORRECT_COLOR = (0.95, 0.95, 0.95)
_WRONG_COLOR = (1.0, 0.0, 1.0)


def _class_colors(k: int) -> np.ndarray:
    """(k, 3) RGB in [0, 1]: netspec.palette's colours, the ones predicted mask PNGs use."""
    return class_colors(k)[:k].astype(float) / 255


def bands_shown(channels: int) -> str:
    """Which bands `_display` shows, for a title: `bands 1, 2, 3 of 13 as RGB` (1-based)."""
    if channels == 1:
        return "grey"
    if channels == 3:
        return "RGB"
    if channels == 2:
        return "band 1 of 2, grey"
    return f"bands 1, 2, 3 of {channels} as RGB"


def _display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) -> an (H, W) grey or (H, W, 3) RGB image in [0, 1], and the colormap.

    Each band is stretched between its own 2nd and 98th percentiles, as remote-sensing viewers
    do: raw reflectances, 16-bit counts and standardized values all come out visible, and a few
    saturated pixels do not wash the rest out. 3 bands show as RGB, other counts their first 3
    (2 bands: the first, in grey).
    """
    bands = image[:3] if image.shape[0] >= 3 else image[:1]
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


def _row_iou(true: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Mean IoU over the classes present (in the true or the predicted mask); -1 ignored."""
    valid = true >= 0
    t, p = true[valid], pred[valid]
    ious = []
    for c in range(k):
        union = np.count_nonzero((t == c) | (p == c))
        if union:
            ious.append(np.count_nonzero((t == c) & (p == c)) / union)
    return float(np.mean(ious)) if ious else math.nan


def _check_predictions(
    images: np.ndarray, true: np.ndarray, pred: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images, true, pred = np.asarray(images), np.asarray(true), np.asarray(pred)
    if k == 0:
        raise ValueError("classes: give at least one class name")
    if images.ndim != 4:
        raise ValueError(f"images must be (n, C, H, W), got shape {images.shape}")
    n, _, h, w = images.shape
    for name, mask in (("true", true), ("pred", pred)):
        if mask.shape != (n, h, w):
            raise ValueError(
                f"{name} must be (n, H, W) = {(n, h, w)} to match images {images.shape}, "
                f"got {mask.shape}"
            )
        if not np.issubdtype(mask.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices, got {mask.dtype}")
        if mask.size and (mask.min() < -1 or mask.max() >= k):
            raise ValueError(
                f"{name} holds values from {mask.min()} to {mask.max()}; expected class "
                f"indices 0..{k - 1} for the {k} classes, or -1 for ignored pixels"
            )
    if n == 0:
        raise ValueError("no tiles to plot (n = 0)")
    return images, true, pred


def predictions_figure(
    images: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    *,
    classes: Sequence[str],
    title: str,
    errors: bool = True,
) -> Figure:
    """A grid with one row per tile: input, true mask, predicted mask (and errors).

    images: (n, C, H, W), raw or normalized (see `_display`); true, pred: (n, H, W) class
    indices, -1 for ignored pixels (grey). A class has one colour in both mask columns, named
    in a legend below the grid. The predicted column's title gives the row's IoU, the mean over
    the classes present in its true or predicted mask, ignored pixels left out. The "errors"
    column marks wrong pixels in magenta.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ModuleNotFoundError as e:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "plotting predictions needs matplotlib: pip install matplotlib"
        ) from e
    k = len(classes)
    images, true, pred = _check_predictions(images, true, pred, k)
    n, _, h, w = images.shape
    # Lookup tables indexed by label + 1, so that -1 (ignored) is row 0.
    colors = _class_colors(k)
    lut = np.vstack([IGNORED_COLOR, colors])
    columns = [f"input\n{bands_shown(images.shape[1])}", "true mask", "predicted mask"]
    columns += ["errors"] if errors else []
    cell = 2.4 * min(1.6, max(0.6, w / h)), 2.4  # wide tiles get wider cells, within reason
    fig = Figure(figsize=(cell[0] * len(columns) + 0.4, cell[1] * n + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title)
    axes = fig.subplots(n, len(columns), squeeze=False)
    for r in range(n):
        shown, cmap = _display(images[r])
        wrong = (true[r] != pred[r]) & (true[r] >= 0)
        panels = [shown, lut[true[r] + 1], lut[pred[r] + 1]]
        if errors:
            err = np.empty((h, w, 3))
            err[...] = _CORRECT_COLOR
            err[wrong] = _WRONG_COLOR
            err[true[r] < 0] = IGNORED_COLOR
            panels.append(err)
        iou = _row_iou(true[r], pred[r], k)
        titles = list(columns) if r == 0 else [""] * len(columns)
        titles[2] = "\n".join(
            filter(None, [titles[2], "IoU n/a" if math.isnan(iou) else f"IoU {iou:.2f}"])
        )
        if errors:
            valid = np.count_nonzero(true[r] >= 0)
            share = np.count_nonzero(wrong) / valid if valid else math.nan
            titles[3] = "\n".join(
                filter(None, [titles[3], "" if math.isnan(share) else f"{share:.1%} wrong"])
            )
        for c, (ax, panel) in enumerate(zip(axes[r], panels)):
            ax.imshow(
                panel,
                cmap=cmap if c == 0 else None,
                vmin=0,
                vmax=1,
                interpolation="nearest",  # masks are labels: no blending across classes
            )
            ax.set_title(titles[c], fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(f"tile {r}", fontsize=9)
    handles = [
        Patch(facecolor=colors[i], edgecolor="none", label=label)
        for i, label in enumerate(class_labels(classes))
    ]
    if (true < 0).any() or (pred < 0).any():
        handles.append(Patch(facecolor=IGNORED_COLOR, edgecolor="none", label="ignored"))
    if errors:
        handles.append(Patch(facecolor=_WRONG_COLOR, edgecolor="none", label="wrong (errors)"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 6),
        fontsize=9,
        frameon=False,
    )
    return fig


def plot_predictions(
    images: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    path: Path,
    *,
    classes: Sequence[str],
    title: str,
) -> None:
    """Write the prediction grid of `predictions_figure` to the PNG file `path`, atomically."""
    fig = predictions_figure(images, true, pred, classes=classes, title=title)
    _save_png(fig, Path(path))


def _save_png(fig: Figure, path: Path) -> None:
    """savefig to a temp file in the same directory, then os.replace: never a half-written PNG."""
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
