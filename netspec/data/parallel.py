"""A function over many items in parallel, in order: threads for Pillow's decoding, forked
processes for passes that hold the GIL (the work a run waits on before its first step)."""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from netspec.data.cache_choice import pass_workers
from netspec.errors import NetspecError

T = TypeVar("T")
R = TypeVar("R")

# The functions of the maps under way, by key: a forked worker inherits them, so a closure
# over a reader (files, a memory-mapped array) is never pickled; only items and results are.
_SHARED: dict[int, Callable[[Any], Any]] = {}
_KEYS = itertools.count()

# A forked worker inherits this process's objects, its uncollected garbage included. Were the
# worker's collector to free an inherited object that owns threads (an onnxruntime session, a
# thread pool), the object's destructor would wait for threads that do not exist in the child,
# forever: a DataLoader worker hung so in pthread_cond_destroy, freeing an InferenceSession
# that the process had dropped before it forked. The workers netspec forks freeze what they
# inherit (gc.freeze, run at the fork in the child): they collect their own garbage only, and
# leave the inherited objects' pages unwritten (copy-on-write).
_forking = False


def _freeze_inherited() -> None:
    if _forking:
        gc.freeze()


if hasattr(os, "register_at_fork"):  # POSIX: where processes fork
    os.register_at_fork(after_in_child=_freeze_inherited)


@contextlib.contextmanager
def forking() -> Iterator[None]:
    """Processes forked in this block collect none of the objects they inherit (see above)."""
    global _forking
    before, _forking = _forking, True
    try:
        yield
    finally:
        _forking = before


def threaded_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int | None = None
) -> Iterator[R]:
    """fn(item) for each item, in order, by `workers` threads (default: pass_workers), for work
    that releases the GIL: Pillow and zlib decode and resize without it, and the results need
    no hand-off (2,000 photos decoded and resized into one array on 2 cores: 1.76x one thread,
    against 1.54x with forked processes, which pickle every image back; benchmarks/
    bench_folder_load.py). In this thread when workers < 2."""
    workers = pass_workers() if workers is None else workers
    if workers < 2:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(workers)
    try:
        yield from pool.map(fn, items)
    finally:  # an error, or the caller stopped: nothing more is started
        pool.shutdown(wait=True, cancel_futures=True)


def forked_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> Iterator[R]:
    """fn(item) for each item, in order, computed `workers` (default: pass_workers) forked
    processes at a time, each a couple of items ahead at most, so memory stays bounded.

    In this process when workers < 2. The caller waits for the results, so a pass uses every
    core. A NetspecError raised in a worker (a corrupt file, named) is raised here, as it was.
    """
    workers = pass_workers() if workers is None else workers
    items = iter(items)
    if workers < 2:
        yield from map(fn, items)
        return
    key = next(_KEYS)
    _SHARED[key] = fn
    pending: deque[Future] = deque()
    fork = multiprocessing.get_context("fork")
    try:
        with forking(), ProcessPoolExecutor(workers, mp_context=fork) as pool:
            for item in itertools.islice(items, 2 * workers):
                pending.append(pool.submit(_call_shared, key, item))
            while pending:
                out = pending.popleft().result()
                for item in itertools.islice(items, 1):
                    pending.append(pool.submit(_call_shared, key, item))
                if isinstance(out, _Raised):
                    raise out.kind(out.problems, stage=out.stage)
                yield out
    finally:
        del _SHARED[key]


@dataclass(frozen=True)
class _Raised:
    kind: type[NetspecError]
    problems: list[Any]
    stage: str | None


def _call_shared(key: int, item: Any) -> Any:
    try:
        return _SHARED[key](item)
    except NetspecError as e:  # a user error: raised in the parent, as it was
        return _Raised(type(e), list(e.problems), e.stage)
