"""Segmentation masks: raw mask values to per-pixel class indices, with the classes checked.

Over 400 lines: the class rules (mask_values, 0/255, class indices, one-hot) and their located
errors are one decision, made alike for masks in memory (`mask_indices`) and for streamed masks
known by their values and counts (`mask_map`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from netspec.data._common import data_error, plain

MASK_FOLDER_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
_BINARY_NAMES = ("background", "foreground")
# Beyond this, "values are class indices" is almost surely wrong (e.g. 16-bit ids).
_MAX_CLASSES = 1024


def _few(names: Sequence[object], limit: int = 5) -> str:
    """Up to `limit` items for a message, then how many more there are."""
    shown = plain(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _int_option(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def checked_classes(
    classes: Sequence[str] | None, where: str | Path | None = None
) -> tuple[str, ...] | None:
    """`classes` as a tuple after checking it names at least two distinct classes."""
    if classes is None:
        return None
    if isinstance(classes, str):
        raise data_error(f"classes must be a list of names, got the string {classes!r}", where)
    names = tuple(classes)
    if len(names) < 2:
        raise data_error(
            f"classes has {len(names)} name{'' if len(names) == 1 else 's'} "
            f"({plain(names) or 'none'}); expected at least 2 (e.g. [background, object])",
            where,
        )
    if any(not isinstance(n, str) or not n for n in names):
        raise data_error(f"classes must be non-empty strings, got {list(names)!r}", where)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise data_error(f"classes names {plain(repeated)} more than once; expected distinct names")
    return names


def _checked_mask_values(values: Sequence[int], where: str | Path | None) -> list[int]:
    if isinstance(values, (str, bytes)) or not all(_int_option(v) for v in values):
        raise data_error(f"mask_values must be a list of integers, got {values!r}", where)
    out = [int(v) for v in values]
    if len(out) < 2:
        raise data_error(
            f"mask_values has {len(out)} value(s); expected one value per class, at least 2", where
        )
    repeated = sorted({v for v in out if out.count(v) > 1})
    if repeated:
        raise data_error(
            f"mask_values lists {plain(repeated)} more than once; expected one value per class",
            where,
        )
    return out


def value_counts(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of an integer or bool array, sorted, as int64, and how many pixels
    hold each (one streamed mask's, merged over all by `merge_counts`)."""
    if y.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if y.dtype == np.bool_:
        y = y.view(np.uint8)
    lo, hi = int(y.min()), int(y.max())
    # bincount is several times faster than np.unique's sort on large masks.
    if lo >= 0 and hi < 1 << 16:
        counts = np.bincount(y.ravel().astype(np.intp, copy=False))
        present = np.flatnonzero(counts)
        return present.astype(np.int64), counts[present].astype(np.int64)
    if hi - lo < 1 << 16:
        counts = np.bincount(y.ravel().astype(np.int64) - lo)
        present = np.flatnonzero(counts)
        return present.astype(np.int64) + lo, counts[present].astype(np.int64)
    values, counts = np.unique(y, return_counts=True)
    return values.astype(np.int64), counts.astype(np.int64)


