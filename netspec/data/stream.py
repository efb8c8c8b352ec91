"""Data bigger than memory (numpy only): samples decoded on demand (`Lazy`), chunked passes over
a split, and the disk cache of decoded samples (the choice of cache: cache_choice.py).

A `Lazy` stands where an ArrayData's `x` array stands: it has its shape and dtype, `x[i]`,
`x[a:b]` and `x[idx]` decode those samples now (numpy's semantics), `subset(x, idx)` is a view
that decodes nothing. Its `reader` decodes one sample with the very code the in-memory loaders
use, so every path gives the same pixels.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from netspec.data._common import data_error
from netspec.data.parallel import forked_map

CACHE_ENV = "NETSPEC_CACHE_DIR"
CHUNK_BYTES = 1 << 26  # float64 bytes per chunk of a pass over the data (64 MiB)
LABEL_BYTES = 64  # `chunks` of int64 class masks as small as a uint8 image's (8 MiB)
_FORMAT = 1  # the disk cache's layout version: part of every key


class Reader(Protocol):
    """What a Lazy decodes from: a count, one sample by index, and a key of its content."""

    def __len__(self) -> int: ...
    def read(self, i: int) -> np.ndarray: ...


@dataclass(frozen=True)
class ArrayReader:
    """Samples of an array on disk (a memory-mapped .npy): read one at a time."""

    array: np.ndarray

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def read(self, i: int) -> np.ndarray:
        return np.asarray(self.array[i])


class Lazy:
    """Samples read on demand: `reader`'s samples at `index`, each through `steps` in order."""

    def __init__(
        self,
        reader: Reader,
        index: np.ndarray | None = None,
        steps: tuple[Callable[[np.ndarray], np.ndarray], ...] = (),
        like: Lazy | None = None,
    ) -> None:
        self.reader = reader
        self.index = np.arange(len(reader)) if index is None else np.asarray(index, np.int64)
        self.steps = steps
        if like is not None:  # a view: the same samples' shape and type
            self.sample_shape, self.dtype = like.sample_shape, like.dtype
            return
        first = self._one(int(self.index[0])) if len(self.index) else self._one(0)
        self.sample_shape = tuple(first.shape)
        self.dtype = first.dtype

    def _one(self, i: int) -> np.ndarray:
        x = self.reader.read(i)
        for step in self.steps:
            x = step(x)
        return x

    # what numpy code reads of an array
    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.sample_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.sample_shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """The bytes these samples would take decoded in memory."""
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Any) -> np.ndarray:
        """Decode now: one sample (int) or a stack of them (slice, integer or boolean index)."""
        if isinstance(key, (int, np.integer)):
            return self._one(int(self.index[key]))
        picked = self.index[key]
        if self.in_place:  # a memory-mapped array: one gather, no per-sample decode
            rows = self.reader.array[np.sort(picked)]  # type: ignore[attr-defined]
            return np.ascontiguousarray(rows[_unsort(picked)])
        out = np.empty((len(picked), *self.sample_shape), dtype=self.dtype)
        for j, i in enumerate(picked):
            sample = self._one(int(i))
            if sample.shape != self.sample_shape or sample.dtype != self.dtype:
                raise data_error(
                    f"sample {int(i)} decodes to {sample.dtype} {sample.shape}, the first to "
                    f"{self.dtype} {self.sample_shape}; every sample must share one shape and "
                    "type",
                    hint="resize the images to one size (the source's `size`), or use cache: ram",
                )
            out[j] = sample
        return out

    @property
    def in_place(self) -> bool:
        """Samples read straight from an array on disk (nothing to decode, no steps): the
        training process reads them itself, faster than a worker could hand them over."""
        return isinstance(self.reader, ArrayReader) and not self.steps

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        x = self[:]  # everything, decoded: what code that wants a whole array gets
        return x if dtype is None else x.astype(dtype)

    def view(self, idx: np.ndarray | slice) -> Lazy:
        return Lazy(self.reader, self.index[idx], self.steps, like=self)

    def mapped(self, step: Callable[[np.ndarray], np.ndarray]) -> Lazy:
        return Lazy(self.reader, self.index, (*self.steps, step))


