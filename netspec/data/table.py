"""CSV tables: numeric and one-hot categorical features, a class or regression target.

load_csv runs named steps: read the rows (encoding and delimiter: csvtext), find the columns,
check every cell, drop rows with missing values, encode the features, encode the target.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from netspec.data._common import data_error, did_you_mean, plain
from netspec.data.arraydata import ArrayData, TableColumns
from netspec.data.csvtext import CsvTextError, number, read_text, rows, separator_note
from netspec.errors import DataError, Problem

# pandas' default missing-value markers, plus "?" (UCI data sets use it); compared exactly.
MISSING: frozenset[str] = frozenset(
    {"", "?", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None", "<NA>"}
    | {"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN"}
)
AUTO_MAX_CLASSES = 20  # an integer target with more distinct values is treated as regression
_SHOWN = 5  # bad cells listed per column; the rest are counted


@dataclass
class _Table:
    """The file's rows as read: the header, the used columns' cells (target first), lines."""

    path: Path
    delimiter: str
    header: list[str]
    used: list[int]  # column indices: the target, then the features
    cells: list[list[str]]
    lines: list[int]
    notes: list[str] = field(default_factory=list)

    def number(self, cell: str) -> float | None:
        return number(cell, self.delimiter)

    def is_number(self, cell: str) -> bool:
        value = self.number(cell)
        return value is not None and math.isfinite(value)


def _read_rows(
    path: Path, delimiter: str | None
) -> tuple[str, list[str], list[tuple[int, list[str]]]]:
    """Delimiter, header and (line, data row)s; blank lines skipped, ragged rows refused."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise data_error("CSV file not found", path) from None
    except CsvTextError as e:
        raise data_error(f"cannot read the CSV file: {e}", path) from None
    except OSError as e:
        raise data_error(f"cannot read CSV file: {e}", path) from None
    try:
        delimiter, numbered = rows(text, delimiter)
    except csv.Error as e:  # a NUL byte, a field larger than csv's limit
        raise data_error(f"cannot read CSV file: {e}", path) from None
    if not numbered:
        raise data_error("CSV file is empty; expected a header row and data rows", path)
    header = [h.strip() for h in numbered[0][1]]
    _check_header(header, numbered[0][0], path, delimiter)
    for line_no, row in numbered[1:]:
        if len(row) != len(header):
            raise data_error(
                f"row has {len(row)} fields; expected {len(header)} like the header",
                path,
                line=line_no,
            )
    if len(numbered) == 1:
        raise data_error(
            f"CSV file has a header ({plain(header[:5])}{', ...' if len(header) > 5 else ''}) "
            "but no data rows",
            path,
        )
    return delimiter, header, numbered[1:]


def _check_header(header: list[str], line: int, path: Path, delimiter: str) -> None:
    # A data row may have missing cells (5.1,3.5,,0.2): the rest being numbers makes it data.
    present = [h for h in header if h not in MISSING]
    if present and all(number(h, delimiter) is not None for h in present):
        raise data_error(
            f"the first row ({plain(header[:5])}{', ...' if len(header) > 5 else ''}) looks like "
            "data; expected a header row naming the columns",
            path,
            hint="add a first line such as: feature_1,feature_2,label",
            line=line,
        )
    seen: set[str] = set()
    for name in header:
        if not name or name in seen:
            what = "an empty" if not name else f"a duplicate ({name!r})"
            raise data_error(
                f"header has {what} column name; expected unique names", path, line=line
            )
        seen.add(name)


def _column(header: list[str], name: str, path: Path, role: str) -> int:
    if name not in header:
        raise data_error(
            f"unknown {role} column {name!r}{did_you_mean(name, header)}; "
            f"available columns: {plain(header)}",
            path,
        )
    return header.index(name)


def _used_columns(
    header: list[str], target: str, features: list[str] | None, path: Path
) -> list[int]:
    """The target's column index, then the features' (all other columns unless named)."""
    t_col = _column(header, target, path, "target")
    if features is None:
        f_cols = [i for i in range(len(header)) if i != t_col]
    else:
        f_cols = [_column(header, name, path, "feature") for name in features]
        if t_col in f_cols:
            raise data_error(f"target column {target!r} is also listed as a feature", path)
        if len(set(f_cols)) != len(f_cols):
            raise data_error(f"features list a column twice: {plain(features)}", path)
    if not f_cols:
        raise data_error(f"no feature columns: the file only has the target {target!r}", path)
    return [t_col, *f_cols]


