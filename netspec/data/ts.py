"""UCR/UEA `.ts` time-series files (the sktime/aeon text format) as (N, channels, length) arrays.

The format (sktime's `load_from_tsfile_to_dataframe`, aeon's `load_from_ts_file`): `#` comment
lines; `@` header lines (`@problemName`, `@timeStamps`, `@missing`, `@univariate`, `@dimensions`,
`@equalLength`, `@seriesLength`, `@classLabel true <names...>` or `false`, `@targetLabel`),
then `@data` and one case per line: its dimensions separated by `:`, the values of each by `,`,
`?` for a missing value, and the class label (or regression target) after the last `:`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from netspec.data._common import data_error, plain
from netspec.data.arraydata import ArrayData
from netspec.errors import DataError

Missing = Literal["zero", "interpolate"]
MISSING_HINT = "set `train.data.missing: zero` or `interpolate` to fill missing values ('?')"


@dataclass
class TsFile:
    """One parsed `.ts` file: each case's values (channels, its length), labels and their lines."""

    path: Path
    classes: tuple[str, ...] | None  # @classLabel's names in header order; None: regression
    series: list[np.ndarray] = field(default_factory=list)  # (channels, length) float64, NaN = ?
    labels: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the 1-based line of each case
    data_line: int = 0  # the @data line

    @property
    def dims(self) -> int:
        return int(self.series[0].shape[0])

    @property
    def lengths(self) -> list[int]:
        return [int(s.shape[1]) for s in self.series]


def _flag(value: str, tag: str, path: Path, line: int) -> bool:
    if value.lower() not in ("true", "false"):
        raise data_error(f"@{tag} {value!r}: expected true or false", path, line=line)
    return value.lower() == "true"


def _values(text: str, dim: int, path: Path, line: int) -> np.ndarray:
    out = np.empty(len(text.split(",")), np.float64)
    for i, v in enumerate(text.split(",")):
        v = v.strip()
        if v == "?":
            out[i] = math.nan
            continue
        try:
            out[i] = float(v)
        except ValueError:
            raise data_error(
                f"dimension {dim + 1}, value {i + 1}: {v!r} is not a number",
                path,
                line=line,
                hint="values are numbers separated by ',', dimensions by ':', '?' marks a "
                "missing value",
            ) from None
        if math.isinf(out[i]):
            raise data_error(
                f"dimension {dim + 1}, value {i + 1}: {v!r} is infinite", path, line=line
            )
    return out


@dataclass
class _Header:
    """What the header lines said so far, with the line that said it: every case line is
    checked against it and named by it in its message."""

    classes: tuple[str, ...] | None = None
    labelled: bool = False
    target: bool = False
    dims: int | None = None
    label_line: int = 0
    dims_said: str = ""  # where the dimension count came from, for messages

    def take(self, tag: str, words: list[str], path: Path, n: int) -> None:
        """One header line other than @data (`tag` lower-cased, `words` after it)."""
        if tag == "timestamps" and words and _flag(words[0], "timeStamps", path, n):
            raise data_error(
                "@timeStamps true: series with time stamps are not read yet",
                path, line=n, hint="write the values without (time, value) pairs",
            )  # fmt: skip
        elif tag == "univariate" and words and _flag(words[0], "univariate", path, n):
            self.dims, self.dims_said = 1, f"@univariate true (line {n}) says 1"
        elif tag == "dimensions" and words:
            if not words[0].isdigit() or int(words[0]) < 1:
                raise data_error(f"@dimensions {words[0]!r}: expected a count", path, line=n)
            self.dims = int(words[0])
            self.dims_said = f"@dimensions (line {n}) says {self.dims}"
        elif tag == "classlabel" and words:
            self.labelled, self.label_line = _flag(words[0], "classLabel", path, n), n
            if self.labelled and len(words) < 2:
                raise data_error(
                    "@classLabel true names no classes", path, line=n,
                    hint="list them: `@classLabel true 1 2`",
                )  # fmt: skip
            self.classes = tuple(words[1:]) if self.labelled else None
        elif tag in ("missing", "equallength") and words:
            _flag(words[0], {"missing": "missing", "equallength": "equalLength"}[tag], path, n)
        elif tag == "targetlabel" and words:
            self.target = _flag(words[0], "targetLabel", path, n)


