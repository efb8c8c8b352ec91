"""Text sources bigger than memory: one pass over the CSV (table_stream's reading) finds each
row's byte offset, checks the rows and gives the labels (table_cells' class code); the texts stay
in the file, read on demand (`TextReader`). Tokenizing such splits (text.py) then fits the
tokenizer in one chunked pass over the training split and gives each sample's ids when it is
read (cache none), or writes them once to a memory-mapped cache (cache disk).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData, TableColumns
from netspec.data.csv_records import open_records, row_at
from netspec.data.stream import Lazy
from netspec.data.table_cells import SHOWN, CellPass, no_data_rows
from netspec.data.table_stream import ROWS
from netspec.data.text import refuse_empty, text_label_columns


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
    delimiter, header, records = open_records(path, delimiter)
    t_col, l_col = text_label_columns(header, text, label, path)
    labels = CellPass(path, delimiter, [label], [0], missing=frozenset())
    offsets = array("q")
    codes: list[np.ndarray] = []
    empty_text, empty_label = _Empty([]), _Empty([])
    chunk: list[tuple[int, list[str]]] = []  # (line, [label]) not given to `labels` yet
    for line, offset, row in records:
        if len(row) != len(header):
            raise data_error(
                f"row has {len(row)} fields; expected {len(header)} like the header",
                path,
                line=line,
            )
        if not row[t_col].strip():
            empty_text.add(line)
        if not row[l_col].strip():
            empty_label.add(line)
        chunk.append((line, [row[l_col].strip()]))
        offsets.append(offset)
        if len(chunk) >= ROWS:
            codes.append(_codes(labels, chunk))
    if not offsets:
        raise no_data_rows(header, path)
    refuse_empty(path, empty_text.lines, empty_text.count, f"an empty text (column {text!r})")
    refuse_empty(path, empty_label.lines, empty_label.count, f"an empty label (column {label!r})")
    codes.append(_codes(labels, chunk))
    plan = labels.finish(label, "classification", [])
    assert plan.classes is not None
    reader = TextReader(
        path, np.frombuffer(offsets, np.int64).copy(), len(header), t_col, delimiter
    )
    said = list(notes or [])
    said.append(
        f"the texts stay in {path.name}, read on demand (the byte offsets of its "
        f"{len(reader)} rows found once)"
    )
    return ArrayData(
        x=Lazy(reader),
        y=plan.labels(np.zeros(len(reader)), np.concatenate(codes)),
        classes=plan.classes,
        source=f"texts {path} (column {text!r}, label {label!r})",
        notes=tuple(said),
        table=TableColumns(label, ((text, None),)),
    )


def _codes(labels: CellPass, chunk: list[tuple[int, list[str]]]) -> np.ndarray:
    """The first-seen codes of a chunk's labels (the chunk emptied)."""
    if chunk:
        lines, rows = zip(*chunk)
        labels.add_rows(lines, rows)
        chunk.clear()
    return labels.take()[1][:, 0].copy()
