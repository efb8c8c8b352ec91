"""The per-cell CSV pass, as it was before the chunked one (netspec/data/table_chunk.py): the
definition CellPass.add_rows is tested equal to, bit for bit (tests/test_table_chunks.py). One
Python call per cell: too slow for large files, kept here because it is easy to read."""

from __future__ import annotations

import math

import numpy as np

from netspec.data import table_cells
from netspec.data._common import data_error
from netspec.data.csvtext import number
from netspec.data.table_cells import CellPass, Column


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
                col.text.add(line, cell)
            elif not math.isfinite(value):
                col.infinite.add(line, cell)
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
