"""CSV tables: numeric and one-hot categorical features, a class or regression target."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Literal

import numpy as np

from netspec.data._common import data_error, did_you_mean, plain
from netspec.data.arraydata import ArrayData, TableColumns
from netspec.errors import DataError, Problem

# pandas' default missing-value markers, plus "?" (UCI data sets use it); compared exactly.
MISSING: frozenset[str] = frozenset(
    {"", "?", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None", "<NA>"}
    | {"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN"}
)
AUTO_MAX_CLASSES = 20  # an integer target with more distinct values is treated as regression


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line, data row)s; blank lines are skipped, ragged rows refused with their line."""
    numbered: list[tuple[int, list[str]]] = []
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                if any(cell.strip() for cell in row):
                    numbered.append((reader.line_num, row))
    except FileNotFoundError:
        raise data_error("CSV file not found", path) from None
    except UnicodeDecodeError as e:
        raise data_error(
            f"CSV file is not UTF-8 text ({e.reason} at byte {e.start})", path
        ) from None
    except (OSError, csv.Error) as e:
        raise data_error(f"cannot read CSV file: {e}", path) from None
    if not numbered:
        raise data_error("CSV file is empty; expected a header row and data rows", path)
    header = [h.strip() for h in numbered[0][1]]
    # A data row may have missing cells (5.1,3.5,,0.2): the rest being numbers makes it data.
    present = [h for h in header if h not in MISSING]
    if present and all(_is_number(h) for h in present):
        raise data_error(
            f"the first row ({plain(header[:5])}{', ...' if len(header) > 5 else ''}) looks like "
            "data; expected a header row naming the columns",
            path,
            hint="add a first line such as: feature_1,feature_2,label",
            line=numbered[0][0],
        )
    seen: set[str] = set()
    for name in header:
        if not name or name in seen:
            what = "an empty" if not name else f"a duplicate ({name!r})"
            raise data_error(
                f"header has {what} column name; expected unique names", path, line=numbered[0][0]
            )
        seen.add(name)
    for line_no, row in numbered[1:]:
        if len(row) != len(header):
            raise data_error(
                f"row has {len(row)} fields; expected {len(header)} like the header",
                path,
                line=line_no,
            )
    return header, numbered[1:]


def _typos(values: list[str]) -> list[int]:
    """Rows of the non-numeric, non-missing values of a column that is mostly numbers."""
    present = [k for k, v in enumerate(values) if v not in MISSING]
    bad = [k for k in present if not _is_number(values[k])]
    return bad if bad and len(bad) * 2 < len(present) else []


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _column(header: list[str], name: str, path: Path, role: str) -> int:
    if name not in header:
        raise data_error(
            f"unknown {role} column {name!r}{did_you_mean(name, header)}; "
            f"available columns: {plain(header)}",
            path,
        )
    return header.index(name)


