"""Segmentation prediction grids (predictions.png): input, true mask, predicted mask, errors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from netspec.palette import IGNORED, class_colors, class_labels

from .plots import bands_shown, display_image, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["IGNORED_COLOR", "plot_predictions", "predictions_figure"]

# --- segmentation predictions: one row per tile ------------------------------------------------

# Label -1 (ignored) in netspec.palette's grey, as [0, 1] floats for imshow.
IGNORED_COLOR = tuple(v / 255 for v in IGNORED)
# The errors column: magenta is in neither palette, so it cannot be read as a class colour.
_CORRECT_COLOR = (0.95, 0.95, 0.95)
_WRONG_COLOR = (1.0, 0.0, 1.0)


def _class_colors(k: int) -> np.ndarray:
    """(k, 3) RGB in [0, 1]: netspec.palette's colours, the ones predicted mask PNGs use."""
    return class_colors(k)[:k].astype(float) / 255


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
    rgb: Sequence[int] | None = None,
) -> Figure:
    """A grid with one row per tile: input, true mask, predicted mask (and errors).

    images: (n, C, H, W), raw or normalized (see `display_image`); true, pred: (n, H, W) class
    indices, -1 for ignored pixels (grey). A class has one colour in both mask columns, named
    in a legend below the grid. The predicted column's title gives the row's IoU, the mean over
    the classes present in its true or predicted mask, ignored pixels left out. The "errors"
    column marks wrong pixels in magenta.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as e:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "plotting predictions needs matplotlib: pip install matplotlib", name="matplotlib"
        ) from e
    k = len(classes)
    images, true, pred = _check_predictions(images, true, pred, k)
    n, _, h, w = images.shape
    # Lookup tables indexed by label + 1, so that -1 (ignored) is row 0.
    colors = _class_colors(k)
    lut = np.vstack([IGNORED_COLOR, colors])
    columns = [f"input\n{bands_shown(images.shape[1], rgb)}", "true mask", "predicted mask"]
    columns += ["errors"] if errors else []
    cell = 2.4 * min(1.6, max(0.6, w / h)), 2.4  # wide tiles get wider cells, within reason
    fig = Figure(figsize=(cell[0] * len(columns) + 0.4, cell[1] * n + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title)
    axes = fig.subplots(n, len(columns), squeeze=False)
    for r in range(n):
        shown, cmap = display_image(images[r], rgb)
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
    _legend(fig, colors, classes, ignored=bool((true < 0).any() or (pred < 0).any()), errors=errors)
    return fig


def _legend(
    fig: Figure, colors: np.ndarray, classes: Sequence[str], *, ignored: bool, errors: bool
) -> None:
    """The legend below the grid: each class's colour, then ignored pixels and errors if shown."""
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=colors[i], edgecolor="none", label=label)
        for i, label in enumerate(class_labels(classes))
    ]
    if ignored:
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


def plot_predictions(
    images: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    path: Path,
    *,
    classes: Sequence[str],
    title: str,
    rgb: Sequence[int] | None = None,
) -> None:
    """Write the prediction grid of `predictions_figure` to the PNG file `path`, atomically."""
    fig = predictions_figure(images, true, pred, classes=classes, title=title, rgb=rgb)
    save_png(fig, Path(path))