def _bad_cells(table: _Table, j: int) -> list[tuple[int, str]]:
    """(row, why) of column j's cells that are refused: infinite values anywhere, and text in a
    column of mostly numbers (a typo such as 3.O, which one-hot encoding would hide)."""
    values = [c[j] for c in table.cells]
    present = [k for k, v in enumerate(values) if v not in MISSING]
    parsed = {k: table.number(values[k]) for k in present}
    infinite = [k for k in present if parsed[k] is not None and not math.isfinite(parsed[k])]
    if infinite:
        return [(k, "an infinite value") for k in infinite]
    text = [k for k in present if parsed[k] is None]
    if text and len(text) * 2 < len(present):
        return [(k, "text") for k in text]
    return []


def _check_cells(table: _Table, classification: bool) -> None:
    """Refuse every bad cell (_bad_cells) of the used columns, by file, line and column."""
    problems = []
    for j, col in enumerate(table.used):
        if j == 0 and classification:
            continue  # class labels are names, whatever they look like
        name = table.header[col]
        bad = _bad_cells(table, j)
        for k, why in bad[:_SHOWN]:
            cell = table.cells[k][j]
            said = (
                f"column {name!r} holds {cell!r}, an infinite value; expected finite numbers"
                if why != "text"
                else f"column {name!r} holds numbers, but this row has {cell!r}"
            )
            problems.append(
                Problem(
                    said,
                    str(table.path),
                    table.lines[k],
                    hint="fix the value, or leave the cell empty (or NA) to drop the row",
                )
            )
        if len(bad) > _SHOWN:
            problems.append(Problem(f"... and {len(bad) - _SHOWN} more such values in {name!r}"))
    if problems:
        raise DataError(problems, stage="data")


def _drop_missing(table: _Table) -> list[list[str]]:
    """The rows without a missing value in a used column; a note counts the others per column."""
    cells = table.cells
    kept = [c for c in cells if not any(v in MISSING for v in c)]
    if len(kept) < len(cells):
        used = table.used
        per_col = {
            table.header[i]: sum(1 for c in cells if c[j] in MISSING) for j, i in enumerate(used)
        }
        detail = ", ".join(f"{k}: {v}" for k, v in per_col.items() if v)
        table.notes.append(
            f"dropped {len(cells) - len(kept)} of {len(cells)} rows with a missing value ({detail})"
        )
    if not kept:
        raise data_error(
            f"no rows left after dropping {len(cells)} rows with missing values "
            "(empty, NA, N/A, n/a, NaN, null, ? and other markers)",
            table.path,
        )
    return kept


def _features(
    table: _Table, kept: list[list[str]]
) -> tuple[np.ndarray, list[str], list[tuple[str, tuple[str, ...] | None]]]:
    """x (N, F): numeric columns as float32, others one-hot (categories sorted), a note each."""
    blocks: list[np.ndarray] = []
    names: list[str] = []
    columns: list[tuple[str, tuple[str, ...] | None]] = []
    onehot_said: list[str] = []
    for j, col in enumerate(table.used[1:], start=1):
        name = table.header[col]
        values = [c[j] for c in kept]
        if all(table.is_number(v) for v in values):
            blocks.append(np.asarray([table.number(v) for v in values], dtype=np.float32)[:, None])
            names.append(name)
            columns.append((name, None))
            if note := separator_note(name, values, table.delimiter):
                table.notes.append(note)
            continue
        categories = sorted(set(values))
        columns.append((name, tuple(categories)))
        index = {v: k for k, v in enumerate(categories)}
        onehot = np.zeros((len(values), len(categories)), dtype=np.float32)
        onehot[np.arange(len(values)), [index[v] for v in values]] = 1.0
        blocks.append(onehot)
        names += [f"{name}={v}" for v in categories]
        text = next(v for v in values if not table.is_number(v))
        onehot_said.append(f"{name} ({len(categories)} categories; e.g. {text!r} is not a number)")
    if onehot_said:
        table.notes.append(
            f"one-hot encoded {len(onehot_said)} text column{'s' if len(onehot_said) != 1 else ''}"
            f": {'; '.join(onehot_said)}"
        )
    return np.concatenate(blocks, axis=1), names, columns


