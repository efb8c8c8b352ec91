"""CSV tables: numeric and one-hot categorical features, a class or regression target.

load_csv runs named steps: read the rows (encoding and delimiter: csvtext), find the columns,
check every cell, drop rows with missing values, encode the features, encode the target. A UTF-8
file is read a block of records at a time (table_stream.read_csv, the streamed tables' pass); a
UTF-16 one (Excel's Unicode Text) whole, here.
"""

from __future__ import annotations

import csv
from operator import itemgetter
from pathlib import Path
from typing import Literal

import numpy as np

from netspec.data._common import data_error, plain
from netspec.data.arraydata import ArrayData, TableColumns
from netspec.data.csv_records import open_blocks
from netspec.data.csvtext import CsvTextError, is_utf16, read_text, rows
from netspec.data.table_cells import CellPass, encode, no_data_rows, ragged_row
from netspec.data.table_columns import check_header, table_data, used_columns
from netspec.data.table_stream import read_csv
from netspec.gcpause import gc_paused

CHUNK = 1 << 16  # rows the cells are read of at a time, column by column


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
    check_header(header, numbered[0][0], path, delimiter)
    ragged = set(map(len, map(itemgetter(1), numbered))) != {len(header)}
    for line_no, row in numbered[1:] if ragged else ():
        if len(row) != len(header):
            raise ragged_row(path, line_no, len(row), len(header))
    if len(numbered) == 1:
        raise no_data_rows(header, path)
    return delimiter, header, numbered[1:]


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
    if not is_utf16(path):  # read a block at a time, as a streamed table is
        return read_csv(path, target=target, features=features, task=task, delimiter=delimiter)
    with gc_paused():  # UTF-16 (Excel's Unicode Text) is decoded whole
        delimiter, header, numbered = _read_rows(path, delimiter)
        cells = CellPass(path, delimiter, header, used_columns(header, target, features, path))
        parts = []
        for start in range(0, len(numbered), CHUNK):
            lines, rows = zip(*numbered[start : start + CHUNK])
            cells.add_rows(lines, rows)
            parts.append(cells.take())
        del numbered
    notes: list[str] = []
    plan = cells.finish(target, task, notes)
    num, code = (np.concatenate(p) for p in zip(*parts))
    x = encode(num, plan.sorted_codes(code), plan)
    return table_data(path, target, plan, x, plan.labels(num[:, 0], code[:, 0]), notes)


def check_columns(path: str | Path, table: TableColumns) -> None:
    """A CSV for a model trained on a table (its recorded TableColumns) has every column it used.

    Without this, a file lacking a column gave only `samples have shape (3,), but the spec's
    input is (4,)`; this names the missing columns, and the ones the file has instead.
    """
    path = Path(path)
    # The header alone (a UTF-16 file is read whole in any case).
    header = _read_rows(path, None)[1] if is_utf16(path) else open_blocks(path, None)[1]
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
