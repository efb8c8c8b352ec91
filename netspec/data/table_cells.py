"""A CSV table's cells taken a chunk of rows at a time, column by column (table_chunk.py: C
loops, no Python call per cell; tests/cell_reference.py is the per-cell definition it equals):
one pass (`CellPass`) learns what the whole file says (bad cells, missing values, numeric or
categorical columns, categories, classes) while it turns each kept row into values; `finish`
makes the plan (`TablePlan`), and `encode` turns values into features. The in-memory table
(table.py) and the streamed one (table_stream.py) both go through it, so they give the same
rows, notes, errors and numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from netspec.data._common import data_error, plain
from netspec.data.arraydata import TableColumns
from netspec.data.csvtext import number, separator_note
from netspec.data.table_chunk import column_cells, first_seen_codes, only_nan_numbers
from netspec.errors import DataError, Problem

# pandas' default missing-value markers, plus "?" (UCI data sets use it); compared exactly.
MISSING: frozenset[str] = frozenset(
    {"", "?", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None", "<NA>"}
    | {"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN"}
)
AUTO_MAX_CLASSES = 20  # an integer target with more distinct values is treated as regression
SHOWN = 5  # bad cells listed per column; the rest are counted
# Distinct number strings remembered per column (a 20 GB file's numeric column must not keep
# them all); only a column of text and more numbers than this needs more, and is refused.
NUMBER_STRINGS = 10_000


@dataclass
class _Bad:
    count: int = 0
    shown: list[tuple[int, str]] = field(default_factory=list)

    def extend(self, lines: np.ndarray, cells: list[str], bad: np.ndarray) -> None:
        """The cells of a chunk's column where `bad` (lines: each row's)."""
        where = np.flatnonzero(bad)
        self.count += len(where)
        for i in where[: SHOWN - len(self.shown)].tolist():
            self.shown.append((int(lines[i]), cells[i]))


@dataclass
class Column:
    """What the pass learns of one used column."""

    name: str
    present: int = 0  # cells that are not a missing marker (all rows)
    missing: int = 0
    infinite: _Bad = field(default_factory=_Bad)
    text: _Bad = field(default_factory=_Bad)  # cells that are not numbers (all rows)
    vocab: dict[str, int] = field(default_factory=dict)  # kept rows' values: first-seen code
    numbers: int = 0  # number strings in vocab
    overflow: bool = False  # number strings past NUMBER_STRINGS were not remembered
    kept_text: str | None = None  # the first kept value that is not a finite number
    separator: str | None = None  # the first kept number float() refuses ("1,234", "5,1")


class CellPass:
    """One pass over a table's rows (target first among `used`), a chunk at a time: `add_rows`
    each chunk, `take` the kept rows' values so far ((n, U) float64 numbers, NaN for text, and
    (n, U) int32 first-seen codes), then `finish`."""

    def __init__(
        self,
        path: Path,
        delimiter: str,
        header: list[str],
        used: list[int],
        missing: frozenset[str] = MISSING,
    ) -> None:
        self.path, self.delimiter, self.header, self.used = path, delimiter, header, used
        self.missing = missing
        self.columns = [Column(header[i]) for i in used]
        self.rows = 0
        self.kept = 0
        self._num: list[np.ndarray] = []  # (k, U) float64 per chunk
        self._code: list[np.ndarray] = []  # (k, U) int32 per chunk
        self._pending = 0
        self._nan_only = only_nan_numbers(missing)

    def add_rows(self, lines: Sequence[int], rows: Sequence[Sequence[str]]) -> np.ndarray:
        """A chunk of data rows (and their lines), column by column; which are kept (no missing
        value in a used column). The same as adding the rows one by one, cell by cell
        (tests/cell_reference.py)."""
        width = len(self.header)
        if set(map(len, rows)) - {width}:
            line, fields = next((ln, r) for ln, r in zip(lines, rows) if len(r) != width)
            raise ragged_row(self.path, line, len(fields), width)
        n = len(rows)
        self.rows += n
        if not n:
            return np.zeros(0, dtype=bool)
        fields = list(zip(*rows))
        columns = [
            column_cells(fields[i], self.missing, self.delimiter, col.overflow and self._nan_only)
            for i, col in zip(self.used, self.columns)
        ]
        keep = ~np.any([c.missing for c in columns], axis=0)
        k = int(keep.sum())
        self.kept += k
        at = np.asarray(lines)
        num = np.empty((k, len(self.used)), dtype=np.float64)
        code = np.empty((k, len(self.used)), dtype=np.int32)
        for j, (col, cells) in enumerate(zip(self.columns, columns)):
            missing = int(cells.missing.sum())
            col.missing += missing
            col.present += n - missing
            col.text.extend(at, cells.cells, cells.text)
            col.infinite.extend(at, cells.cells, cells.infinite)
            strings = cells.cells if k == n else cells.kept(keep)
            finite = ~(cells.text | cells.infinite)[keep]
            if col.kept_text is None and not finite.all():
                col.kept_text = strings[int(np.argmin(finite))]
            separated = cells.separated[keep]
            if col.separator is None and separated.any():
                col.separator = strings[int(np.argmax(separated))]
            num[:, j] = cells.value[keep]
            code[:, j], col.numbers, col.overflow = first_seen_codes(
                col.vocab, col.numbers, col.overflow, strings, finite, NUMBER_STRINGS
            )
        self._num.append(num)
        self._code.append(code)
        self._pending += k
        return keep

    @property
    def pending(self) -> int:
        """Kept rows not taken yet."""
        return self._pending

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept rows' values since the last take: (n, U) float64 and (n, U) int32."""
        u = len(self.used)
        num = np.concatenate([np.zeros((0, u)), *self._num])
        code = np.concatenate([np.zeros((0, u), dtype=np.int32), *self._code])
        self._num, self._code, self._pending = [], [], 0
        return num, code

    def finish(self, target: str, task: str, notes: list[str]) -> TablePlan:
        """The plan of the whole file: its bad cells refused (file:line), the dropped rows
        noted, each feature column numeric or categorical, the target's task and classes."""
        if not self.rows:
            raise no_data_rows(self.header, self.path)
        self._check(task == "classification")
        self._drop_note(notes)
        categories, onehot_said = [], []
        for col in self.columns[1:]:
            if col.kept_text is None:
                categories.append(None)
                if col.separator and (
                    note := separator_note(col.name, [col.separator], self.delimiter)
                ):
                    notes.append(note)
                continue
            if col.overflow:
                raise data_error(
                    f"column {col.name!r} holds text and over {NUMBER_STRINGS:,} distinct "
                    "numbers: too many categories to one-hot encode",
                    self.path,
                    hint="fix the text cells if the column is numeric, or leave it out of "
                    "`features`",
                )
            categories.append(tuple(sorted(col.vocab)))
            onehot_said.append(
                f"{col.name} ({len(col.vocab)} categories; e.g. {col.kept_text!r} is not a number)"
            )
        if onehot_said:
            notes.append(
                f"one-hot encoded {len(onehot_said)} text column{'s' if len(onehot_said) != 1 else ''}"
                f": {'; '.join(onehot_said)}"
            )
        classes, lookup = self._target(target, task, notes)
        lookups = [_lookup(col.vocab, cats) for col, cats in zip(self.columns[1:], categories)]
        return TablePlan(
            self.delimiter,
            tuple(self.used),
            TableColumns(
                target, tuple((c.name, cats) for c, cats in zip(self.columns[1:], categories))
            ),
            classes,
            (lookup, *lookups),
        )

    def _check(self, classification: bool) -> None:
        """Refuse infinite values anywhere, and text in a column of mostly numbers (a typo such
        as 3.O, which one-hot encoding would hide), by file, line and column."""
        problems = []
        for j, col in enumerate(self.columns):
            if j == 0 and classification:
                continue  # class labels are names, whatever they look like
            if col.infinite.count:
                bad, infinite = col.infinite, True
            elif col.text.count and col.text.count * 2 < col.present:
                bad, infinite = col.text, False
            else:
                continue
            for line, cell in bad.shown:
                said = (
                    f"column {col.name!r} holds {cell!r}, an infinite value; expected finite numbers"
                    if infinite
                    else f"column {col.name!r} holds numbers, but this row has {cell!r}"
                )
                problems.append(
                    Problem(
                        said,
                        str(self.path),
                        line,
                        hint="fix the value, or leave the cell empty (or NA) to drop the row",
                    )
                )
            if bad.count > SHOWN:
                problems.append(
                    Problem(f"... and {bad.count - SHOWN} more such values in {col.name!r}")
                )
        if problems:
            raise DataError(problems, stage="data")

    def _drop_note(self, notes: list[str]) -> None:
        if self.kept < self.rows:
            detail = ", ".join(f"{c.name}: {c.missing}" for c in self.columns if c.missing)
            notes.append(
                f"dropped {self.rows - self.kept} of {self.rows} rows with a missing value ({detail})"
            )
        if not self.kept:
            raise data_error(
                f"no rows left after dropping {self.rows} rows with missing values "
                "(empty, NA, N/A, n/a, NaN, null, ? and other markers)",
                self.path,
            )

    def _target(
        self, target: str, task: str, notes: list[str]
    ) -> tuple[tuple[str, ...] | None, np.ndarray | None]:
        """The class names (None for regression) and each first-seen code's class index; task
        auto decides by the values."""
        col = self.columns[0]
        numeric = col.kept_text is None
        as_float = {s: float(number(s, self.delimiter)) for s in col.vocab} if numeric else {}  # type: ignore[arg-type]
        if task == "auto":
            task = "regression"
            if not numeric:
                task = "classification"
            else:
                distinct = len(set(as_float.values()))
                integers = all(v.is_integer() for v in as_float.values())
                if not col.overflow and integers and distinct <= AUTO_MAX_CLASSES:
                    task = "classification"
                    notes.append(
                        f"target {target!r} is integer-valued with {distinct} distinct "
                        "values: treated as classification"
                    )
        if task == "regression":
            if not numeric:
                raise data_error(
                    f"regression target {target!r} holds non-numeric value {col.kept_text!r}; "
                    "expected numbers",
                    self.path,
                    hint="use task: classification for a categorical target",
                )
            return None, None
        if col.overflow:
            raise data_error(
                f"target {target!r} has over {NUMBER_STRINGS:,} distinct values: too many classes",
                self.path,
                hint="use task: regression for a numeric target",
            )
        if numeric:
            # Numeric classes are ordered by value ("2" before "10") and named canonically.
            values = sorted(set(as_float.values()))
            index = {v: k for k, v in enumerate(values)}
            lookup = np.zeros(len(col.vocab), dtype=np.int64)
            for s, code in col.vocab.items():
                lookup[code] = index[as_float[s]]
            return tuple(_number_label(v) for v in values), lookup
        labels = tuple(sorted(col.vocab))
        return labels, _lookup(col.vocab, labels)


