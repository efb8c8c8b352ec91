"""Class labels: the task they make, the mask label that counts nowhere, and the checks made
before anything is built from them (float labels of a classifier, ids rather than classes)."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData

# numpy is imported inside the functions that compute with it: `netspec summary` imports this
# module (through the run record) and starts without numpy (docs/performance.md).

Task = Literal["multiclass", "binary", "regression", "segmentation"]
TASKS: tuple[str, ...] = ("multiclass", "binary", "regression", "segmentation")
# A mask pixel with this label counts in no loss and no metric (unlabelled, or scored elsewhere).
IGNORE = -1

# More classes than this is a column of ids (or hashes), never class indices: refused before
# any per-class list, bincount or one-hot is sized by it.
MAX_CLASSES = 65536
_RENUMBER = "renumber the labels 0..K-1, e.g. with numpy.unique(y, return_inverse=True)"
_CLASSIFIER_LOSSES = ("cross_entropy", "binary_cross_entropy")


def class_count(top: int, where: object) -> int:
    """The number of classes of labels 0..top, refused (naming `where`) when they are ids."""
    if top >= MAX_CLASSES:
        raise data_error(
            f"labels go up to {top}: more than {MAX_CLASSES} classes, so they look like ids, "
            "not class indices 0..K-1",
            None if where is None else str(where),
            hint=_RENUMBER,
        )
    return top + 1


def float_classes(data: ArrayData, head: str | None, loss: str | None) -> ArrayData:
    """Float labels (N,) of a classifier as class indices; regression data otherwise unchanged.

    Arrays and pandas give labels as float64 (0.0, 1.0, ...): with a softmax head or a
    cross-entropy loss they are classes, not regression targets (which crashed the first epoch
    in the loss): class indices for arrays, the distinct values in order for a CSV (as its
    loader names numeric classes). Non-integral or negative values with such a head are an error
    naming the data.
    """
    import numpy as np

    classifier = head == "softmax" or (loss or "").split(" ")[0] in _CLASSIFIER_LOSSES
    y = data.y
    if data.classes is not None or y.ndim != 1 or y.dtype.kind != "f" or not classifier:
        return data
    why = "ends in softmax" if head == "softmax" else f"is trained with {loss}"
    finite = np.isfinite(y)
    odd = y[~finite | (y != np.round(y)) | (y < 0)] if y.size else y
    if odd.size:
        raise data_error(
            f"{data.source}: the labels are floats such as {float(odd[0])!r}, but the network "
            f"{why} (a classifier), which needs class indices 0, 1, 2, ...",
            hint="store class labels as integers 0..K-1, or end the network in a linear output "
            "with loss: mse for regression",
        )
    if data.table is not None:  # a CSV's numeric classes: its distinct values, in order
        values, index = np.unique(y, return_inverse=True)
        names = tuple(str(int(v)) for v in values)
        return replace(data, y=index.astype(np.int64), classes=names)
    top = int(y.max()) if y.size else -1
    k = class_count(top, data.source)
    return replace(data, y=y.astype(np.int64), classes=tuple(str(i) for i in range(k)))


def classes_said(data: ArrayData, shown: int = 5) -> str:
    """`3 classes (a, b, c)`, `1 class (a)`, `0 classes`; with the classes that never occur in
    the labels named: `6 classes (0, 1, 2, 5; 3 and 4 never occur)`."""
    import numpy as np

    names = data.classes or ()
    k = len(names)
    said = f"{k} class{'es' if k != 1 else ''}"
    if not k:
        return said
    present = set(np.unique(data.y[data.y >= 0]).tolist()) if data.y.dtype.kind in "iu" else None
    occur = [n for i, n in enumerate(names) if present is None or i in present]
    absent = [n for i, n in enumerate(names) if present is not None and i not in present]
    listed = ", ".join(occur[:shown]) + (", ..." if len(occur) > shown else "")
    if absent:
        never = ", ".join(absent[:shown]) + (", ..." if len(absent) > shown else "")
        verb = "never occur" if len(absent) > 1 else "never occurs"
        return f"{said} ({listed}; {never} {verb} in the labels)"
    return f"{said} ({listed})"


def aligned(test: ArrayData, classes: tuple[str, ...] | None) -> ArrayData:
    """A separate test set's labels re-indexed into the training data's classes, by name.

    Each file names its classes by what it holds (a test folder without a `cat` subfolder, a
    test CSV without one label): index i of the test file was another class than index i of
    the training file, and the scores were silently wrong. A class unknown to training is
    refused, naming it.
    """
    import numpy as np

    if classes is None or test.classes is None or test.classes == classes or test.y.ndim == 3:
        return test
    unknown = [c for c in test.classes if c not in classes]
    if unknown:
        listed = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        known = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
        raise data_error(
            f"{test.source}: the test data has class{'es' if len(unknown) > 1 else ''} {listed} "
            f"that the training data lacks (it has {known})",
            hint="give test data of the training data's classes",
        )
    lookup = np.asarray([classes.index(c) for c in test.classes], dtype=np.int64)
    return replace(test, y=lookup[test.y], classes=classes)
