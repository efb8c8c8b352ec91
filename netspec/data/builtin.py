"""Datasets that ship inside installed packages, so they work offline with no files."""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np

from netspec.data._common import data_error, did_you_mean, plain
from netspec.data.arraydata import ArrayData

BUILTIN_NAMES: tuple[str, ...] = ("digits",)


def _digits() -> ArrayData:
    x, y = _digit_arrays()
    return ArrayData(
        x=x,
        y=y,
        classes=tuple(str(d) for d in range(10)),
        # A fact of the data set, not a decision of the user's: no note; the model card records
        # it (raw_range [0, 16]) and specs/quickstart.yaml rescales by 1/16.
        source="scikit-learn's bundled 8x8 handwritten digits (load_digits; pixel values 0..16)",
    )


@functools.cache
def _digit_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits (N, 1, 8, 8) float32 and their labels, read once per process (parsing the
    gzipped CSV takes ~15 ms, paid again by every in-process tune trial and test) and read-only,
    so that no caller changes them for the next."""
    arrays = _digits_file()
    if arrays is None:
        try:
            # Imported here: scikit-learn is an optional extra and slow to import.
            from sklearn.datasets import load_digits
        except ImportError:
            raise data_error(
                "the builtin 'digits' dataset needs scikit-learn, which is not installed",
                hint="pip install scikit-learn",
            ) from None
        bunch = load_digits()
        arrays = (bunch.images[:, None], bunch.target)
    x, y = arrays[0].astype(np.float32), arrays[1].astype(np.int64)  # values 0..16
    for a in (x, y):
        a.flags.writeable = False
    return x, y


def _digits_file() -> tuple[np.ndarray, np.ndarray] | None:
    """The digits read from the file scikit-learn ships them in (datasets/data/digits.csv.gz,
    which load_digits parses: 64 pixels and the label a row), found without importing
    scikit-learn: its import (SciPy included) took ~0.9 s of a ~10 s quickstart run. None where
    the file is missing or not as load_digits reads it: load_digits then reads it, or says."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec and spec.submodule_search_locations) or ():
        try:
            with gzip.open(Path(root) / "datasets" / "data" / "digits.csv.gz", "rt") as f:
                table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
        except (OSError, ValueError, EOFError):
            continue
        pixels, labels = table[:, :-1], table[:, -1]
        if table.shape != (1797, 65) or set(labels.tolist()) != set(range(10)):
            continue
        if pixels.min() >= 0 and pixels.max() <= 16:
            return pixels.reshape(-1, 1, 8, 8), labels
    return None


def load_builtin(name: Literal["digits"]) -> ArrayData:
    """A dataset bundled with an installed package; only "digits" for now."""
    if name == "digits":
        return _digits()
    raise data_error(
        f"unknown builtin dataset {name!r}{did_you_mean(str(name), BUILTIN_NAMES)}; "
        f"available: {plain(BUILTIN_NAMES)}"
    )