def no_data_rows(header: list[str], path: Path) -> DataError:
    """The error of a CSV file with a header and nothing after it."""
    return data_error(
        f"CSV file has a header ({plain(header[:5])}{', ...' if len(header) > 5 else ''}) "
        "but no data rows",
        path,
    )


def ragged_row(path: Path, line: int, fields: int, width: int) -> DataError:
    """The error of a row (at `line`) with `fields` fields where the header has `width`."""
    return data_error(f"row has {fields} fields; expected {width} like the header", path, line=line)


def _number_label(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _lookup(vocab: dict[str, int], categories: tuple[str, ...] | None) -> np.ndarray | None:
    """Each first-seen code's index among the sorted categories (None for a numeric column)."""
    if categories is None:
        return None
    index = {v: k for k, v in enumerate(categories)}
    out = np.zeros(len(vocab), dtype=np.int64)
    for s, code in vocab.items():
        out[code] = index[s]
    return out


@dataclass(frozen=True, eq=False)
class TablePlan:
    """How a table's kept rows become features and labels, learnt over the whole file."""

    delimiter: str
    used: tuple[int, ...]  # the target's column index, then the features'
    table: TableColumns  # each feature column's categories (None: numeric)
    classes: tuple[str, ...] | None  # None: a regression target
    lookups: tuple[np.ndarray | None, ...]  # per used column: first-seen code -> sorted index

    @property
    def feature_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for name, cats in self.table.columns:
            names += [name] if cats is None else [f"{name}={v}" for v in cats]
        return tuple(names)

    @cached_property
    def index(self) -> dict[int, dict[str, int]]:
        """Per categorical column (by used position): category -> its sorted index."""
        cols = enumerate(self.table.columns, start=1)
        return {j: {v: k for k, v in enumerate(c)} for j, (_, c) in cols if c is not None}

    def sorted_codes(self, code: np.ndarray) -> np.ndarray:
        """First-seen codes (n, U) as each category's (or class's) sorted index; 0 where numeric."""
        out = np.zeros(code.shape, dtype=np.int64)
        for j, lookup in enumerate(self.lookups):
            if lookup is not None:
                out[:, j] = lookup[code[:, j]]
        return out

    def labels(self, num: np.ndarray, code: np.ndarray) -> np.ndarray:
        """y of rows' target values and first-seen codes (n,): class indices, or float32
        targets."""
        lookup = self.lookups[0]
        return lookup[code] if lookup is not None else num.astype(np.float32)

    def row_values(self, cells: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """One row's used cells (target first) as (1, U) numbers and sorted indices; None when a
        cell is not what the pass found there (the file changed since)."""
        num = np.zeros((1, len(cells)), dtype=np.float64)
        cat = np.zeros((1, len(cells)), dtype=np.int64)
        for j, (cell, cats) in enumerate(zip(cells[1:], [c for _, c in self.table.columns]), 1):
            if cats is None:
                value = number(cell, self.delimiter)
                if value is None or not math.isfinite(value):
                    return None
                num[0, j] = value
            elif cell in self.index[j]:
                cat[0, j] = self.index[j][cell]
            else:
                return None
        return num, cat


def class_labels(
    path: Path, delimiter: str, name: str, values: list[str], lines: list[int]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices and names of a label column's values (none missing), as a CSV target's."""
    cells = CellPass(path, delimiter, [name], [0], missing=frozenset())
    cells.add_rows(lines, [[value] for value in values])
    plan = cells.finish(name, "classification", [])
    assert plan.classes is not None
    num, code = cells.take()
    return plan.labels(num[:, 0], code[:, 0]), plan.classes


def encode(num: np.ndarray, cat: np.ndarray, plan: TablePlan) -> np.ndarray:
    """x (n, F) float32 of rows' values: numeric columns as they are, others one-hot."""
    n = len(num)
    blocks: list[np.ndarray] = []
    for j, (_, cats) in enumerate(plan.table.columns, start=1):
        if cats is None:
            blocks.append(num[:, j].astype(np.float32)[:, None])
            continue
        onehot = np.zeros((n, len(cats)), dtype=np.float32)
        onehot[np.arange(n), cat[:, j]] = 1.0
        blocks.append(onehot)
    return np.concatenate(blocks, axis=1)