def _case(line: str, head: _Header, path: Path, n: int) -> tuple[np.ndarray, str]:
    """One case line as (channels, length) values and its label, checked against the header
    (the first case sets the dimension count when the header did not)."""
    body, _, label = line.rpartition(":")
    label = label.strip()
    if not body:
        raise data_error(f"{line[:30]!r}: a case needs its values, ':' and its label", path, line=n)
    if head.classes is not None and label not in head.classes:
        raise data_error(
            f"label {label!r} is not one of @classLabel's ({plain(head.classes)})", path, line=n,
            hint=f"add it to the @classLabel line ({head.label_line}), or correct the label",
        )  # fmt: skip
    parts = body.split(":")
    if head.dims is None:
        head.dims, head.dims_said = len(parts), f"line {n} has {len(parts)}"
    if len(parts) != head.dims:
        raise data_error(
            f"{len(parts)} dimensions, but {head.dims_said}", path, line=n,
            hint="every case has the same dimensions, separated by ':', the label last",
        )  # fmt: skip
    chans = [_values(p, d, path, n) for d, p in enumerate(parts)]
    if any(len(c) == 0 for c in chans):
        raise data_error("an empty dimension", path, line=n)
    case = np.zeros((head.dims, max(len(c) for c in chans)), np.float64)
    for d, c in enumerate(chans):
        case[d, : len(c)] = c  # a shorter dimension: zeros at its end
    return case, label


class Scanner:
    """A .ts file's lines in order: the header, then each case parsed and checked against it;
    one definition for the file read whole (read_ts) and streamed (ts_stream.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.head = _Header()
        self.data_line = 0  # the @data line (0: still in the header)

    def line(self, n: int, raw: str) -> tuple[np.ndarray, str] | None:
        """Line n: a case's (channels, length) values and label, or None (header, comment)."""
        path, line = self.path, raw.strip()
        if not line or line.startswith("#"):
            return None
        if not self.data_line:
            if not line.startswith("@"):
                raise data_error(
                    f"{line[:30]!r} before the @data line", path, line=n,
                    hint="header lines start with '@' and end with '@data'; comments with '#'",
                )  # fmt: skip
            tag, _, rest = line[1:].partition(" ")
            if tag.lower() != "data":
                self.head.take(tag.lower(), rest.split(), path, n)
            elif not self.head.labelled and not self.head.target:
                raise data_error(
                    "no labels: the header has no `@classLabel true <names...>`",
                    path, line=n, hint="the ts source reads labelled problems",
                )  # fmt: skip
            else:
                self.data_line = n
            return None
        if line.startswith("@"):
            raise data_error(f"a header line after @data ({self.data_line})", path, line=n)
        return _case(line, self.head, path, n)

    def end(self, cases: int) -> None:
        """After the last line: a file without @data, or without cases, is refused."""
        if not self.data_line:
            raise data_error(
                f"{self.path}: no @data line", self.path, hint="the cases follow a line `@data`"
            )
        if not cases:
            raise data_error("no cases after @data", self.path, line=self.data_line)