def _unsort(idx: np.ndarray) -> np.ndarray:
    """Where each of idx lands in sorted(idx): reading a map in file order, then reordering."""
    return np.argsort(np.argsort(idx, kind="stable"), kind="stable")


def is_streamed(x: Any) -> bool:
    """Whether x is read on demand (a Lazy) rather than an array held in memory."""
    return isinstance(x, Lazy)


def subset(x: Any, idx: np.ndarray) -> Any:
    """x's samples at idx: a view of a Lazy or a memory-mapped array (nothing read), else a copy."""
    if isinstance(x, np.memmap):
        x = Lazy(ArrayReader(x))
    return x.view(idx) if isinstance(x, Lazy) else x[idx]


def per_sample(fn: Callable[..., np.ndarray], **kwargs: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A batch function (N, ...) -> (N, ...) as a step on one sample; picklable for workers."""
    return partial(_on_one, partial(fn, **kwargs))


def _on_one(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    return fn(x[None])[0]


def chunks(x: Any, bytes_per_value: int = 8) -> Sequence[slice]:
    """Consecutive slices of x's samples, each at most CHUNK_BYTES as float64 (at most 4096)."""
    n = len(x)
    per = max(1, int(np.prod(x.shape[1:])) * bytes_per_value)
    size = max(1, min(4096, CHUNK_BYTES // per))
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def read_chunks(
    x: Any,
    parts: Sequence[slice],
    each: Callable[[np.ndarray], Any] | None = None,
    workers: int | None = None,
) -> Iterator[Any]:
    """x[part] for each part, in order (or `each(x[part])`, computed where the part is read: a
    pass that needs only a summary of each chunk moves no more than the summary). A Lazy that
    decodes files is read by `workers` forked processes (forked_map; default: every core, as the
    run waits)."""
    fn = each or np.asarray  # the chunk itself
    if not isinstance(x, Lazy) or x.in_place or len(parts) < 2:
        yield from (fn(x[p]) for p in parts)
        return
    yield from forked_map(lambda part: fn(x[part]), parts, workers)


# --- passes over a split --------------------------------------------------------------------


def value_range(x: Any, workers: int | None = None) -> tuple[float, float] | None:
    """The smallest and largest value of x, chunk by chunk (None for no values); a Lazy's
    chunks are read by `workers` processes (read_chunks)."""
    if not x.size:
        return None
    lo, hi = np.inf, -np.inf
    for c_lo, c_hi in read_chunks(x, chunks(x), _min_max, workers):  # 2 numbers a chunk back
        lo, hi = min(lo, c_lo), max(hi, c_hi)
    return lo, hi


def _min_max(c: np.ndarray) -> tuple[float, float]:
    return float(c.min()), float(c.max())


# --- the disk cache -----------------------------------------------------------------------


def cache_dir() -> Path:
    """$NETSPEC_CACHE_DIR, else $XDG_CACHE_HOME/netspec/data, else ~/.cache/netspec/data."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "netspec" / "data"


def content_key(kind: str, files: Sequence[Path], options: dict[str, Any]) -> str:
    """A key of a file source's content and decoding: each file's path, size and mtime, and the
    options that change the decoded samples. An edited, added or removed file changes it."""
    h = hashlib.sha256(json.dumps({"format": _FORMAT, "kind": kind, **options}).encode())
    for path in files:
        st = path.stat()
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def disk_cached(
    x: Lazy,
    key: str,
    notes: list[str],
    log: Callable[[int, int], None] | None = None,
    *,
    labels: int | None = None,
) -> Lazy:
    """x's samples from the disk cache `key`: reused when complete and matching, else written
    once (progress on `log(done, total)`; by default a line on a terminal, as the first pass of
    a large folder takes minutes). A cache that cannot be written (a full disk) leaves x as it
    is, with a note: the run goes on decoding from the files.

    labels: x holds class indices of that many classes (-1 ignored): stored compactly
    (`label_store`) and read back as x's int64."""
    folder = cache_dir()
    npy, done = folder / f"{key}.npy", folder / f"{key}.done"
    stored = x.dtype if labels is None else label_store(labels)
    want = {"shape": list(x.shape), "dtype": stored.str, "key": key}
    what = "decoded samples" if labels is None else "class masks"
    reused = _reuse(npy, done, want)
    if reused is not None:
        notes.append(f"{what} read from the disk cache {npy}")
        return _cached(reused, labels)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        need = x.size * stored.itemsize
        if need + (64 << 20) > free:
            raise OSError(f"{need / 2**20:.0f} MiB needed, {free / 2**20:.0f} MiB free")
        _write(x, npy, done, want, log or (_progress if sys.stderr.isatty() else None))
    except OSError as e:
        notes.append(
            f"the disk cache could not be written in {folder} ({e}): samples are decoded from "
            "the files every epoch"
        )
        return x
    notes.append(f"{what} written once to the disk cache {npy}")
    return _cached(np.load(npy, mmap_mode="r"), labels)


def label_store(classes: int) -> np.dtype:
    """The disk cache's type for class indices 0..classes-1 and -1 (ignored): uint8 while they
    fit (255 stands for -1), else int16 or int32."""
    if classes < 255:
        return np.dtype(np.uint8)
    return np.dtype(np.int16 if classes < 1 << 15 else np.int32)


def widened(a: np.ndarray) -> np.ndarray:
    """Stored class indices (label_store) back as int64, -1 where ignored."""
    out = a.astype(np.int64)
    if a.dtype == np.uint8:
        out[a == 255] = -1
    return out


def _cached(arr: np.ndarray, labels: int | None) -> Lazy:
    x = Lazy(ArrayReader(arr))
    return x if labels is None else x.mapped(widened)


def _reuse(npy: Path, done: Path, want: dict[str, Any]) -> np.ndarray | None:
    """The cached array when its marker says complete and both match what is wanted: a stale,
    foreign or half-written cache (no marker, another shape) is never read."""
    try:
        if json.loads(done.read_text()) != want:
            return None
        arr = np.load(npy, mmap_mode="r")
    except (OSError, ValueError):
        return None
    ok = list(arr.shape) == want["shape"] and arr.dtype.str == want["dtype"]
    return arr if ok else None


def _progress(done: int, total: int) -> None:
    end = "\n" if done == total else ""
    print(f"\rwriting the disk cache: {done}/{total} samples", end=end, file=sys.stderr, flush=True)


def _write(
    x: Lazy, npy: Path, done: Path, want: dict[str, Any], log: Callable[[int, int], None] | None
) -> None:
    """x decoded chunk by chunk into the .npy (write_npy) as want's dtype, then the marker."""
    done.unlink(missing_ok=True)
    dtype = np.dtype(want["dtype"])
    parts = chunks(x, LABEL_BYTES if dtype != x.dtype else 8)
    # Cast where each chunk is read: compact labels cross from the workers compact.
    got = read_chunks(x, parts, partial(_stored, dtype=dtype) if dtype != x.dtype else None)
    write_npy(npy, tuple(x.shape), dtype, _logged(got, parts, len(x), log))
    mark_done(done, want)


def _stored(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return a.astype(dtype)  # int64 -1 becomes uint8 255 (label_store)


def _logged(
    got: Iterator[np.ndarray],
    parts: Sequence[slice],
    total: int,
    log: Callable[[int, int], None] | None,
) -> Iterator[np.ndarray]:
    for part, c in zip(parts, got):
        yield c
        if log is not None:
            log(part.stop, total)


def write_npy(
    npy: Path, shape: tuple[int, ...], dtype: np.dtype, parts: Iterable[np.ndarray]
) -> None:
    """A .npy of `shape` written from its consecutive chunks through a temporary file renamed
    into place (its marker is the caller's, after: a run killed mid-write leaves no marker, so
    the next run rebuilds). Plain writes, not a writable memory map: a full disk is an OSError
    here, where a map would die of SIGBUS."""
    tmp = npy.with_name(f"{npy.name}.{os.getpid()}.tmp")
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": tuple(shape),
    }
    try:
        with tmp.open("wb") as f:
            np.lib.format.write_array_header_2_0(f, header)
            for c in parts:
                f.write(np.ascontiguousarray(c, dtype=dtype).tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, npy)
    finally:
        tmp.unlink(missing_ok=True)


def mark_done(done: Path, want: dict[str, Any]) -> None:
    """The completion marker of a cache entry, renamed into place: written last."""
    done_tmp = done.with_name(f"{done.name}.{os.getpid()}.tmp")
    done_tmp.write_text(json.dumps(want))
    os.replace(done_tmp, done)
