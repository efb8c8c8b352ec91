"""CSV tables read in one chunked pass over the file through table_cells.CellPass, a chunk of
records (csv_records) at a time, never the whole file as Python objects. Cache ram (`read_csv`,
load_csv's path for UTF-8 files) keeps the chunks' values and encodes them once the plan is
known; cache disk writes the features once to a memory-mapped .npy (with the labels and the
table's record, reused by the next run); cache none keeps each kept row's byte offset, and the
DataLoader workers parse the rows they are asked for (RowReader).
"""

from __future__ import annotations

import contextlib
import json
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import compress
from pathlib import Path
from typing import Any

import numpy as np

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData, TableColumns
from netspec.data.csv_records import Records, open_blocks, row_at
from netspec.data.stream import ArrayReader, Lazy, cache_dir, content_key, mark_done, write_npy
from netspec.data.table_cells import CellPass, TablePlan, encode
from netspec.data.table_columns import table_data, used_columns
from netspec.errors import DataError
from netspec.gcpause import gc_paused

ROWS = 1 << 16  # rows per chunk of the pass


@dataclass(frozen=True, eq=False)
class RowReader:
    """Kept rows of a CSV file parsed on demand (cache none): row i starts at offsets[i]."""

    path: Path
    offsets: np.ndarray  # int64
    fields: int  # the header's
    plan: TablePlan

    def __len__(self) -> int:
        return len(self.offsets)

    def read(self, i: int) -> np.ndarray:
        at = int(self.offsets[i])
        row = row_at(self.path, at, self.plan.delimiter)
        values = None
        if len(row) == self.fields:
            values = self.plan.row_values([row[k].strip() for k in self.plan.used])
        if values is None:
            raise data_error(
                f"the row at byte {at} is not the row found there when the run started: the "
                "file changed",
                self.path,
                hint="run again to read the file afresh (cache: disk keeps the rows it read)",
            )
        return encode(*values, self.plan)[0]


class _Raw:
    """The pass's values of the kept rows, written to two temporary files of the cache folder
    ((n, U) float64 numbers, (n, U) int32 codes); a failed write (a full disk) leaves `failed`
    said and the files removed: the run goes on without the cache."""

    def __init__(self, folder: Path, key: str) -> None:
        self.paths = [folder / f"{key}.{os.getpid()}.{part}.tmp" for part in ("num", "code")]
        self.failed: str | None = None
        self.files: list[Any] = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.files = [p.open("wb") for p in self.paths]
        except OSError as e:
            self.fail(e)

    def add(self, num: np.ndarray, code: np.ndarray) -> None:
        if self.failed is None:
            try:
                for f, part in zip(self.files, (num, code)):
                    f.write(part.tobytes())
            except OSError as e:
                self.fail(e)

    def fail(self, e: OSError) -> None:
        self.failed = str(e)
        self.remove()

    def arrays(self, n: int, u: int) -> tuple[np.ndarray, np.ndarray]:
        for f in self.files:
            f.close()
        shape = (n, u)
        return tuple(  # type: ignore[return-value]
            np.memmap(p, dtype=t, mode="r", shape=shape) if n else np.zeros(shape, t)
            for p, t in zip(self.paths, (np.float64, np.int32))
        )

    def remove(self) -> None:
        for f in self.files:
            f.close()
        for p in self.paths:
            with contextlib.suppress(OSError):  # a folder never made: nothing to remove
                p.unlink(missing_ok=True)


class _Held:
    """The pass's values of the kept rows, in memory (cache ram): one (rows, U) float64 and
    int32 array pair a chunk (at least one: the pass ends with one), encoded into features once
    the pass has made the plan."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, num: np.ndarray, code: np.ndarray) -> None:
        self.parts.append((num, code))

    def features(self, plan: TablePlan) -> np.ndarray:
        """(n, F) float32, a chunk at a time, each chunk's values freed once encoded."""
        done = []
        while self.parts:
            num, code = self.parts.pop(0)
            done.append(encode(num, plan.sorted_codes(code), plan))
        return np.concatenate(done)


def read_csv(
    path: Path, *, target: str, features: list[str] | None, task: str, delimiter: str | None
) -> ArrayData:
    """A UTF-8 CSV table in memory (load_csv's table), read by the streamed tables' pass: its
    peak memory is the chunks' values, about 12 bytes a used cell, not the file's rows as
    Python lists (about 14 times the file's size, measured)."""
    delimiter, header, blocks = open_blocks(path, delimiter)
    used = used_columns(header, target, features, path)
    cells = CellPass(path, delimiter, header, used)
    held = _Held()
    _, y_num, y_code = _pass(blocks, cells, held)
    notes: list[str] = []
    plan = cells.finish(target, task, notes)
    return table_data(path, target, plan, held.features(plan), plan.labels(y_num, y_code), notes)


