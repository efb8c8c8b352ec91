"""Datasets that ship inside installed packages, so they work offline with no files."""

from __future__ import annotations

from typing import Literal

import numpy as np

from netspec.data._common import data_error, did_you_mean, plain
from netspec.data.arraydata import ArrayData

BUILTIN_NAMES: tuple[str, ...] = ("digits",)


def _digits() -> ArrayData:
    try:
        # Imported here: scikit-learn is an optional extra and slow to import.
        from sklearn.datasets import load_digits
    except ImportError:
        raise data_error(
            "the builtin 'digits' dataset needs scikit-learn, which is not installed",
            hint="pip install scikit-learn",
        ) from None
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)  # (N, 8, 8), values 0..16
    return ArrayData(
        x=images[:, None, :, :],  # (N, 1, 8, 8)
        y=np.asarray(bunch.target, dtype=np.int64),
        classes=tuple(str(d) for d in range(10)),
        # A fact of the data set, not a decision of the user's: no note; the model card records
        # it (raw_range [0, 16]) and specs/quickstart.yaml rescales by 1/16.
        source="scikit-learn's bundled 8x8 handwritten digits (load_digits; pixel values 0..16)",
    )


def load_builtin(name: Literal["digits"]) -> ArrayData:
    """A dataset bundled with an installed package; only "digits" for now."""
    if name == "digits":
        return _digits()
    raise data_error(
        f"unknown builtin dataset {name!r}{did_you_mean(str(name), BUILTIN_NAMES)}; "
        f"available: {plain(BUILTIN_NAMES)}"
    )
