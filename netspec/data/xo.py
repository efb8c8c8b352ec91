"""Generated 9x9 images of X and O (the toy convnet example), deterministic for a seed."""

from __future__ import annotations

import numpy as np

from netspec.data.arraydata import ArrayData

XO_CLASSES: tuple[str, ...] = ("O", "X")
XO_SIDE = 9
_SIZES = (5, 7, 9)  # odd glyph sides, so an X has a centre pixel and an O a centre


def _glyph(kind: int, side: int) -> np.ndarray:
    """(side, side) float32 strokes: an O (ring) for kind 0, an X (both diagonals) for kind 1."""
    i, j = np.mgrid[:side, :side]
    if kind == 1:
        return ((i == j) | (i + j == side - 1)).astype(np.float32)
    c = r = (side - 1) / 2
    return (np.abs(np.hypot(i - c, j - c) - r) < 0.6).astype(np.float32)


def make_xo(samples: int, seed: int = 0, noise: float = 0.2) -> ArrayData:
    """`samples` 9x9 grey images, half O and half X (shuffled), uint8 (N, 1, 9, 9).

    Each glyph has a random side (5, 7 or 9 pixels), position, stroke brightness, and 10% of its
    stroke pixels missing; Gaussian noise of std `noise` (in 0..1 units) covers the whole image.
    So one fixed template does not separate the classes and a small convnet has to learn strokes.
    """
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(samples) % 2).astype(np.int64)
    x = np.zeros((samples, XO_SIDE, XO_SIDE), dtype=np.float32)
    sides = rng.choice(_SIZES, size=samples)
    for n in range(samples):
        side = int(sides[n])
        top, left = rng.integers(0, XO_SIDE - side + 1, size=2)
        glyph = _glyph(int(y[n]), side) * rng.uniform(0.6, 1.0)
        glyph *= rng.random((side, side)) >= 0.1  # broken strokes
        x[n, top : top + side, left : left + side] = glyph
    x += rng.normal(0.0, noise, size=x.shape).astype(np.float32)
    pixels = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return ArrayData(
        x=pixels[:, None, :, :],  # (N, 1, 9, 9)
        y=y,
        classes=XO_CLASSES,
        source=f"{samples} generated 9x9 X/O images (seed {seed}, noise {noise})",
    )
