"""A chunk of a CSV table's cells read column by column, with C loops instead of a Python call
per cell: float() mapped over a whole column (a column holding text or separators falls back to
parsing each distinct string once), missing markers found by one set lookup per cell, and a
column's first-seen codes given in bulk. CellPass (table_cells.py) keeps what it learns; the
per-cell definition it must equal, bit for bit, is tests/cell_reference.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, repeat

import numpy as np

from netspec.data.csvtext import number

# What float() alone does not read: 0 a plain number, 1 with separators ("1,234"), 2 text.
_PLAIN, _SEPARATED, _TEXT = 0, 1, 2


class Stripped:
    """A column's cells stripped only where looked at (`index`: which of `raw`, in order): a
    numeric column past NUMBER_STRINGS needs its strings only at its few odd cells."""

    def __init__(self, raw: Sequence[str], index: np.ndarray | None = None) -> None:
        self.raw, self.index = raw, index

    def __len__(self) -> int:
        return len(self.raw) if self.index is None else len(self.index)

    def __getitem__(self, i: int) -> str:
        return self.raw[i if self.index is None else int(self.index[i])].strip()

    def taken(self, index: np.ndarray) -> Stripped:
        """The cells at `index` (of these)."""
        return Stripped(self.raw, index if self.index is None else self.index[index])


@dataclass(frozen=True, eq=False)
class ColumnCells:
    """One used column of a chunk: its stripped cells and what each holds."""

    cells: list[str] | Stripped
    missing: np.ndarray  # bool: a missing marker
    value: np.ndarray  # float64: NaN where missing or text
    kind: np.ndarray  # int8: _PLAIN, _SEPARATED or _TEXT (missing cells: _PLAIN)

    def kept(self, keep: np.ndarray) -> list[str] | Stripped:
        """The cells where `keep`."""
        if isinstance(self.cells, Stripped):
            return self.cells.taken(np.flatnonzero(keep))
        return list(compress(self.cells, keep.tolist()))

    @property
    def text(self) -> np.ndarray:
        return self.kind == _TEXT

    @property
    def infinite(self) -> np.ndarray:
        """Numbers that are not finite ("inf", and "NAN", which is no missing marker)."""
        return ~self.missing & (self.kind != _TEXT) & ~np.isfinite(self.value)

    @property
    def separated(self) -> np.ndarray:
        """Finite numbers that float() alone does not read ("1,234", "5,1")."""
        return (self.kind == _SEPARATED) & np.isfinite(self.value)


def column_cells(
    raw: Sequence[str], missing: frozenset[str], delimiter: str, numbers_first: bool = False
) -> ColumnCells:
    """The cells of one column of a chunk (as the CSV reader gave them) read as the per-cell
    pass reads each: stripped, a missing marker, float(), else csvtext.number, else text.

    `numbers_first` (a column of many numbers so far, and markers float() reads only as NaN:
    "nan", "NaN"): float() tried on the cells as they are (it ignores the spaces strip drops),
    and only a NaN looked up among the markers; the cells stay unstripped until looked at."""
    if numbers_first:
        try:
            value = np.fromiter(map(float, raw), dtype=np.float64, count=len(raw))
        except ValueError:  # stopped at the first cell that is not a number: little lost
            pass
        else:
            miss = np.zeros(len(raw), dtype=bool)
            nan = np.flatnonzero(np.isnan(value))
            miss[nan] = [raw[i].strip() in missing for i in nan.tolist()]
            return ColumnCells(Stripped(raw), miss, value, np.zeros(len(raw), dtype=np.int8))
    cells = list(map(str.strip, raw))
    n = len(cells)
    if missing.isdisjoint(cells):  # most chunks: one set operation, in C
        miss = np.zeros(n, dtype=bool)
    else:
        miss = np.array(list(map(missing.__contains__, cells)), dtype=bool)
    value = np.full(n, math.nan)
    kind = np.zeros(n, dtype=np.int8)
    present = ~miss
    shown = cells if not miss.any() else list(compress(cells, present.tolist()))
    try:  # most columns are plain numbers: float() alone, in one C loop
        value[present] = np.fromiter(map(float, shown), dtype=np.float64, count=len(shown))
    except ValueError:
        values: dict[str, float] = {}
        kinds: dict[str, int] = {}
        for cell in dict.fromkeys(shown):  # a text column repeats its categories
            try:
                values[cell], kinds[cell] = float(cell), _PLAIN
            except ValueError:
                read = number(cell, delimiter)
                values[cell] = math.nan if read is None else read
                kinds[cell] = _TEXT if read is None else _SEPARATED
        m = len(shown)
        value[present] = np.fromiter(map(values.__getitem__, shown), dtype=np.float64, count=m)
        kind[present] = np.fromiter(map(kinds.__getitem__, shown), dtype=np.int8, count=m)
    return ColumnCells(cells, miss, value, kind)


def first_seen_codes(
    vocab: dict[str, int],
    numbers: int,
    overflow: bool,
    cells: list[str] | Stripped,
    finite: np.ndarray,
    limit: int,
) -> tuple[np.ndarray, int, bool]:
    """Kept cells' first-seen codes (int32), `vocab` extended in place, and the new count of
    number strings in it and overflow flag: Column.code of tests/cell_reference.py applied to
    each cell in turn. Past `limit` number strings, finite cells get -1 (a column that is
    numeric, or refused) and are no longer remembered."""
    n = len(cells)
    if overflow:  # a numeric column's chunks after its first: only its few other cells
        codes = np.full(n, -1, dtype=np.int32)
        where = np.flatnonzero(~finite)
        others = [cells[i] for i in where.tolist()]
        for cell in others:
            vocab.setdefault(cell, len(vocab))
        codes[where] = np.fromiter(map(vocab.__getitem__, others), dtype=np.int32, count=len(where))
        return codes, numbers, overflow
    assert isinstance(cells, list)  # Stripped only comes with a column past `limit`
    start = n  # the cell that overflowed: from there on, finite cells have no code
    # A string is finite or not whatever its row: one flag for a column of text or of numbers.
    every = bool(finite[0]) if n and (finite.all() or not finite.any()) else None
    is_finite = {} if every is not None else dict(zip(cells, finite.tolist()))
    for cell in dict.fromkeys(cells):  # first occurrences, in order, decide the codes
        if cell in vocab:
            continue
        if every if every is not None else is_finite[cell]:
            if numbers >= limit:
                overflow, start = True, cells.index(cell)
                break
            numbers += 1
        vocab[cell] = len(vocab)
    if overflow:  # from there on only the other cells are remembered, still in order
        for cell in compress(cells[start:], (~finite[start:]).tolist()):
            vocab.setdefault(cell, len(vocab))
    codes = np.fromiter(map(vocab.get, cells, repeat(-1)), dtype=np.int32, count=n)
    codes[start:][finite[start:]] = -1
    return codes, numbers, overflow


def only_nan_numbers(missing: frozenset[str]) -> bool:
    """Whether every marker float() reads is a NaN ("nan", "NaN"): then a cell read as a
    number other than NaN is never a missing marker (column_cells' numbers_first)."""
    for marker in missing:
        try:
            if not math.isnan(float(marker)):
                return False
        except ValueError:
            pass
    return True
