"""Per-channel and per-target mean and standard deviation, for normalisation."""

from __future__ import annotations

from typing import Any

import numpy as np

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData
from netspec.data.stream import chunks, read_chunks


def dataset_stats(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per channel (axis 1) over all other axes, float64, population std."""
    mean, std, _, _ = channel_stats(x)
    return mean, std


def channel_stats(
    x: Any, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, std, min, max) per channel (axis 1) of x * scale over all other axes, float64,
    population std.

    Two chunked passes (mean and extremes, then squared deviations) so a large set never needs
    a full float64 copy, large values do not lose precision, and a streamed split (stream.Lazy)
    is decoded a chunk at a time.
    """
    if x.ndim < 2 or x.shape[0] == 0:
        raise data_error(
            f"cannot compute channel statistics of an array of shape {tuple(x.shape)}; "
            "expected (N, C, ...) with N > 0"
        )
    axes = (0, *range(2, x.ndim))
    per_channel = x.size // x.shape[1]
    total = np.zeros(x.shape[1], dtype=np.float64)
    lo = np.full(x.shape[1], np.inf)
    hi = np.full(x.shape[1], -np.inf)
    parts = chunks(x)
    for raw in read_chunks(x, parts):
        c = raw.astype(np.float64) * scale
        total += c.sum(axis=axes)
        lo, hi = np.minimum(lo, c.min(axis=axes)), np.maximum(hi, c.max(axis=axes))
    mean = total / per_channel
    shape = (1, -1) + (1,) * (x.ndim - 2)  # broadcast the mean over (N, C, H, W)
    sq = np.zeros(x.shape[1], dtype=np.float64)
    for raw in read_chunks(x, parts):
        dev = raw.astype(np.float64) * scale - mean.reshape(shape)
        sq += np.square(dev).sum(axis=axes)
    return mean, np.sqrt(sq / per_channel), lo, hi


def target_stats(y: np.ndarray) -> dict[str, tuple[float, ...]]:
    """Mean and std of each regression target over the training split (std 1 when constant)."""
    y = y.astype(np.float64).reshape(len(y), -1)  # (N, K)
    std = y.std(axis=0)
    std[y.max(axis=0) == y.min(axis=0)] = 1.0
    return {
        "target_mean": tuple(float(v) for v in y.mean(axis=0)),
        "target_std": tuple(float(v) for v in std),
    }


def channel_names(data: ArrayData, index: np.ndarray) -> str:
    """Names of the channels at `index`: a table's feature names, else `channel i`."""
    names = data.feature_names or tuple(f"channel {i}" for i in range(data.x.shape[1]))
    shown = ", ".join(names[i] for i in index[:5])
    return shown + (f", ... ({len(index)} in all)" if len(index) > 5 else "")
