"""Generated segmentation scenes: circles, squares and triangles with per-class band signatures."""

from __future__ import annotations

import numpy as np

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData

SHAPE_CLASSES: tuple[str, ...] = ("background", "circle", "square", "triangle")
# Fixed, not derived from `seed`: train and test sets (drawn with different seeds) must agree
# on what each class looks like.
_SIGNATURE_SEED = 0x5EED5
_NOISE_STD = 20.0  # per pixel, comparable to the signature gaps so colour alone is unreliable
_TEXTURE_STD = 10.0  # smooth per-band shading over the whole scene, like uneven illumination
_GRID = 5  # texture control points per side


def class_signatures(bands: int) -> np.ndarray:
    """(4, bands) float32: the mean value of each class in each band (before texture and noise).

    Band b is drawn from its own generator, so it is the same whatever `bands` is. Shapes
    differ from the background by 18-32 grey levels in band 0; in later bands each shape class
    matches the background 30% of the time, so some bands alone cannot tell them apart.
    """
    sig = np.empty((len(SHAPE_CLASSES), bands), dtype=np.float32)
    for b in range(bands):
        g = np.random.default_rng([_SIGNATURE_SEED, b])
        base = g.uniform(85.0, 170.0)
        offsets = g.choice([-1.0, 1.0], size=3) * g.uniform(18.0, 32.0, size=3)
        if b > 0:
            offsets[g.random(3) < 0.3] = 0.0
        sig[0, b] = base
        sig[1:, b] = base + offsets
    return sig


def _interp_matrix(n: int) -> np.ndarray:
    """(n, _GRID) weights that linearly interpolate _GRID control points onto n pixels."""
    pos = np.linspace(0.0, _GRID - 1.0, n)
    return np.stack([np.interp(pos, np.arange(_GRID), e) for e in np.eye(_GRID)], axis=1)


def _masks(rng: np.random.Generator, samples: int, h: int, w: int) -> np.ndarray:
    """(N, H, W) int64 class maps; later shapes are drawn over earlier ones."""
    counts = rng.integers(2, 7, size=samples)
    total = int(counts.sum())
    kind = rng.integers(1, 4, size=total)
    radius = rng.uniform(0.06, 0.20, size=total) * min(h, w)
    cy = rng.uniform(radius, h - radius)
    cx = rng.uniform(radius, w - radius)
    theta = rng.uniform(0.0, 2.0 * np.pi, size=total)
    # A triangle's circumradius: 1.6 r gives about the area of a circle of radius r.
    reach = np.where(kind == 1, radius, np.where(kind == 2, radius * np.sqrt(2.0), radius * 1.6))
    rows = np.arange(h, dtype=np.float32)[:, None] + 0.5  # pixel centres
    cols = np.arange(w, dtype=np.float32)[None, :] + 0.5
    masks = np.zeros((samples, h, w), dtype=np.int64)
    scene = np.repeat(np.arange(samples), counts)
    for i in range(total):
        y0, y1 = max(0, int(cy[i] - reach[i])), min(h, int(cy[i] + reach[i]) + 2)
        x0, x1 = max(0, int(cx[i] - reach[i])), min(w, int(cx[i] + reach[i]) + 2)
        dy, dx = rows[y0:y1] - cy[i], cols[:, x0:x1] - cx[i]
        r = radius[i]
        if kind[i] == 1:
            inside = dx * dx + dy * dy <= r * r
        elif kind[i] == 2:
            c, s = np.cos(theta[i]), np.sin(theta[i])
            inside = (np.abs(c * dx + s * dy) <= r) & (np.abs(c * dy - s * dx) <= r)
        else:
            # Equilateral triangle: three half-planes at the inradius (half the circumradius).
            inside = np.ones((y1 - y0, x1 - x0), dtype=bool)
            for k in range(3):
                a = theta[i] + 2.0 * np.pi * k / 3.0
                inside &= np.cos(a) * dx + np.sin(a) * dy <= 0.8 * r
        masks[scene[i], y0:y1, x0:x1][inside] = kind[i]
    return masks


def make_shapes(
    samples: int = 400, size: tuple[int, int] = (64, 64), bands: int = 3, seed: int = 0
) -> ArrayData:
    """`samples` scenes of (height, width) = size with `bands` uint8 bands and exact masks.

    Each scene holds 2-6 circles, squares and triangles (radius 6-20% of the smaller side,
    random position and rotation) over a smoothly shaded background with per-pixel noise.
    x: (N, bands, H, W) uint8; y: (N, H, W) int64 in 0..3, see SHAPE_CLASSES.
    """
    if not (isinstance(samples, (int, np.integer)) and not isinstance(samples, bool)) or (
        samples < 1
    ):
        raise data_error(f"samples must be a positive integer, got {samples!r}")
    if not (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        and min(size) >= 8
    ):
        raise data_error(f"size must be [height, width], integers of 8 or more, got {size!r}")
    if not (isinstance(bands, (int, np.integer)) and not isinstance(bands, bool)) or bands < 1:
        raise data_error(f"bands must be a positive integer, got {bands!r}")
    h, w = int(size[0]), int(size[1])
    shape_rng, texture_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(3)
    )
    y = _masks(shape_rng, int(samples), h, w)
    sig_t = class_signatures(int(bands)).T.copy()  # (bands, classes) for the gather below
    up_rows, up_cols = _interp_matrix(h).astype(np.float32), _interp_matrix(w).astype(np.float32)
    grids = texture_rng.standard_normal((int(samples), int(bands), _GRID, _GRID), np.float32)
    # Noise is cut from one long bank at random offsets: drawing every pixel of every scene
    # costs several times more, and a repeated (shifted) noise pattern carries no class signal.
    hw = h * w
    bank = noise_rng.standard_normal(max(1 << 20, 4 * hw), dtype=np.float32) * _NOISE_STD
    offsets = noise_rng.integers(0, bank.size - hw + 1, size=(int(samples), int(bands)))
    x = np.empty((int(samples), int(bands), h, w), dtype=np.uint8)
    for i in range(int(samples)):
        img = np.take(sig_t, y[i], axis=1)  # (bands, H, W): each pixel's class signature
        img += up_rows @ (grids[i] * _TEXTURE_STD) @ up_cols.T
        for b, start in enumerate(offsets[i]):
            img[b] += bank[start : start + hw].reshape(h, w)
        np.clip(img, 0.0, 255.0, out=img)
        x[i] = np.rint(img, out=img)
    return ArrayData(
        x=x, y=y, classes=SHAPE_CLASSES, source="generated shapes (netspec.data.shape_scenes)"
    )