def _number_label(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def load_csv(
    path: str | Path,
    *,
    target: str,
    features: list[str] | None = None,
    task: Literal["classification", "regression", "auto"] = "auto",
) -> ArrayData:
    """A CSV with a header row: x (N, F) float32 features, y from the `target` column.

    A column is numeric when more than half of its present values are numbers; its other
    values must be missing markers (MISSING: empty, NA, N/A, n/a, NaN, null, ?, ...), and any
    other text (a typo such as 3.O) is an error naming file:line. Numeric feature columns are
    kept as float32; other feature columns are one-hot encoded (categories sorted, named
    "column=value"). Rows with a missing value in a used column are dropped and counted in
    `notes`. task="auto" picks classification
    when the target is non-numeric, or integer-valued with at most 20 distinct values.
    """
    path = Path(path)
    if task not in ("classification", "regression", "auto"):
        raise data_error(f"unknown task {task!r}; expected classification, regression or auto")
    header, rows = _read_rows(path)
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

    used = [t_col, *f_cols]
    cells = [[row[i].strip() for i in used] for _, row in rows]
    lines = [line for line, _ in rows]
    # A column is numeric when most of its present values are numbers: then a cell that is
    # neither a number nor a missing marker is a typo (3.O), refused rather than one-hot encoded.
    problems = []
    for j, col in enumerate(used):
        if j == 0 and task == "classification":
            continue  # class labels are names, whatever they look like
        bad = _typos([c[j] for c in cells])
        for k in bad[:5]:
            problems.append(
                Problem(
                    f"column {header[col]!r} holds numbers, but this row has {cells[k][j]!r}",
                    str(path),
                    lines[k],
                    hint="fix the value, or leave the cell empty (or NA) to drop the row",
                )
            )
        if len(bad) > 5:
            problems.append(
                Problem(f"... and {len(bad) - 5} more non-numeric values in {header[col]!r}")
            )
    if problems:
        raise DataError(problems, stage="data")
    kept = [c for c in cells if not any(v in MISSING for v in c)]
    notes: list[str] = []
    if len(kept) < len(cells):
        dropped = len(cells) - len(kept)
        per_col = {header[i]: sum(1 for c in cells if c[j] in MISSING) for j, i in enumerate(used)}
        detail = ", ".join(f"{k}: {v}" for k, v in per_col.items() if v)
        notes.append(f"dropped {dropped} of {len(cells)} rows with a missing value ({detail})")
    if not kept:
        raise data_error(
            f"no rows left after dropping {len(cells)} rows with missing values "
            "(empty, NA, N/A, n/a, NaN, null, ? and other markers)",
            path,
        )

    # Features: one block of columns per source column. x: (N, F)
    blocks: list[np.ndarray] = []
    names: list[str] = []
    columns: list[tuple[str, tuple[str, ...] | None]] = []
    for j, col in enumerate(f_cols, start=1):
        values = [c[j] for c in kept]
        if all(_is_number(v) for v in values):
            blocks.append(np.asarray([float(v) for v in values], dtype=np.float32)[:, None])
            names.append(header[col])
            columns.append((header[col], None))
        else:
            categories = sorted(set(values))
            columns.append((header[col], tuple(categories)))
            index = {v: k for k, v in enumerate(categories)}
            onehot = np.zeros((len(values), len(categories)), dtype=np.float32)
            onehot[np.arange(len(values)), [index[v] for v in values]] = 1.0
            blocks.append(onehot)
            names += [f"{header[col]}={v}" for v in categories]
    x = np.concatenate(blocks, axis=1)

    raw_y = [c[0] for c in kept]
    numeric = all(_is_number(v) for v in raw_y)
    if task == "auto":
        if not numeric:
            task = "classification"
        else:
            as_float = [float(v) for v in raw_y]
            integral = all(v.is_integer() for v in as_float)
            few = len(set(as_float)) <= AUTO_MAX_CLASSES
            task = "classification" if integral and few else "regression"
            if task == "classification":
                notes.append(
                    f"target {target!r} is integer-valued with {len(set(as_float))} distinct "
                    "values: treated as classification"
                )
    if task == "regression":
        if not numeric:
            bad = next(v for v in raw_y if not _is_number(v))
            raise data_error(
                f"regression target {target!r} holds non-numeric value {bad!r}; expected numbers",
                path,
                hint="use task: classification for a categorical target",
            )
        y = np.asarray([float(v) for v in raw_y], dtype=np.float32)
        classes = None
    elif numeric:
        # Numeric classes are ordered by value ("2" before "10") and named canonically.
        values = sorted({float(v) for v in raw_y})
        index = {v: k for k, v in enumerate(values)}
        y = np.asarray([index[float(v)] for v in raw_y], dtype=np.int64)
        classes = tuple(_number_label(v) for v in values)
    else:
        labels = sorted(set(raw_y))
        index_s = {v: k for k, v in enumerate(labels)}
        y = np.asarray([index_s[v] for v in raw_y], dtype=np.int64)
        classes = tuple(labels)
    return ArrayData(
        x=x,
        y=y,
        classes=classes,
        source=f"CSV {path} (target {target!r})",
        notes=tuple(notes),
        feature_names=tuple(names),
        table=TableColumns(target, tuple(columns)),
    )
