"""CSV text as spreadsheets write it: the encoding (UTF-8 with or without BOM, UTF-16), the
delimiter (comma, semicolon, tab or bar), and numbers with thousands separators or decimal
commas. Shared by the training loader (table.py) and `netspec predict`'s CSV rows."""

from __future__ import annotations

import codecs
import csv
import io
import re
from itertools import chain, compress
from pathlib import Path

DELIMITERS = (",", ";", "\t", "|")
_SAMPLE_ROWS = 20
# "1,234" and "1,234,567.5": thousands separators of a comma-delimited file (a quoted cell).
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")
# "5,1" and "1.234,5": decimal commas of a semicolon (or tab) delimited file (Excel in Europe).
_DECIMAL_COMMA = re.compile(r"[+-]?(\d{1,3}(\.\d{3})+|\d+),\d+")


# Excel's first line naming the delimiter of the rows after it: `sep=;`.
_EXCEL_SEP = re.compile(r"sep=(.)")


class CsvTextError(ValueError):
    """The file cannot be read as text; the message says why and what to do."""


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def is_utf16(path: Path) -> bool:
    """Whether the file starts with a UTF-16 byte-order mark, as Excel's Unicode Text does (False
    when it cannot be read: the reading says why)."""
    try:
        with path.open("rb") as f:
            return f.read(2) in _UTF16_BOMS
    except OSError:
        return False


def read_text(path: Path) -> str:
    """The file's text: UTF-16 when it starts with a UTF-16 byte-order mark, else UTF-8 (a BOM,
    as spreadsheet exports write, is dropped). FileNotFoundError and OSError pass through."""
    raw = path.read_bytes()
    if raw[:2] in _UTF16_BOMS:
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as e:
            raise CsvTextError(f"not valid UTF-16 text ({e.reason} at byte {e.start})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise not_utf8(e, raw) from None


def not_utf8(e: UnicodeDecodeError, raw: bytes, at: int = 0) -> CsvTextError:
    """The error of bytes `raw` (found at byte `at` of the file) that are not UTF-8."""
    return CsvTextError(
        f"not UTF-8 text ({e.reason} at byte {at + e.start}: {raw[e.start : e.start + 1]!r}); "
        "it may be Latin-1 or Windows-1252. Save it as UTF-8 (Excel: CSV UTF-8)"
    )


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the header into 2 or more fields and most rows into as many.

    Ties go to more fields; a comma when no delimiter splits the header (a one-column file).
    """
    # The first 64 KB hold the first rows of any sane table; a 2 GB file is not split twice.
    lines = [line for line in text[: 1 << 16].splitlines() if line.strip()][:_SAMPLE_ROWS]
    best, best_key = ",", (-1, 0)
    for delimiter in DELIMITERS:
        parsed = list(csv.reader(lines, delimiter=delimiter))
        fields = len(parsed[0]) if parsed else 0
        if fields < 2:
            continue
        key = (sum(len(row) == fields for row in parsed[1:]), fields)
        if key > best_key:
            best, best_key = delimiter, key
    return best


def rows(text: str, delimiter: str | None = None) -> tuple[str, list[tuple[int, list[str]]]]:
    """The delimiter (given, named by Excel's `sep=;` first line, or sniffed) and (line, cells)
    of every non-blank row (a `sep=` line is not a row)."""
    delimiter, excel = delimiter_of(text[: 1 << 16], delimiter)  # all it reads: no copy
    body = text.partition("\n")[2] if excel else text
    skip = 1 if excel else 0
    # Without a lone carriage return (a line break to StringIO, not to split), a text whose
    # records are each one line is split by csv in one call: no Python step per row.
    lone = "\r" in body and body.count("\r") != body.count("\r\n")
    found = None if lone else line_records(body, delimiter)
    if found is not None:
        filled = list(map(str.strip, map("".join, found)))  # not blank, nor only separators
        lines = range(1 + skip, len(found) + 1 + skip)
        return delimiter, list(zip(compress(lines, filled), compress(found, filled)))
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=delimiter)
    out = [(reader.line_num + skip, row) for row in reader if "".join(row).strip()]
    return delimiter, out


def line_records(text: str, delimiter: str) -> list[list[str]] | None:
    """The records of `text`, one per line (split at "\n"), read by one csv reader; None when
    a record spans lines (a quoted field holding a line break) or csv refuses a line."""
    pieces = text.split("\n")
    if text.endswith("\n"):
        pieces.pop()
    # A last line of its own: a quoted field left open anywhere swallows it, and lines with it.
    end = "s" if delimiter != "s" else "t"
    try:
        found = list(csv.reader(chain(pieces, [end]), delimiter=delimiter))
    except csv.Error:
        return None
    if len(found) != len(pieces) + 1 or found.pop() != [end]:
        return None
    return found


def delimiter_of(head: str, delimiter: str | None) -> tuple[str, bool]:
    """The delimiter of a text starting with `head` (given, named by Excel's `sep=;` first
    line, or sniffed), and whether that first line is Excel's (not a row)."""
    excel = _EXCEL_SEP.fullmatch(head.partition("\n")[0].rstrip("\r"))
    if excel:
        return delimiter or excel.group(1), True
    return delimiter or sniff_delimiter(head), False


def number(cell: str, delimiter: str = ",") -> float | None:
    """A cell as a number, or None: plain floats, thousands separators in a comma-delimited
    file ("1,234" is 1234), decimal commas in a file delimited otherwise ("5,1" is 5.1)."""
    try:
        return float(cell)
    except ValueError:
        pass
    if delimiter == "," and _THOUSANDS.fullmatch(cell):
        return float(cell.replace(",", ""))
    if delimiter != "," and _DECIMAL_COMMA.fullmatch(cell):
        return float(cell.replace(".", "").replace(",", "."))
    return None


def separator_note(column: str, cells: list[str], delimiter: str) -> str | None:
    """What number() read in a column with separators (a note for the user), or None."""
    for cell in cells:
        try:
            float(cell)
            continue
        except ValueError:
            value = number(cell, delimiter)
        if value is not None:
            kind = "thousands separators" if delimiter == "," else "decimal commas"
            return f"column {column!r} has {kind}: {cell!r} is read as {value:g}"
    return None