def read_ts(path: Path) -> TsFile:
    """Parse a `.ts` file; every problem is one DataError at its file:line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise data_error(
            f"{path}: no such file", hint="a .ts file such as GunPoint_TRAIN.ts"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise data_error(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    scan = Scanner(path)
    ts = TsFile(path, None)
    for n, raw in enumerate(text.splitlines(), 1):
        got = scan.line(n, raw)
        if got is not None:
            ts.series.append(got[0])
            ts.labels.append(got[1])
            ts.lines.append(n)
    scan.end(len(ts.series))
    ts.classes, ts.data_line = scan.head.classes, scan.data_line
    return ts


def _fill(case: np.ndarray, how: Missing) -> None:
    """Fill NaNs in place: zeros, or linear interpolation per channel (ends: the nearest value)."""
    for row in case:
        bad = np.isnan(row)
        if not bad.any():
            continue
        if how == "zero" or bad.all():
            row[bad] = 0.0
        else:
            idx = np.arange(len(row))
            row[bad] = np.interp(idx[bad], idx[~bad], row[~bad])


def holes_error(case: np.ndarray, path: Path, n: int) -> DataError:
    """The error of a case with a missing value when `missing` is not set."""
    d, i = (int(v[0]) for v in np.nonzero(np.isnan(case)))
    return data_error(
        f"a missing value ('?') in dimension {d + 1} at step {i + 1}", path, line=n,
        hint=MISSING_HINT,
    )  # fmt: skip


def shaped(
    case: np.ndarray, width: int, missing: Missing | None, path: Path, n: int
) -> tuple[np.ndarray, int]:
    """One case (line n) as x's sample: missing values filled, zero-padded or cut to `width`,
    float32; and how many values were filled."""
    holes = int(np.isnan(case).sum())
    if holes and missing is None:
        raise holes_error(case, path, n)
    if holes:
        _fill(case, missing)  # type: ignore[arg-type]
    out = np.zeros((case.shape[0], width), np.float32)
    out[:, : min(width, case.shape[1])] = case[:, :width]
    return out, holes


def ts_notes(
    path: Path, filled: int, missing: Missing | None, lengths: list[int], width: int
) -> list[str]:
    """What reading the file did that a user should know: filled values, padding, cuts."""
    notes = [f"{path.name}: {filled} missing values filled ({missing})"] if filled else []
    lo, hi = min(lengths), max(lengths)
    if lo != hi or hi != width:
        notes.append(
            f"{path.name}: series of length {lo}-{hi} zero-padded at the end to {width}"
            + (
                f"; {sum(n > width for n in lengths)} longer ones cut to {width}"
                if hi > width
                else ""
            )
            + " (`permute` then `masking: {value: 0}` lets recurrent layers skip the padding)"
        )
    return notes


def ts_labels(
    labels: list[str], classes: tuple[str, ...] | None, lines: Any, path: Path
) -> np.ndarray:
    """y of the cases' labels: class indices, or float32 regression targets."""
    if classes is None:
        try:
            return np.array([float(v) for v in labels], np.float32)
        except ValueError:
            bad = next(i for i, v in enumerate(labels) if not _number(v))
            raise data_error(
                f"target {labels[bad]!r} is not a number", path, line=int(lines[bad])
            ) from None
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in labels], np.int64)


def dims_error(dims: int, ref: Path, ref_dims: int, path: Path, line: int) -> DataError:
    return data_error(
        f"{dims} dimensions, but the training file {ref.name} has {ref_dims}",
        path, line=line, hint="train and test files of one problem have the same dimensions",
    )  # fmt: skip


def load_ts(
    path: Path,
    *,
    length: int | None = None,
    missing: Missing | None = None,
    train: Path | None = None,
) -> ArrayData:
    """A `.ts` file as ArrayData: x (N, channels, length) float32, y class indices (or targets).

    Shorter series are zero-padded at their end to `length` (default: the longest series of the
    training file: this one, or `train` when this is its separate test file); longer ones are cut.
    """
    ts = read_ts(path)
    ref = read_ts(train) if train is not None else ts
    if ref.dims != ts.dims:
        raise dims_error(ts.dims, ref.path, ref.dims, path, ts.lines[0])
    width = length or max(ref.lengths)
    filled = 0
    x = np.zeros((len(ts.series), ts.dims, width), np.float32)
    for i, (case, n) in enumerate(zip(ts.series, ts.lines, strict=True)):
        x[i], holes = shaped(case, width, missing, path, n)
        filled += holes
    notes = ts_notes(path, filled, missing, ts.lengths, width)
    y = ts_labels(ts.labels, ts.classes, ts.lines, path)
    return ArrayData(x, y, ts.classes, str(path), tuple(notes))


def _number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True
