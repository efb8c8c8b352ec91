"""completions.png: image completion (`complete: lower_half`): given upper half, true and predicted lower."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .plots import save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ROWS = ("given", "true", "predicted")


def completion_images(upper: np.ndarray, true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(3, N, H, W) or (3, N, H, W, 3) images in [0, 1]: the rows of the figure, as data.

    upper: (N, C, h, W) inputs; true and pred: (N, K) lower halves with K = C * h2 * W, in the
    inputs' units. "given" leaves the lower half blank (0.5 grey). Each digit is scaled by the
    range of its true image, so a prediction is shown in the same grey levels as the truth.
    """
    n, c, _, w = upper.shape
    if true.shape != pred.shape or true.shape[1] % (c * w):
        raise ValueError(f"lower halves {true.shape} and {pred.shape} do not fit {upper.shape}")
    h2 = true.shape[1] // (c * w)
    low_true = true.reshape(n, c, h2, w)
    low_pred = pred.reshape(n, c, h2, w)
    full_true = np.concatenate([upper, low_true], axis=2).astype(np.float64)  # (N, C, H, W)
    lo = full_true.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(full_true.max(axis=(1, 2, 3), keepdims=True) - lo, 1e-12)

    def show(lower: np.ndarray | None) -> np.ndarray:
        bottom = np.full((n, c, h2, w), np.nan) if lower is None else lower
        img = (np.concatenate([upper, bottom], axis=2) - lo) / span
        img = np.where(np.isnan(img), 0.5, np.clip(img, 0.0, 1.0))
        return img[:, 0] if c != 3 else np.moveaxis(img, 1, -1)

    return np.stack([show(None), show(low_true), show(low_pred)])


def completions_figure(images: np.ndarray, *, boundary: int, title: str) -> Figure:
    """One row per kind (given, true, predicted), one column per sample; a line at the boundary."""
    from matplotlib.figure import Figure

    rows, n = images.shape[:2]
    # At least as wide as the title (11 pt: ~0.09 in a character): a constrained layout keeps
    # the panels inside the figure, not a title wider than it (cut at both ends for 1 sample).
    width = max(1.3 * n + 1.0, 0.09 * len(title) + 0.4)
    fig = Figure(figsize=(width, 1.4 * rows + 0.6), layout="constrained")
    fig.suptitle(title, fontsize=11)
    axes = fig.subplots(rows, n, squeeze=False)
    for r in range(rows):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(images[r, i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.axhline(boundary - 0.5, color="tab:red", linewidth=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(ROWS[r], fontsize=10)
    return fig


def plot_completions(
    upper: np.ndarray, true: np.ndarray, pred: np.ndarray, path: Path, *, title: str
) -> None:
    """Write the completions figure of `completion_images` to the PNG file `path`, atomically."""
    images = completion_images(upper, true, pred)
    save_png(completions_figure(images, boundary=upper.shape[2], title=title), Path(path))
