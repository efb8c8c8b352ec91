"""Datasets that ship inside installed packages, so they work offline with no files."""

from __future__ import annotations

import functools
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
    """The digits (N, 1, 8, 8) float32 and their labels, read once per process (load_digits
    parses a gzipped CSV at each call: ~15 ms, paid again by every in-process tune trial and
    test) and read-only, so that no caller changes them for the next."""
    try:
        # Imported here: scikit-learn is an optional extra and slow to import.
        from sklearn.datasets import load_digits
    except ImportError:
        raise data_error(
            "the builtin 'digits' dataset needs scikit-learn, which is not installed",
            hint="pip install scikit-learn",
        ) from None
    bunch = load_digits()
    x = np.asarray(bunch.images, dtype=np.float32)[:, None, :, :]  # values 0..16
    y = np.asarray(bunch.target, dtype=np.int64)
    for a in (x, y):
        a.flags.writeable = False
    return x, y


def load_builtin(name: Literal["digits"]) -> ArrayData:
    """A dataset bundled with an installed package; only "digits" for now."""
    if name == "digits":
        return _digits()
    raise data_error(
        f"unknown builtin dataset {name!r}{did_you_mean(str(name), BUILTIN_NAMES)}; "
        f"available: {plain(BUILTIN_NAMES)}"
    )