def merge_counts(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Two `value_counts` results as one: the values of both, their counts added."""
    values, where = np.unique(np.concatenate([a[0], b[0]]), return_inverse=True)
    counts = np.zeros(len(values), dtype=np.int64)
    np.add.at(counts, where, np.concatenate([a[1], b[1]]))
    return values, counts


def _apply(y: np.ndarray, values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Replace each raw value values[i] in y by targets[i] (every value of y is in `values`)."""
    if y.dtype == np.bool_:
        y = y.view(np.uint8)
    lo, hi = int(values[0]), int(values[-1])
    if lo >= 0 and hi < 1 << 16:
        lut = np.full(hi + 1, -1, dtype=np.int64)
        lut[values] = targets
        return lut[y]
    if hi - lo < 1 << 16:
        lut = np.full(hi - lo + 1, -1, dtype=np.int64)
        lut[values - lo] = targets
        return lut[y.astype(np.int64) - lo]
    return targets[np.searchsorted(values, y)]


def _check_hw(hw: tuple[int, int] | None, got: tuple[int, ...], where: str | Path | None) -> None:
    if hw is not None and tuple(got) != tuple(hw):
        raise data_error(
            f"masks are {got[0]}x{got[1]} (height x width) but the images are "
            f"{hw[0]}x{hw[1]}; expected masks the size of their images",
            where,
        )


def _one_hot(
    y: np.ndarray, names: tuple[str, ...] | None, where: str | Path | None
) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """(N, K, H, W) masks with one 0/1 channel per class -> (N, H, W) indices."""
    k = y.shape[1]
    if y.dtype == np.bool_:
        on = y
    elif np.issubdtype(y.dtype, np.integer) or y.dtype.kind == "f":
        on = y != 0
        bad = on & (y != 1)  # NaN lands here too: it is neither 0 nor 1
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            raise data_error(
                f"y has shape {tuple(y.shape)}, one channel per class, but holds {n_bad} values "
                f"other than 0 and 1 (e.g. {y[bad][0].item()}); expected 0/1 class channels",
                where,
                hint="threshold soft masks first, or store (N, H, W) class values instead",
            )
    else:
        raise data_error(f"masks have dtype {y.dtype}; expected integers, booleans or 0/1", where)
    if names is not None and len(names) != k:
        raise data_error(
            f"classes has {len(names)} names ({plain(names)}) but y has {k} class channels "
            f"(shape {tuple(y.shape)}); expected one name per channel",
            where,
        )
    count = on.sum(axis=1, dtype=np.int32)
    multi = count > 1
    n_multi = int(np.count_nonzero(multi))
    if n_multi:
        n, row, col = (int(i) for i in np.argwhere(multi)[0])
        raise data_error(
            f"{n_multi} mask pixels have two or more class channels set (first: sample {n}, "
            f"row {row}, column {col}); expected at most one 1 per pixel across the {k} channels",
            where,
        )
    index = on.argmax(axis=1).astype(np.int64)
    unset = count == 0
    n_unset = int(np.count_nonzero(unset))
    notes: tuple[str, ...] = ()
    if n_unset:
        index[unset] = -1
        notes = (f"{n_unset} mask pixels have no class channel set; they are ignored",)
    return index, names or tuple(str(i) for i in range(k)), notes


# The indices of the masks holding any of some values: asked only to name files in an error.
Holding = Callable[[Sequence[int]], np.ndarray]


def holding_in(masks: Iterable[np.ndarray], values: Sequence[int]) -> np.ndarray:
    """The indices of `masks` (each (H, W), or an (N, H, W) array) holding any of `values`."""
    return np.flatnonzero([np.isin(mask, values).any() for mask in masks])


def _holder(
    holding: Holding, values: Sequence[int], files: Sequence[str | Path] | None, where: object
) -> str | Path | None:
    """The first mask file holding one of `values`, else `where` (the masks' folder or file)."""
    if files is None:
        return where  # type: ignore[return-value]
    found = holding(values)
    return files[int(found[0])] if found.size else where  # type: ignore[return-value]


def _others(holding: Holding, values: Sequence[int], files: Sequence[str | Path] | None) -> str:
    """`; so do 3 other masks` when more than the named mask file holds such values."""
    if files is None:
        return ""
    more = len(holding(values)) - 1
    return f" (so do {more} other mask{'s' if more != 1 else ''})" if more > 0 else ""


def _by_mask_values(
    holding: Holding,
    values: np.ndarray,
    kept: np.ndarray,
    mask_values: Sequence[int],
    ignore_value: int | None,
    names: tuple[str, ...] | None,
    files: Sequence[str | Path] | None,
    where: str | Path | None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The class of each kept mask value by its place in mask_values, and the class names."""
    order = _checked_mask_values(mask_values, where)
    unknown = [int(v) for v in kept if int(v) not in order]
    if unknown:
        also = f" or ignore_value {ignore_value}" if ignore_value is not None else ""
        raise data_error(
            f"masks hold value{'s' if len(unknown) > 1 else ''} {_few(unknown)} not in "
            f"mask_values ({plain(order)}){also}; found values {_few(values.tolist(), 12)}"
            + _others(holding, unknown, files),
            _holder(holding, unknown, files, where),
            hint="list every class's value in mask_values (in class order), or set "
            "ignore_value for a no-data value",
        )
    if names is not None and len(names) != len(order):
        raise data_error(
            f"classes has {len(names)} names ({plain(names)}) but mask_values has "
            f"{len(order)} values ({plain(order)}); expected one name per value",
            where,
        )
    targets = np.array([order.index(int(v)) for v in kept], dtype=np.int64)
    return targets, names or tuple(str(v) for v in order)


def _by_index(
    holding: Holding,
    kept: np.ndarray,
    names: tuple[str, ...] | None,
    files: Sequence[str | Path] | None,
    where: str | Path | None,
    notes: list[str],
) -> tuple[str, ...]:
    """The class names of masks whose values are class indices, checked (notes: gaps)."""
    if kept.size and kept[0] < 0:
        raise data_error(
            f"masks hold the negative value {int(kept[0])}; expected class indices 0 or more"
            + _others(holding, [int(kept[0])], files),
            _holder(holding, [int(kept[0])], files, where),
            hint="set ignore_value for a no-data value, or mask_values to map values to classes",
        )
    top = int(kept[-1]) if kept.size else 0
    if names is not None:
        if top >= len(names):
            too_big = [int(v) for v in kept if v >= len(names)]
            raise data_error(
                f"masks hold class index {_few(too_big)} but classes names only "
                f"{len(names)} ({plain(names)}); expected indices 0..{len(names) - 1}"
                + _others(holding, too_big, files),
                _holder(holding, too_big, files, where),
                hint="give one name per class, or mask_values to map mask values to classes",
            )
        return names
    if top + 1 > _MAX_CLASSES:
        raise data_error(
            f"masks hold the value {top}; read as class indices that would be "
            f"{top + 1} classes (found values {_few(kept.tolist(), 12)})"
            + _others(holding, [top], files),
            _holder(holding, [top], files, where),
            hint="give mask_values, the mask value of each class in class order",
        )
    if top < 1:
        raise data_error(
            f"masks hold only the value {top}; expected at least two classes",
            where,
            hint="give classes (e.g. [background, object]) when no mask has foreground",
        )
    absent = sorted(set(range(top + 1)) - set(kept.tolist()))
    if absent:
        notes.append(
            f"class indices {_few(absent)} never occur in the masks "
            "(mask_values maps sparse values to classes)"
        )
    return tuple(str(i) for i in range(top + 1))


def _check_ignore(ignore_value: object, where: str | Path | None) -> None:
    if ignore_value is not None and not _int_option(ignore_value):
        raise data_error(f"ignore_value must be an integer mask value, got {ignore_value!r}", where)


def mask_indices(
    y: np.ndarray,
    *,
    hw: tuple[int, int] | None = None,
    classes: Sequence[str] | None = None,
    mask_values: Sequence[int] | None = None,
    ignore_value: int | None = None,
    where: str | Path | None = None,
    files: Sequence[str | Path] | None = None,
) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Segmentation masks -> (int64 (N, H, W) class indices with -1 ignored, class names, notes).

    A value that belongs to no class is refused naming the first mask file holding it (`files`,
    one per mask, from a mask folder), else `where`.

    y is (N, H, W) or (N, 1, H, W) integer/bool mask values, or (N, K, H, W) with one 0/1
    channel per class. Values map to classes by `mask_values` (value i is class i) when given;
    otherwise {0, 255} masks are background/foreground and other masks hold class indices.
    `ignore_value` is a raw mask value whose pixels become -1. hw is the images' (H, W).
    """
    y = np.asarray(y)
    names = checked_classes(classes, where)
    _check_ignore(ignore_value, where)
    if y.ndim == 4 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 4:
        _check_hw(hw, y.shape[2:], where)
        if mask_values is not None or ignore_value is not None:
            raise data_error(
                f"y has shape {tuple(y.shape)}, one 0/1 channel per class; mask_values and "
                "ignore_value apply only to masks of class values (N, H, W)",
                where,
                hint="pixels with no channel set are already ignored",
            )
        return _one_hot(y, names, where)
    if y.ndim != 3:
        raise data_error(
            f"masks have shape {tuple(y.shape)}; expected (N, H, W) class values or "
            "(N, K, H, W) with one 0/1 channel per class",
            where,
        )
    _check_hw(hw, y.shape[1:], where)
    if not (y.dtype == np.bool_ or np.issubdtype(y.dtype, np.integer)):
        raise data_error(
            f"masks have dtype {y.dtype}; expected integer or boolean class values",
            where,
            hint="convert them, e.g. y.astype(np.int64), after checking they hold whole numbers",
        )

    plan = mask_map(
        value_counts(y),
        partial(holding_in, y),
        boolean=y.dtype == np.bool_,
        classes=names,
        mask_values=mask_values,
        ignore_value=ignore_value,
        where=where,
        files=files,
    )
    return plan(y), plan.names, plan.notes


@dataclass(frozen=True)
class MaskMap:
    """Raw mask values to class indices: `values` (sorted) become `targets` (-1: ignored).
    Called on masks of any shape (a whole (N, H, W) set, or one streamed mask in a worker)."""

    values: np.ndarray
    targets: np.ndarray
    names: tuple[str, ...]
    notes: tuple[str, ...]

    def __call__(self, y: np.ndarray) -> np.ndarray:
        if not self.values.size:
            return np.zeros(y.shape, dtype=np.int64)
        return _apply(y, self.values, self.targets)


def mask_map(
    counts: tuple[np.ndarray, np.ndarray],
    holding: Holding,
    *,
    boolean: bool = False,
    classes: Sequence[str] | None = None,
    mask_values: Sequence[int] | None = None,
    ignore_value: int | None = None,
    where: str | Path | None = None,
    files: Sequence[str | Path] | None = None,
) -> MaskMap:
    """The classes of masks known only by their distinct values and pixel counts (`counts`, as
    `value_counts` gives them): all that is needed, so streamed masks are never held whole.
    `holding` finds the masks holding some values, only to name a file in an error. The options
    are mask_indices': value i of `mask_values` is class i, `ignore_value`'s pixels become -1."""
    names = checked_classes(classes, where)
    _check_ignore(ignore_value, where)
    values, pixels = counts
    ignored = values == ignore_value if ignore_value is not None else np.zeros(len(values), bool)
    kept = values[~ignored]
    if values.size and not kept.size:
        raise data_error(f"every mask pixel equals ignore_value {ignore_value}", where)
    notes: list[str] = []
    if mask_values is not None:
        targets, out_names = _by_mask_values(
            holding, values, kept, mask_values, ignore_value, names, files, where
        )
    elif boolean or (
        (names is None or len(names) == 2) and 255 in kept and set(kept.tolist()) <= {0, 255}
    ):
        targets = (kept > 0).astype(np.int64)  # 0 background, 255 (or True) foreground
        out_names = names or _BINARY_NAMES
        if not boolean:
            notes.append("mask values 0 and 255 read as classes 0 and 1")
    else:
        targets, out_names = kept, _by_index(holding, kept, names, files, where, notes)
    full = np.full(len(values), -1, dtype=np.int64)
    full[~ignored] = targets
    if ignored.any():
        n_ignored = int(pixels[ignored].sum())
        notes.append(f"{n_ignored} mask pixels equal ignore_value {ignore_value}; they are ignored")
    return MaskMap(values, full, tuple(out_names), tuple(notes))
