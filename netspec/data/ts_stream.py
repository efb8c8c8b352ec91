"""`.ts` time series bigger than memory: one pass over the file, a line at a time, through the
in-memory reading's own Scanner (every case parsed and checked, its length, label and byte
offset kept, never its values); the cases then read on demand (`TsReader`: parsed, filled and
padded by ts.shaped, as in memory), each epoch (cache none) or once into the disk cache (disk).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData
from netspec.data.stream import Lazy, content_key, disk_cached
from netspec.data.ts import (
    Missing,
    Scanner,
    _Header,
    dims_error,
    holes_error,
    shaped,
    ts_labels,
    ts_notes,
)

_BOM = b"\xef\xbb\xbf"


def _lines(path: Path) -> Iterator[tuple[int, int, str]]:
    """(line number, byte offset, text) of every line of a UTF-8 file (a BOM dropped)."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise data_error(
            f"{path}: no such file", hint="a .ts file such as GunPoint_TRAIN.ts"
        ) from None
    except OSError as exc:
        raise data_error(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    with f:
        at = 0
        for n, raw in enumerate(f, 1):
            start = len(_BOM) if n == 1 and raw.startswith(_BOM) else 0
            try:
                text = raw[start:].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise data_error(f"{path}: cannot be read as UTF-8 text ({exc})") from None
            yield n, at, text
            at += len(raw)


@dataclass
class _Cases:
    """What the pass keeps of a file's cases: where each is, its length and label."""

    scan: Scanner
    offsets: array
    lines: array
    lengths: list[int]
    labels: list[str]
    holes: tuple[np.ndarray, int] | None = None  # the first case with a missing value, its line
    filled: int = 0


def _pass(path: Path) -> _Cases:
    cases = _Cases(Scanner(path), array("q"), array("q"), [], [])
    for n, at, text in _lines(path):
        got = cases.scan.line(n, text)
        if got is None:
            continue
        case, label = got
        cases.offsets.append(at)
        cases.lines.append(n)
        cases.lengths.append(int(case.shape[1]))
        cases.labels.append(label)
        holes = int(np.isnan(case).sum())
        cases.filled += holes
        if holes and cases.holes is None:
            cases.holes = (case, n)
    cases.scan.end(len(cases.offsets))
    return cases


@dataclass(frozen=True, eq=False)
class TsReader:
    """The cases of a .ts file read on demand: case i is the line at offsets[i] (line lines[i])."""

    path: Path
    offsets: np.ndarray  # int64
    lines: np.ndarray  # int64
    head: _Header  # the file's header, its dimensions known
    width: int
    missing: Missing | None

    def __len__(self) -> int:
        return len(self.offsets)

    def read(self, i: int) -> np.ndarray:
        n = int(self.lines[i])
        try:
            with self.path.open("rb") as f:
                f.seek(int(self.offsets[i]))
                text = f.readline().decode("utf-8", "replace")
        except OSError as exc:
            raise data_error(f"cannot read the case: {exc}", self.path, line=n) from None
        scan = Scanner(self.path)
        scan.head, scan.data_line = self.head, 1
        got = scan.line(n, text)
        if got is None:
            raise data_error(
                "the case is gone: the file changed since the run started", self.path, line=n
            )
        return shaped(got[0], self.width, self.missing, self.path, n)[0]


def stream_ts(
    path: Path,
    *,
    length: int | None = None,
    missing: Missing | None = None,
    train: Path | None = None,
    cache: str = "none",
    notes: list[str] | None = None,
) -> ArrayData:
    """load_ts's data with x read on demand: the same checks, errors, notes, padding and labels."""
    cases = _pass(path)
    head = cases.scan.head
    assert head.dims is not None
    ref = _pass(train) if train is not None else cases
    if ref.scan.head.dims != head.dims:
        raise dims_error(head.dims, train or path, ref.scan.head.dims, path, cases.lines[0])  # type: ignore[arg-type]
    width = length or max(ref.lengths)
    if cases.holes is not None and missing is None:
        raise holes_error(cases.holes[0], path, cases.holes[1])
    said = ts_notes(path, cases.filled if missing else 0, missing, cases.lengths, width)
    y = ts_labels(cases.labels, head.classes, cases.lines, path)
    offsets = np.frombuffer(cases.offsets, np.int64).copy()
    lines = np.frombuffer(cases.lines, np.int64).copy()
    x = Lazy(TsReader(path, offsets, lines, head, width, missing))
    said += list(notes or [])
    if cache == "none":
        said.append(f"cache: none: every batch parses its cases from {path.name}")
    else:
        files = [path] if train is None else [path, train]
        options = {"length": length, "missing": missing, "width": width}
        x = disk_cached(x, content_key("ts", files, options), said)
    return ArrayData(x, y, head.classes, str(path), tuple(said))
