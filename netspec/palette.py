"""Segmentation class colours and legend labels: one palette for predictions.png and predicted masks."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np

__all__ = ["IGNORED", "class_colors", "class_label", "class_labels", "mask_palette"]

# matplotlib's qualitative tab10 and tab20, as 8-bit RGB: written out so that `netspec predict`
# (onnxruntime, no matplotlib) colours its masks exactly as training's predictions.png does.
_TAB10 = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip
_TAB20 = (
    (31, 119, 180), (174, 199, 232), (255, 127, 14), (255, 187, 120), (44, 160, 44),
    (152, 223, 138), (214, 39, 40), (255, 152, 150), (148, 103, 189), (197, 176, 213),
    (140, 86, 75), (196, 156, 148), (227, 119, 194), (247, 182, 210), (127, 127, 127),
    (199, 199, 199), (188, 189, 34), (219, 219, 141), (23, 190, 207), (158, 218, 229),
)  # fmt: skip
# Ignored pixels (label -1): a dark neutral grey, unlike every tab10/tab20 colour (their greys
# are 127 and 199).
IGNORED: tuple[int, int, int] = (77, 77, 77)


def class_colors(k: int) -> np.ndarray:
    """(k, 3) uint8 RGB of k classes: tab10 up to 10, tab20 up to 20, evenly spread hues beyond.

    A single class (a one-channel sigmoid mask) is coloured as two, background and foreground.
    """
    if k < 1:
        raise ValueError(f"class_colors: expected at least one class, got {k}")
    if k <= 10:
        return np.asarray(_TAB10[: max(k, 2)], dtype=np.uint8)
    if k <= 20:
        return np.asarray(_TAB20[:k], dtype=np.uint8)
    hues = [colorsys.hsv_to_rgb(i / k, 0.75, 0.9) for i in range(k)]
    return np.asarray(np.round(np.asarray(hues) * 255), dtype=np.uint8)


def mask_palette(k: int) -> list[int]:
    """A PIL palette (768 values) whose entry i is class i's colour; entries past k are black."""
    colors = class_colors(k)
    flat = np.zeros((256, 3), dtype=np.uint8)
    flat[: min(len(colors), 256)] = colors[:256]
    return [int(v) for v in flat.ravel()]


def class_label(name: str) -> str:
    """A class as a legend names it: a bare number is a raw mask value (no `classes:` given)."""
    return f"mask value {name}" if name.lstrip("-").isdigit() else name


def class_labels(names: Sequence[str]) -> list[str]:
    return [class_label(n) for n in names]
