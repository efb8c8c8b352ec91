"""A CSV file's records read from disk without holding the file: (line, byte offset, fields) of
each, for the streamed tables and texts (table_stream.py, text_stream.py). The file is read a
block of whole lines at a time; a block whose records are each one line is split by the csv
module in one call; a block where a quoted field spans lines, or that is not UTF-8 or that csv
refuses, is read line by line, as every block once was, so the records, their lines and the
errors (which record first) are the same either way.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from itertools import accumulate, chain, compress
from pathlib import Path
from typing import BinaryIO

from netspec.data._common import data_error
from netspec.data.csvtext import delimiter_of, line_records, not_utf8
from netspec.data.table_columns import check_header

_BOM = b"\xef\xbb\xbf"
_HEAD = 1 << 16  # bytes the delimiter is sniffed from (csvtext.sniff_delimiter reads 64 KB)
BLOCK = 1 << 20  # bytes read at a time (then up to the end of the line)

Record = tuple[int, int, list[str]]  # the record's last line, its first byte, its fields
Records = tuple[list[int], list[int], list[list[str]]]  # a block's: lines, first bytes, fields


def _head(path: Path, delimiter: str | None) -> tuple[str, int, int]:
    """The delimiter, the byte where the rows start (after a BOM and Excel's `sep=` line), and
    the lines before that byte."""
    try:
        with path.open("rb") as f:
            head = f.read(_HEAD)
    except FileNotFoundError:
        raise data_error("CSV file not found", path) from None
    except OSError as e:
        raise data_error(f"cannot read CSV file: {e}", path) from None
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise data_error(
            "a UTF-16 CSV file is read whole: it cannot stream (train.data.cache disk or none)",
            path,
            hint="save it as UTF-8 (Excel: CSV UTF-8) to stream it, or use cache: ram",
        )
    start = len(_BOM) if head.startswith(_BOM) else 0
    delimiter, excel = delimiter_of(head[start:].decode("utf-8", "replace"), delimiter)
    if excel:
        end = head.find(b"\n", start)
        start = end + 1 if end >= 0 else len(head)
    return delimiter, start, int(excel)


def _blocks(path: Path, delimiter: str, start: int, before: int) -> Iterator[Records]:
    """The non-blank records from byte `start`, a block at a time: their lines (each record's
    last, counted as csvtext.rows counts them), byte offsets and fields."""
    with path.open("rb") as f:
        f.seek(start)
        at, line = start, before  # where the next block starts: its byte, the lines before it
        while block := f.read(BLOCK):
            if not block.endswith(b"\n"):
                block += f.readline()
            fast = _split(block, at, line, delimiter)
            if fast is not None:
                yield fast
                at, line = at + len(block), line + block.count(b"\n")
                continue
            lines = _Lines(block, f, at, path)
            for record in _reader(lines, delimiter, line, path):  # each as it is read
                yield [record[0]], [record[1]], [record[2]]
            at, line = at + lines.taken, line + lines.count


def _split(block: bytes, at: int, line: int, delimiter: str) -> Records | None:
    """The records of a block whose records are each one line. None when one spans lines, or
    the block is not UTF-8, or csv refuses a line (the line-by-line reader then says which)."""
    try:
        rows = line_records(block.decode("utf-8"), delimiter)
    except UnicodeDecodeError:
        return None
    if rows is None:
        return None
    sizes = map(len, block.split(b"\n"))
    starts = accumulate(map((1).__add__, sizes), initial=at)  # each line's first byte
    filled = list(map(str.strip, map("".join, rows)))  # not a blank line, nor only separators
    lines = range(line + 1, line + 1 + len(rows))
    return (
        list(compress(lines, filled)),
        list(compress(starts, filled)),
        list(compress(rows, filled)),
    )


class _Lines:
    """The decoded lines of a block, then of the file after it while a record is open (a
    quoted field spanning the block's end); each line's byte offset kept until its record is
    read."""

    def __init__(self, block: bytes, f: BinaryIO, at: int, path: Path) -> None:
        self.block, self.f, self.at, self.path = io.BytesIO(block), f, at, path
        self.size = len(block)
        self.taken = 0  # bytes taken
        self.count = 0  # lines taken
        self.starts: list[int] = []  # the byte offsets of the lines of the record being read

    def __iter__(self) -> Iterator[str]:
        while raw := self.block.readline() or self.f.readline():
            at = self.at + self.taken
            self.starts.append(at)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise data_error(
                    f"cannot read the CSV file: {not_utf8(e, raw, at)}", self.path
                ) from None
            self.taken += len(raw)
            self.count += 1
            yield text

    @property
    def done(self) -> bool:
        """Whether the block's lines are all taken (a record ended at or after its end)."""
        return self.taken >= self.size


def _reader(lines: _Lines, delimiter: str, before: int, path: Path) -> Iterator[Record]:
    """The records of `lines`, read by one csv reader, until the block's lines are taken."""
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        for row in reader:
            offset = lines.starts[0]
            lines.starts.clear()
            if "".join(row).strip():  # not a blank line (nor one of separators and spaces)
                yield reader.line_num + before, offset, row
            if lines.done:
                return
    except csv.Error as e:  # a NUL byte, a field larger than csv's limit
        raise data_error(f"cannot read CSV file: {e}", path) from None


def open_blocks(path: Path, delimiter: str | None) -> tuple[str, list[str], Iterator[Records]]:
    """The file's delimiter, its checked header and its data records, a block at a time."""
    delimiter, start, before = _head(path, delimiter)
    blocks = _blocks(path, delimiter, start, before)
    for lines, offsets, rows in blocks:
        if rows:
            header = [h.strip() for h in rows[0]]
            check_header(header, lines[0], path, delimiter)
            return delimiter, header, chain([(lines[1:], offsets[1:], rows[1:])], blocks)
    raise data_error("CSV file is empty; expected a header row and data rows", path)


def open_records(path: Path, delimiter: str | None) -> tuple[str, list[str], Iterator[Record]]:
    """The file's delimiter, its checked header and an iterator over its data records."""
    delimiter, header, blocks = open_blocks(path, delimiter)
    return delimiter, header, chain.from_iterable(zip(*block) for block in blocks)


def row_at(path: Path, at: int, delimiter: str) -> list[str]:
    """The CSV row that starts at byte `at` of `path` (a quoted field may span lines)."""
    try:
        with path.open("rb") as f:
            f.seek(at)
            lines = (raw.decode("utf-8", "replace") for raw in f)
            return next(csv.reader(lines, delimiter=delimiter), [])
    except (OSError, csv.Error) as e:
        raise data_error(f"cannot read the row at byte {at}: {e}", path) from None