def stream_csv(
    path: str | Path,
    *,
    target: str,
    features: list[str] | None = None,
    task: str = "auto",
    delimiter: str | None = None,
    cache: str = "none",
    notes: list[str] | None = None,
) -> ArrayData:
    """load_csv's table with x streamed: from a memory-mapped cache of its features (`disk`,
    written in the one pass, reused while the file is unchanged), or parsed row by row from
    the file (`none`). The same checks, notes, features and labels as load_csv."""
    path = Path(path)
    said = list(notes or [])
    options = {"target": target, "features": features, "task": task, "delimiter": delimiter}
    try:
        key = content_key("csv", [path], options)
    except FileNotFoundError:
        raise data_error("CSV file not found", path) from None
    except OSError as e:
        raise data_error(f"cannot read CSV file: {e}", path) from None
    folder = cache_dir()
    if cache == "disk":
        reused = _reuse(folder, key)
        if reused is not None:
            return replace(reused, notes=(*reused.notes, *said))
    delimiter, header, blocks = open_blocks(path, delimiter)
    used = used_columns(header, target, features, path)
    cells = CellPass(path, delimiter, header, used)
    raw = _Raw(folder, key) if cache == "disk" else None
    try:
        offsets, y_num, y_code = _pass(blocks, cells, raw)
        pass_notes: list[str] = []
        plan = cells.finish(target, task, pass_notes)
        rows = Lazy(RowReader(path, offsets, len(header), plan))  # the disk cache's, once written
        data = table_data(path, target, plan, rows, plan.labels(y_num, y_code), pass_notes)
        if raw is not None and raw.failed is None:
            try:
                written = _write(folder, key, data, plan, raw, len(used))
                return replace(written, notes=(*written.notes, *said))
            except OSError as e:
                raw.failed = str(e)
    finally:
        if raw is not None:
            raw.remove()
    if raw is not None:
        said.append(
            f"the disk cache could not be written in {folder} ({raw.failed}): the rows are "
            "parsed from the CSV file every epoch"
        )
    else:
        said.append(
            f"cache: none: every batch parses its rows from the CSV file (the byte offsets of "
            f"its {len(offsets)} rows found once)"
        )
    return replace(data, notes=(*data.notes, *said))


def _pass(
    blocks: Iterator[Records], cells: CellPass, raw: _Raw | _Held | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row into `cells`, ROWS rows at a time (the kept rows' values to `raw`: a disk
    cache's files, or memory); the kept rows' byte offsets and target values and codes."""
    offsets = array("q")
    nums: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    lines: list[int] = []  # the rows read and not given to `cells` yet: their lines,
    starts: list[int] = []  # byte offsets
    rows: list[list[str]] = []  # and fields

    def give(n: int) -> None:
        kept = cells.add_rows(lines[:n], rows[:n])
        offsets.extend(compress(starts[:n], kept.tolist()))
        del lines[:n], starts[:n], rows[:n]
        if cells.pending >= ROWS:
            flush()

    def flush() -> None:
        num, code = cells.take()
        nums.append(num[:, 0].copy())
        codes.append(code[:, 0].copy())
        if raw is not None:
            raw.add(num, code)

    with gc_paused():
        try:
            for more in blocks:
                for have, new in zip((lines, starts, rows), more):
                    have.extend(new)
                while len(rows) >= ROWS:
                    give(ROWS)
        except DataError:  # a record that cannot be read: a ragged row before it comes first
            give(len(rows))
            raise
        give(len(rows))
        flush()
    return (
        np.frombuffer(offsets, dtype=np.int64).copy(),
        np.concatenate(nums),
        np.concatenate(codes),
    )


def _write(
    folder: Path, key: str, data: ArrayData, plan: TablePlan, raw: _Raw, u: int
) -> ArrayData:
    """The features encoded from the pass's values, a chunk at a time, into {key}.npy, the labels
    into {key}.y.npy, then the marker that holds the table's record: the cache entry."""
    n, f = len(data.y), len(plan.feature_names)
    num, code = raw.arrays(n, u)
    npy, done = folder / f"{key}.npy", folder / f"{key}.done"
    done.unlink(missing_ok=True)
    parts = (
        encode(num[s : s + ROWS], plan.sorted_codes(code[s : s + ROWS]), plan)
        for s in range(0, n, ROWS)
    )
    write_npy(npy, (n, f), np.dtype(np.float32), parts)
    write_npy(folder / f"{key}.y.npy", data.y.shape, data.y.dtype, [data.y])
    meta = {
        "key": key,
        "shape": [n, f],
        "y": [data.y.dtype.str, list(data.y.shape)],
        "classes": data.classes,
        "source": data.source,
        "notes": list(data.notes),
        "feature_names": list(plan.feature_names),
        "table": plan.table.to_dict(),
    }
    mark_done(done, meta)
    x = Lazy(ArrayReader(np.load(npy, mmap_mode="r")))
    note = f"the features of the CSV rows written once to the disk cache {npy}"
    return replace(data, x=x, notes=(*data.notes, note))


def _reuse(folder: Path, key: str) -> ArrayData | None:
    """The cache entry `key` when its marker says complete and the arrays match it: a stale,
    foreign or half-written entry is never read."""
    npy = folder / f"{key}.npy"
    try:
        meta = json.loads((folder / f"{key}.done").read_text())
        if not isinstance(meta, dict) or meta.get("key") != key:
            return None
        x = np.load(npy, mmap_mode="r")
        y = np.load(folder / f"{key}.y.npy")
        ok = list(x.shape) == meta["shape"] and x.dtype == np.float32
        ok = ok and [y.dtype.str, list(y.shape)] == meta["y"] and len(y) == len(x)
        if not ok:
            return None
        classes = None if meta["classes"] is None else tuple(meta["classes"])
        data = ArrayData(
            Lazy(ArrayReader(x)),
            y,
            classes,
            str(meta["source"]),
            tuple(meta["notes"]),
            tuple(meta["feature_names"]),
            TableColumns.from_dict(meta["table"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    note = f"the features read from the disk cache {npy} (the CSV is not read)"
    return replace(data, notes=(*data.notes, note))
