"""Classification report pictures: confusion_matrix.png, mistakes.png and roc.png (matplotlib, Agg)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from netspec.run_record import RunLayout

from .plots import bands_shown, display_image, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "confusion_figure",
    "mistakes_figure",
    "plot_class_report",
    "report_pictures",
    "roc_figure",
]

# Cell numbers stop being readable beyond this many classes: the colours alone tell then.
_ANNOTATE_UP_TO = 25


def _figure(size: tuple[float, float], *, constrained: bool = True) -> Figure:
    # Figure + the Agg canvas directly, never pyplot (see plots.history_figure).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def confusion_figure(cm: np.ndarray, classes: Sequence[str], *, title: str) -> Figure:
    """Two panels: the counts, and each true class's row as shares (rows sum to 100%)."""
    cm = np.asarray(cm, dtype=np.int64)
    k = len(classes)
    rows = cm.sum(axis=1, keepdims=True)
    shares = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    side = min(12.0, max(3.6, 0.55 * k + 1.8))
    fig = _figure((2 * side + 0.6, side + 0.8))
    fig.suptitle(title)
    font = 9 if k <= 12 else 7
    for i, (values, name) in enumerate(
        # Two lines: one line of this title was wider than its panel for 3 classes (iris).
        ((cm, "counts"), (shares, "share of each true class\n(rows sum to 100%)"))
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        top = values.max() if values.size and values.max() > 0 else 1
        ax.imshow(values, cmap="Blues", vmin=0, vmax=top, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_xticks(range(k), [str(c) for c in classes], fontsize=font)
        ax.set_yticks(range(k), [str(c) for c in classes], fontsize=font)
        if max((len(str(c)) for c in classes), default=0) > 3:
            ax.tick_params(axis="x", labelrotation=45)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
        if k <= _ANNOTATE_UP_TO:
            for (r, c), v in np.ndenumerate(values):
                text = f"{v:d}" if values is cm else f"{100 * v:.0f}%"
                if values is not cm and v == 0:
                    text = ""  # an empty cell reads faster than a column of 0%
                ax.text(
                    c,
                    r,
                    text,
                    ha="center",
                    va="center",
                    fontsize=font,
                    color="white" if v > top / 2 else "black",
                    in_layout=False,  # inside its cell: measuring it for the layout is wasted
                )
    return fig


def mistakes_figure(
    images: np.ndarray,
    mistakes: Sequence[tuple[int, int, float]],
    classes: Sequence[str],
    *,
    title: str,
    rgb: Sequence[int] | None = None,
) -> Figure:
    """A grid of wrongly predicted images, the most confident first: true and predicted class
    and the predicted class's probability over each. images: (n, C, H, W) raw; `rgb`: the
    bands shown (see plots.display_image), named in the title for multi-band images."""
    n = len(mistakes)
    if n == 0:
        fig = _figure((5, 1.6))
        fig.suptitle(title)
        fig.text(0.5, 0.4, "no wrong predictions", ha="center", va="center", fontsize=12)
        return fig
    cols = min(8, n)
    rows = math.ceil(n / cols)
    titles = [
        f"true: {classes[true]}\npred: {classes[pred]} ({100 * confidence:.0f}%)"
        for true, pred, confidence in mistakes
    ]
    channels = np.asarray(images).shape[1]
    shown = f" (input {bands_shown(channels, rgb)})" if rgb is not None or channels > 3 else ""
    heading = f"{title}: most confident mistakes{shown}"
    # Fixed margins, in inches: a constrained layout would draw the grid twice, half of its time.
    # A tile is as wide as its widest title line (8 pt: ~0.065 in a character), 1.6 in at least,
    # and its title takes 0.42 in above it; the figure's title takes the top 0.7 in, and the
    # figure is as wide as that title (~0.11 in a character), the grid centred in it.
    chars = max(len(line) for t in titles for line in t.splitlines())
    tile = max(1.6, 0.065 * chars + 0.1)
    grid = (tile + 0.1) * cols
    width, height = max(grid + 0.3, 0.11 * len(heading) + 0.4), 1.95 * rows + 0.7
    side = (width - grid) / 2 + 0.05
    fig = _figure((width, height), constrained=False)
    fig.subplots_adjust(
        left=side / width,
        right=1 - side / width,
        top=1 - 0.7 / height,
        bottom=0.08 / height,
        wspace=0.1 / tile,
        hspace=0.42 / 1.45,
    )
    fig.suptitle(heading, y=1 - 0.12 / height, va="top")
    for i, name in enumerate(titles):
        ax = fig.add_subplot(rows, cols, i + 1)
        picture, cmap = display_image(np.asarray(images[i]), rgb)
        ax.imshow(picture, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def roc_figure(report: dict[str, Any], classes: Sequence[str], *, title: str) -> Figure:
    """The ROC curve of class 1 with its AUC, the operating point of the threshold predictions
    use, and the threshold that maximizes TPR - FPR (Youden's J) for comparison."""
    roc = report["roc"]
    fpr, tpr = np.asarray(roc["fpr"]), np.asarray(roc["tpr"])
    cm = np.asarray(report["confusion"])
    fig = _figure((5.6, 5.4))
    fig.suptitle(title)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(fpr, tpr, label=f"ROC curve (AUC {roc['auc']:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    # The operating point: the confusion matrix of the predictions at the threshold.
    negatives, positives = cm[0].sum(), cm[1].sum()
    op_fpr = cm[0, 1] / negatives if negatives else 0.0
    op_tpr = cm[1, 1] / positives if positives else 0.0
    ax.plot(
        [op_fpr],
        [op_tpr],
        "o",
        color="C3",
        markersize=8,
        label=f"threshold {roc['threshold']:g} (used): FPR {op_fpr:.2f}, TPR {op_tpr:.2f}",
    )
    j = int(np.argmax(tpr - fpr))
    best = roc["thresholds"][j]
    if best is not None:
        ax.plot(
            [fpr[j]],
            [tpr[j]],
            "s",
            color="C2",
            markersize=7,
            fillstyle="none",
            label=f"threshold {best:.3g} (max TPR - FPR)",
        )
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(f"false positive rate ({classes[0]} called {classes[1]})")
    ax.set_ylabel(f"true positive rate (recall of {classes[1]})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def report_pictures(report: dict[str, Any], *, images: bool) -> list[str]:
    """The pictures `plot_class_report` draws: mistakes.png for image inputs only, roc.png
    for two classes only."""
    names = [RunLayout.CONFUSION_PNG]
    names += [RunLayout.MISTAKES_PNG] if images else []
    names += [RunLayout.ROC_PNG] if "roc" in report else []
    return names


def plot_class_report(
    out_dir: Path,
    report: dict[str, Any],
    *,
    classes: Sequence[str],
    title: str,
    images: np.ndarray | None,
    mistakes: Sequence[tuple[int, int, float]],
    rgb: Sequence[int] | None = None,
) -> list[Path]:
    """Write `report_pictures` into `out_dir`; returns their paths. images: (n, C, H, W) raw
    images of the `mistakes` (true, predicted, confidence), or None for tabular inputs."""
    out_dir = Path(out_dir)
    written = []
    for name in report_pictures(report, images=images is not None):
        if name == RunLayout.CONFUSION_PNG:
            fig = confusion_figure(report["confusion"], classes, title=title)
        elif name == RunLayout.MISTAKES_PNG:
            assert images is not None
            fig = mistakes_figure(images, mistakes, classes, title=title, rgb=rgb)
        else:
            fig = roc_figure(report, classes, title=title)
        save_png(fig, out_dir / name)
        written.append(out_dir / name)
    return written
