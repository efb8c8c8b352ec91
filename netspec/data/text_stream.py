"""Text sources read in one pass over the CSV (csv_records' blocks), which checks the rows and
gives the labels (table_cells' class code): kept in memory (`read_texts`, load_texts' path for
UTF-8 files: the two columns alone, never the whole file's rows), or, bigger than memory, left
in the file at each row's byte offset and read on demand (`stream_texts`, `TextReader`).
Tokenizing such splits (text.py) then fits the tokenizer in one chunked pass over the training
split and gives each sample's ids when it is read (cache none), or writes them once to a
memory-mapped cache (cache disk).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData, TableColumns
from netspec.data.csv_records import open_records, row_at
from netspec.data.stream import Lazy
from netspec.data.table_cells import SHOWN, CellPass, no_data_rows, ragged_row
from netspec.data.table_columns import column
from netspec.data.table_stream import ROWS
from netspec.errors import DataError, Problem


@dataclass(frozen=True, eq=False)
class TextReader:
    """The texts of a CSV's rows, read on demand: row i starts at offsets[i]; a sample is a 0-d
    object array holding the text."""

    path: Path
    offsets: np.ndarray  # int64
    fields: int  # the header's
    column: int
    delimiter: str

    def __len__(self) -> int:
        return len(self.offsets)

    def read(self, i: int) -> np.ndarray:
        at = int(self.offsets[i])
        row = row_at(self.path, at, self.delimiter)
        if len(row) != self.fields or not row[self.column].strip():
            raise data_error(
                f"the row at byte {at} is not the row found there when the run started: the "
                "file changed",
                self.path,
                hint="run again to read the file afresh",
            )
        out = np.empty((), dtype=object)
        out[()] = row[self.column]
        return out


@dataclass
class _Empty:
    lines: list[int]
    count: int = 0

    def add(self, line: int) -> None:
        self.count += 1
        if len(self.lines) < SHOWN:
            self.lines.append(line)


def read_texts(
    path: str | Path, *, text: str, label: str, delimiter: str | None = None
) -> ArrayData:
    """load_texts' data from the pass, the texts kept in memory (an object array)."""
    path = Path(path)
    got = _pass(path, text, label, delimiter, keep=True)
    x = np.empty(len(got.texts), dtype=object)
    x[:] = got.texts
    return texts_data(path, text, label, x, got.y, got.classes)


def stream_texts(
    path: str | Path,
    *,
    text: str,
    label: str,
    delimiter: str | None = None,
    notes: list[str] | None = None,
) -> ArrayData:
    """load_texts' data with x the texts left in the file (a Lazy of TextReader): the same
    header and row checks, empty texts and labels refused by line, and the same labels."""
    path = Path(path)
    got = _pass(path, text, label, delimiter, keep=False)
    offsets = np.frombuffer(got.offsets, np.int64).copy()
    reader = TextReader(path, offsets, got.fields, got.column, got.delimiter)
    said = list(notes or [])
    said.append(
        f"the texts stay in {path.name}, read on demand (the byte offsets of its "
        f"{len(reader)} rows found once)"
    )
    return texts_data(path, text, label, Lazy(reader), got.y, got.classes, said)


def texts_data(
    path: Path,
    text: str,
    label: str,
    x: Any,
    y: np.ndarray,
    classes: tuple[str, ...],
    notes: Sequence[str] = (),
) -> ArrayData:
    """A text source's ArrayData: the texts x (in memory or in the file) and class indices y."""
    return ArrayData(
        x=x,
        y=y,
        classes=classes,
        source=f"texts {path} (column {text!r}, label {label!r})",
        notes=tuple(notes),
        # The columns, so predict and evaluate find the texts in a CSV of the same format.
        table=TableColumns(label, ((text, None),)),
    )


@dataclass
class _Passed:
    delimiter: str
    fields: int  # the header's
    column: int  # the texts'
    offsets: array  # each row's first byte
    texts: list[str]  # kept (read_texts) or not (stream_texts)
    y: np.ndarray
    classes: tuple[str, ...]


def _pass(path: Path, text: str, label: str, delimiter: str | None, keep: bool) -> _Passed:
    """One pass over the rows: each checked (field count, empty text or label), its byte
    offset, its label's code (ROWS at a time) and, if `keep`, its text."""
    delimiter, header, records = open_records(path, delimiter)
    t_col, l_col = text_label_columns(header, text, label, path)
    labels = CellPass(path, delimiter, [label], [0], missing=frozenset())
    offsets, texts = array("q"), []
    codes: list[np.ndarray] = []
    empty_text, empty_label = _Empty([]), _Empty([])
    chunk: list[tuple[int, list[str]]] = []  # (line, [label]) not given to `labels` yet
    for line, offset, row in records:
        if len(row) != len(header):
            raise ragged_row(path, line, len(row), len(header))
        if not row[t_col].strip():
            empty_text.add(line)
        if not row[l_col].strip():
            empty_label.add(line)
        chunk.append((line, [row[l_col].strip()]))
        offsets.append(offset)
        if keep:
            texts.append(row[t_col])
        if len(chunk) >= ROWS:
            codes.append(_codes(labels, chunk))
    if not offsets:
        raise no_data_rows(header, path)
    refuse_empty(path, empty_text.lines, empty_text.count, f"an empty text (column {text!r})")
    refuse_empty(path, empty_label.lines, empty_label.count, f"an empty label (column {label!r})")
    codes.append(_codes(labels, chunk))
    plan = labels.finish(label, "classification", [])
    assert plan.classes is not None
    y = plan.labels(np.zeros(len(offsets)), np.concatenate(codes))
    return _Passed(delimiter, len(header), t_col, offsets, texts, y, plan.classes)


def text_label_columns(header: list[str], text: str, label: str, path: Path) -> tuple[int, int]:
    """The indices of the text and the label columns in `header`, two different columns."""
    t_col = column(header, text, path, "text")
    l_col = column(header, label, path, "label")
    if t_col == l_col:
        raise data_error(f"the text and label columns are both {text!r}", path)
    return t_col, l_col


def refuse_empty(path: Path, lines: list[int], count: int, what: str) -> None:
    """One error naming the first rows (`lines`) of `count` that have `what` (none: nothing)."""
    if not count:
        return
    problems = [
        Problem(f"row has {what}", str(path), line, hint="fill it in, or remove the row")
        for line in lines[:SHOWN]
    ]
    if count > SHOWN:
        problems.append(Problem(f"... and {count - SHOWN} more rows with {what}"))
    raise DataError(problems, stage="data")


def _codes(labels: CellPass, chunk: list[tuple[int, list[str]]]) -> np.ndarray:
    """The first-seen codes of a chunk's labels (the chunk emptied)."""
    if chunk:
        lines, rows = zip(*chunk)
        labels.add_rows(lines, rows)
        chunk.clear()
    return labels.take()[1][:, 0].copy()