def _number_label(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _target(
    table: _Table, raw_y: list[str], target: str, task: str
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """y and the class names (None for regression); task auto decides by the values."""
    numeric = all(table.is_number(v) for v in raw_y)
    if task == "auto":
        task = "regression"
        if not numeric:
            task = "classification"
        else:
            as_float = [float(table.number(v)) for v in raw_y]  # type: ignore[arg-type]
            distinct = len(set(as_float))
            if all(v.is_integer() for v in as_float) and distinct <= AUTO_MAX_CLASSES:
                task = "classification"
                table.notes.append(
                    f"target {target!r} is integer-valued with {distinct} distinct "
                    "values: treated as classification"
                )
    if task == "regression":
        if not numeric:
            bad = next(v for v in raw_y if not table.is_number(v))
            raise data_error(
                f"regression target {target!r} holds non-numeric value {bad!r}; expected numbers",
                table.path,
                hint="use task: classification for a categorical target",
            )
        return np.asarray([table.number(v) for v in raw_y], dtype=np.float32), None
    if numeric:
        # Numeric classes are ordered by value ("2" before "10") and named canonically.
        values = sorted({float(table.number(v)) for v in raw_y})  # type: ignore[arg-type]
        index = {v: k for k, v in enumerate(values)}
        y = [index[float(table.number(v))] for v in raw_y]  # type: ignore[arg-type]
        return np.asarray(y, dtype=np.int64), tuple(_number_label(v) for v in values)
    labels = sorted(set(raw_y))
    index_s = {v: k for k, v in enumerate(labels)}
    return np.asarray([index_s[v] for v in raw_y], dtype=np.int64), tuple(labels)


def load_csv(
    path: str | Path,
    *,
    target: str,
    features: list[str] | None = None,
    task: Literal["classification", "regression", "auto"] = "auto",
    delimiter: str | None = None,
) -> ArrayData:
    """A CSV with a header row: x (N, F) float32 features, y from the `target` column.

    The delimiter (comma, semicolon, tab or bar) is detected unless given; the text is UTF-8
    (a BOM is dropped) or UTF-16 with a BOM. A column is numeric when more than half of its
    present values are numbers (thousands separators "1,234" and, in files not delimited by
    commas, decimal commas "5,1" count, with a note); its other values must be missing markers
    (MISSING: empty, NA, N/A, n/a, NaN, null, ?, ...), and any other text (a typo such as 3.O)
    or an infinite value is an error naming file:line. Numeric feature columns are kept as
    float32; other feature columns are one-hot encoded (categories sorted, named
    "column=value", with a note). Rows with a missing value in a used column are dropped and
    counted in `notes`. task="auto" picks classification when the target is non-numeric, or
    integer-valued with at most 20 distinct values.
    """
    path = Path(path)
    if task not in ("classification", "regression", "auto"):
        raise data_error(f"unknown task {task!r}; expected classification, regression or auto")
    delimiter, header, numbered = _read_rows(path, delimiter)
    used = _used_columns(header, target, features, path)
    cells = [[row[i].strip() for i in used] for _, row in numbered]
    table = _Table(path, delimiter, header, used, cells, [line for line, _ in numbered])
    _check_cells(table, task == "classification")
    kept = _drop_missing(table)
    x, names, columns = _features(table, kept)
    y, classes = _target(table, [c[0] for c in kept], target, task)
    return ArrayData(
        x=x,
        y=y,
        classes=classes,
        source=f"CSV {path} (target {target!r})",
        notes=tuple(table.notes),
        feature_names=tuple(names),
        table=TableColumns(target, tuple(columns)),
    )


def check_columns(path: str | Path, table: TableColumns) -> None:
    """A CSV for a model trained on a table (its recorded TableColumns) has every column it used.

    Without this, a file lacking a column gave only `samples have shape (3,), but the spec's
    input is (4,)`; this names the missing columns, and the ones the file has instead.
    """
    path = Path(path)
    _, header, _ = _read_rows(path, None)
    wanted = [name for name, _ in table.columns]
    target = table.target
    missing = [name for name in [*wanted, target] if name not in header]
    if missing:
        extra = [name for name in header if name not in wanted and name != target]
        raise data_error(
            f"the CSV lacks column{'s' if len(missing) > 1 else ''} {plain(missing)} that the "
            f"model was trained on (features {plain(wanted)}, target {target})"
            + (f"; it has {plain(extra)} instead" if extra else ""),
            path,
            hint="give a CSV with the columns of the file the model was trained on",
        )
