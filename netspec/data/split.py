"""Deterministic, stratified train/val/test splits of an in-memory dataset."""

from __future__ import annotations

import math

import numpy as np

from netspec.data._common import data_error, plain
from netspec.data.arraydata import ArrayData
from netspec.data.stream import subset

_SUM_TOLERANCE = 1e-6


def _check_fractions(fractions: dict[str, float]) -> None:
    if not fractions:
        raise data_error("no splits given; expected e.g. {train: 0.8, val: 0.1, test: 0.1}")
    for name, f in fractions.items():
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise data_error(f"split {name!r} has fraction {f!r}; expected a number in (0, 1]")
    total = math.fsum(fractions.values())
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise data_error(
            f"split fractions sum to {total:g} ({plain(f'{k}={v:g}' for k, v in fractions.items())}); "
            "expected them to sum to 1"
        )


def _allocate(group_sizes: list[int], fractions: np.ndarray) -> np.ndarray:
    """(groups, splits) counts: each is floor or ceil of fraction * group size, rows sum exactly.

    Which splits get a group's rounded-up units is decided by how far each split lags its
    share of all groups so far, so small splits are not starved when every group is small.
    """
    counts = np.zeros((len(group_sizes), fractions.size), dtype=np.int64)
    given = np.zeros(fractions.size, dtype=np.int64)  # samples handed to each split so far
    seen = 0
    for g, size in enumerate(group_sizes):
        ideal = fractions * size
        base = np.floor(ideal + 1e-9).astype(np.int64)  # 1e-9: 0.7 * 30 is 20.999999999999996
        extra = size - int(base.sum())
        seen += size
        lag = fractions * seen - (given + base)
        rounds_up = np.flatnonzero(ideal - base > 1e-9)
        if rounds_up.size < extra:  # only under float noise; any split may then round up
            rounds_up = np.arange(fractions.size)
        # Largest lag first; ties go to the earlier split (stable sort), for determinism.
        chosen = rounds_up[np.argsort(-lag[rounds_up], kind="stable")[:extra]]
        base[chosen] += 1
        counts[g] = base
        given += base
    return counts


def split_arrays(
    data: ArrayData, fractions: dict[str, float], *, seed: int, stratify: bool = True
) -> dict[str, ArrayData]:
    """Split into named parts, e.g. {"train": 0.8, "val": 0.1, "test": 0.1}.

    The same seed gives the same split. Each split gets floor or ceil of fraction * N samples
    (roughly: rounding is balanced across groups); for classification with stratify=True each
    class c is divided the same way, floor or ceil of fraction * N_c per split. Each part
    keeps the original sample order. Raises DataError when a split would be empty.
    """
    _check_fractions(fractions)
    n = len(data)
    names = list(fractions)
    fracs = np.asarray([float(fractions[k]) for k in names])
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if stratify and data.classes is not None:
        # One group per class (random order within it), each divided in proportion.
        labels = data.y[order]
        groups = [order[labels == c] for c in np.unique(labels)]
    else:
        groups = [order]
    counts = _allocate([g.size for g in groups], fracs)
    totals = counts.sum(axis=0)
    for name, total in zip(names, totals):
        if total == 0:
            raise data_error(
                f"split {name!r} would be empty: {fractions[name]:g} of {n} samples rounds to 0",
                hint="use a larger fraction or more data",
            )
    picked: list[list[np.ndarray]] = [[] for _ in names]
    for group, row in zip(groups, counts):
        bounds = np.concatenate([[0], np.cumsum(row)])
        for s in range(len(names)):
            picked[s].append(group[bounds[s] : bounds[s + 1]])
    parts: dict[str, ArrayData] = {}
    for s, name in enumerate(names):
        idx = np.sort(np.concatenate(picked[s]))  # keep the original sample order
        parts[name] = ArrayData(
            x=subset(data.x, idx),
            y=subset(data.y, idx),
            classes=data.classes,
            source=f"{data.source} [{name}: {idx.size} of {n}]",
            notes=data.notes,
            feature_names=data.feature_names,
            table=data.table,
        )
    return parts
