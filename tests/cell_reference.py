"""The per-cell CSV pass and the line-by-line record readers, as they were before the chunked
ones (netspec/data/table_chunk.py, csv_records.py, csvtext.rows): the definitions those are
tested equal to, bit for bit (tests/test_table_chunks.py). Python calls per cell and per line:
too slow for large files, kept here because they are easy to read."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from netspec.data import table_cells
from netspec.data._common import data_error
from netspec.data.csvtext import delimiter_of, not_utf8, number
from netspec.data.table_cells import SHOWN, CellPass, Column, _Bad


def _add(bad: _Bad, line: int, cell: str) -> None:
    """One bad cell: counted, and listed while fewer than SHOWN are."""
    bad.count += 1
    if len(bad.shown) < SHOWN:
        bad.shown.append((line, cell))


def code(col: Column, cell: str, value: float | None) -> int:
    """The first-seen code of a kept cell; -1 for a number past NUMBER_STRINGS (its code is
    never used: such a column is numeric, or refused)."""
    finite = value is not None and math.isfinite(value)
    if finite and col.overflow:
        return -1
    found = col.vocab.get(cell)
    if found is not None:
        return found
    if finite:
        if col.numbers >= table_cells.NUMBER_STRINGS:  # looked up: tests lower it
            col.overflow = True
            return -1
        col.numbers += 1
    found = col.vocab[cell] = len(col.vocab)
    return found


class ReferencePass(CellPass):
    """CellPass fed one row at a time (`add`), each cell parsed by its own Python calls."""

    def add(self, line: int, fields: list[str]) -> bool:
        """One data row; whether it is kept (no missing value in a used column)."""
        if len(fields) != len(self.header):
            raise data_error(
                f"row has {len(fields)} fields; expected {len(self.header)} like the header",
                self.path,
                line=line,
            )
        self.rows += 1
        cells = [fields[i].strip() for i in self.used]
        values: list[tuple[float | None, bool]] = []
        missing = False
        for col, cell in zip(self.columns, cells):
            if cell in self.missing:
                col.missing += 1
                missing = True
                values.append((None, True))
                continue
            col.present += 1
            try:
                value: float | None = float(cell)
                plain = True
            except ValueError:
                value, plain = number(cell, self.delimiter), False
            if value is None:
                _add(col.text, line, cell)
            elif not math.isfinite(value):
                _add(col.infinite, line, cell)
            values.append((value, plain))
        if missing:
            return False
        self.kept += 1
        nums, codes = [], []
        for col, cell, (value, plain) in zip(self.columns, cells, values):
            if value is None or not math.isfinite(value):
                if col.kept_text is None:
                    col.kept_text = cell
            elif not plain and col.separator is None:
                col.separator = cell
            nums.append(math.nan if value is None else value)
            codes.append(code(col, cell, value))
        self._num.append(np.asarray([nums], dtype=np.float64))
        self._code.append(np.asarray([codes], dtype=np.int32))
        self._pending += 1
        return True


def reference_records(
    path: Path, delimiter: str, start: int, before: int
) -> Iterator[tuple[int, int, list[str]]]:
    """csv_records._records as it was: every line decoded and handed to one csv reader."""
    starts: list[int] = []

    def lines(f: Any) -> Iterator[str]:
        at = start
        for raw in f:
            starts.append(at)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise data_error(
                    f"cannot read the CSV file: {not_utf8(e, raw, at)}", path
                ) from None
            at += len(raw)
            yield text

    with path.open("rb") as f:
        f.seek(start)
        reader = csv.reader(lines(f), delimiter=delimiter)
        try:
            for row in reader:
                offset = starts[0]
                starts.clear()
                if any(cell.strip() for cell in row):
                    yield reader.line_num + before, offset, row
        except csv.Error as e:
            raise data_error(f"cannot read CSV file: {e}", path) from None


def reference_rows(text: str, delimiter: str | None = None) -> tuple[str, list]:
    """csvtext.rows as it was: one csv reader over the text, a Python step per row."""
    _, _, rest = text.partition("\n")
    delimiter, excel = delimiter_of(text, delimiter)
    reader = csv.reader(io.StringIO(rest if excel else text, newline=""), delimiter=delimiter)
    skip = 1 if excel else 0
    out = [(reader.line_num + skip, row) for row in reader if any(cell.strip() for cell in row)]
    return delimiter, out
