"""Predict's CSV inputs: rows of numbers, or rows in the training CSV's own format (one-hot)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from netspec.data.arraydata import TableColumns
from netspec.data.csvtext import number, read_text
from netspec.data.csvtext import rows as csv_rows_of
from netspec.errors import first_line

from .errors import PredictError, error, shape
from .model import ModelInfo


def csv_rows(path: Path, info: ModelInfo) -> Iterator[tuple[int, np.ndarray | PredictError]]:
    """A CSV file's rows: (line, raw sample (F,)), or (line, the error) for a row that cannot be
    read, so the other rows go on.

    Rows of numbers (the model's inputs), with or without a header; or, for a model trained on
    a CSV table (metadata netspec.table), rows in the training file's own format: a header
    naming its columns, numbers and category names as they were, the target column absent or
    ignored, like any column the model does not use.
    """
    size = info.size
    if size is None:
        raise error(
            f"the model's input {shape(info.raw_shape)} is not fixed: use a .npy file", path
        )
    try:  # the training loader's reading: UTF-8 or UTF-16, the delimiter detected
        delimiter, read = csv_rows_of(read_text(path))
    except (OSError, ValueError, csv.Error) as exc:
        raise error(f"cannot read the CSV file ({first_line(exc)})", path) from None
    rows = [(line, [c.strip() for c in row]) for line, row in read]
    # A first row of numbers with an empty cell (5.1,3.5,,0.2) is data, not a header.
    header = rows[0][1] if rows and not _numbers([c for c in rows[0][1] if c], delimiter) else None
    encode = _row_encoder(header, size, info, path, delimiter)
    if header is not None:
        rows = rows[1:]
    if not rows:
        raise error(f"no rows of numbers; expected rows of {size} values", path)
    for line, cells in rows:
        try:
            yield line, encode(cells, line)
        except PredictError as err:
            yield line, err


def _row_encoder(
    header: list[str] | None, size: int, info: ModelInfo, path: Path, delimiter: str
) -> Callable[[list[str], int], np.ndarray]:
    """How a row's cells become a raw sample: as numbers, or as a table row named by `header`."""
    features, table = info.features, info.table
    if header is not None and table and header != list(features or ()):
        return _table_encoder(header, table, path, delimiter)
    if header is not None:
        _check_header(header, size, features, path)

    def numbers(cells: list[str], line: int) -> np.ndarray:
        values = _numbers(cells, delimiter)
        if values is None:
            bad = next(c for c in cells if number(c, delimiter) is None)
            raise _row(line, f": {bad!r} is not a number", path)
        if len(values) != size:
            expected = f"{size} (the model's input {shape(info.raw_shape)})"
            raise _row(line, f" has {len(values)} values; expected {expected}", path)
        return np.asarray(values, dtype=np.float32)

    return numbers


def _table_encoder(
    header: list[str], table: TableColumns, path: Path, delimiter: str
) -> Callable[[list[str], int], np.ndarray]:
    """Rows in the training CSV's format: numeric columns as numbers, categories one-hot.

    The same encoding as netspec.data.table.load_csv: columns in the recorded order, each
    categorical column one-hot over its (sorted) training categories.
    """
    columns = table.columns
    missing = [name for name, _ in columns if name not in header]
    if missing:
        raise error(
            f"header has no column {', '.join(map(repr, missing[:4]))}"
            f"{', ...' if len(missing) > 4 else ''}; the model was trained on the columns "
            f"{', '.join(name for name, _ in columns)} (target {table.target!r})",
            path,
            hint="give rows in the training CSV's format (its header, any other columns are "
            "ignored), or rows of the model's input numbers",
        )
    where = [header.index(name) for name, _ in columns]

    def encode(cells: list[str], line: int) -> np.ndarray:
        if len(cells) != len(header):
            raise _row(line, f" has {len(cells)} fields; expected {len(header)}", path)
        parts: list[float] = []
        for (name, categories), k in zip(columns, where):
            cell = cells[k]
            if categories is None:
                value = number(cell, delimiter)
                if value is None:
                    raise _row(line, f": column {name!r} is {cell!r}, not a number", path)
                parts.append(value)
            else:
                parts += _one_hot(cell, categories, name, line, path)
        return np.asarray(parts, dtype=np.float32)

    return encode


def _one_hot(
    cell: str, categories: tuple[str, ...], name: str, line: int, path: Path
) -> list[float]:
    """A categorical cell one-hot over the column's training categories."""
    if cell not in categories:
        known = ", ".join(categories[:6]) + (", ..." if len(categories) > 6 else "")
        raise _row(
            line,
            f": column {name!r} is {cell!r}, a category the model was not trained on "
            f"(it knows {known})",
            path,
        )
    return [float(cell == c) for c in categories]


def _row(line: int, what: str, path: Path) -> PredictError:
    """A row that cannot be read: `row <line><what>`."""
    return error(f"row {line}{what}", path)


def _numbers(cells: list[str], delimiter: str) -> list[float] | None:
    values = [number(c, delimiter) for c in cells]
    return None if any(v is None for v in values) else values  # type: ignore[return-value]


def _check_header(
    cells: list[str], size: int, features: tuple[str, ...] | None, path: Path
) -> None:
    if features is not None and cells != list(features):
        raise error(
            f"header {', '.join(cells[:4])}...: expected the model's features "
            f"{', '.join(map(str, features[:4]))}...",
            path,
        )
    if len(cells) != size:
        raise error(f"header of {len(cells)} names; expected {size} columns", path)
