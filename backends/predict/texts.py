"""Predict's text inputs for a text model (its card records a tokenizer): strings, .txt and .csv files.

A string (`--text`, or a str given to Predictor.predict) is one text; a .txt file holds one text
per line; a .csv file has the training file's text column. Each text becomes its token ids by
the model's own tokenizer (netspec/data/tokenizer.py, the code training used). An empty text is
a Failed naming it; a text cut at max_length or made only of unknown tokens still gives a
result, with a note.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspec.data.csvtext import CsvTextError, read_text, rows
from netspec.data.tokenizer import UNKNOWN, Tokenizer
from netspec.errors import NetspecError

from .errors import PredictError, error

TEXT_SUFFIXES = (".txt", ".csv")


@dataclass(frozen=True)
class Text:
    """One raw text to predict, and how results name it (`text[0]`, `inputs[2]`)."""

    text: str
    name: str


def utf8_error(raw: bytes, exc: UnicodeDecodeError, path: Path) -> PredictError:
    """Invalid UTF-8 located by line and column (1-based), not only by byte offset."""
    before = raw[: exc.start]
    line = before.count(b"\n") + 1
    col = exc.start - (before.rfind(b"\n") + 1) + 1
    return PredictError.one(
        f"not UTF-8 text ({exc.reason}: byte {raw[exc.start : exc.start + 1]!r} at line {line}, "
        f"column {col}); it may be Latin-1 or Windows-1252",
        str(path),
        line=line,
        col=col,
        hint="save the file as UTF-8",
        kind="data",
    )


def read_lines(path: Path) -> list[tuple[int, str]]:
    """A .txt file's (line, text) pairs, one text per line; a last empty line is not a text."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read the text file ({exc.strerror or exc})", path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise utf8_error(raw, exc, path) from None
    return list(enumerate(text.splitlines(), start=1))


def read_column(path: Path, column: str | None) -> list[tuple[int, str]]:
    """A .csv file's (line, text) pairs from its header's `column` (the training file's)."""
    try:
        _, read = rows(read_text(path))
    except FileNotFoundError:
        raise error("no such csv file", path) from None
    except (OSError, CsvTextError, csv.Error) as exc:
        raise error(f"cannot read the CSV file ({exc})", path) from None
    if not read:
        raise error("the CSV file is empty; expected a header naming the text column", path)
    header = [h.strip() for h in read[0][1]]
    if column is None or column not in header:
        want = f"column {column!r}" if column else "a text column"
        raise error(
            f"the CSV has no {want} (the training file's); its columns: {', '.join(header)}",
            path,
            hint="give a CSV with the training file's text column, or a .txt file of one text "
            "per line",
        )
    k = header.index(column)
    return [(line, row[k] if k < len(row) else "") for line, row in read[1:]]


class TextReader:
    """Texts to raw samples (float32 ids) by the model's tokenizer, with predict's notes."""

    def __init__(self, tok: Tokenizer, note: object) -> None:
        self.tok, self.note = tok, note

    def sample_of(self, text: str, name: str) -> np.ndarray:
        """One text's ids; an empty text is an error naming it (there is nothing to predict)."""
        if not text.strip():
            raise error(
                "an empty text: there is nothing to predict from",
                name,
                hint="give a text with at least one non-space character",
            )
        tok = self.tok
        ids = tok.ids(text)
        if len(ids) > tok.max_length:
            self.note(  # type: ignore[operator]
                f"texts longer than the model's max_length ({tok.max_length} {tok.level} tokens) "
                "are cut to it, as in training"
            )
        if all(i == UNKNOWN for i in ids[: tok.max_length]):
            self.note(  # type: ignore[operator]
                f"{name}: every {tok.level} token is unknown to the model's vocabulary; its "
                "prediction says little"
            )
        return tok.encode([text])[0].astype(np.float32)


def text_samples(
    item: Text | Path, reader: TextReader, column: str | None
) -> Iterator[tuple[str, str, np.ndarray | NetspecError]]:
    """(name, stem, ids or the error) of every text of a string or a .txt/.csv file."""
    if isinstance(item, Text):
        texts = [(item.name, item.name, item.text)]
    else:
        suffix = item.suffix.lower()
        if suffix not in TEXT_SUFFIXES:
            raise error(
                f'a text model takes texts: --text "...", a .txt file (one text per line) or a '
                f".csv file with the column {column!r}; not '{item.suffix or item.name}'",
                item,
            )
        if not item.is_file():
            raise error(f"no such {suffix[1:]} file", item)
        pairs = read_lines(item) if suffix == ".txt" else read_column(item, column)
        texts = [(f"{item}:{line}", f"{item.stem}_{line}", text) for line, text in pairs]
    for name, stem, text in texts:
        try:
            yield name, stem, reader.sample_of(text, name)
        except NetspecError as err:
            yield name, stem, err
