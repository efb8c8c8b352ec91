"""The streamed splits' DataLoader workers watched from the training process: a worker that
ends while a batch is awaited is an error at once (SIGCHLD), not after torch's 5 s poll, and
the workers stop as soon as their Feeder is garbage, not 5 s per worker later."""

from __future__ import annotations

import signal
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import wait
from typing import Any

from torch.utils.data import DataLoader


class WorkerEnded(RuntimeError):
    """A worker process ended while the training process waited for a batch."""


_AWAITED: tuple[Any, ...] = ()  # the workers (Processes) whose batch is awaited now
_PREVIOUS: Any = None  # the SIGCHLD handler ours stands in for while a batch is awaited


def _on_child_exit(signum: int, frame: Any) -> None:
    # Raised only into the wait for a batch (the selector's select), where nothing is half
    # done. Raised anywhere else it can leave a file open mid-creation (CI saw torch's own
    # error path, which opens a temporary file, interrupted so); there torch's error or its
    # 5 s poll of the workers follows, and ended_worker names the worker then.
    if _in_wait(frame):
        _raise_if_ended(_AWAITED)
    if callable(_PREVIOUS):  # another child of this process: its owner's handler
        _PREVIOUS(signum, frame)


def _in_wait(frame: Any) -> bool:
    """Whether `frame` (the one a signal interrupted) is a selector's blocking select."""
    code = getattr(frame, "f_code", None)
    return (
        code is not None and code.co_name == "select" and code.co_filename.endswith("selectors.py")
    )


def _raise_if_ended(workers: tuple[Any, ...]) -> None:
    for w in workers:  # multiprocessing Processes: exitcode reaps an ended one, and keeps it
        code = w.exitcode
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise WorkerEnded(f"worker process {w.pid} {how}")


def ended_worker(loader: DataLoader, within: float = 1.0) -> str | None:
    """Which of the loader's workers has ended (within `within` s: the sockets of one being
    killed close before it can be waited for), and how: "worker process 12 was killed by
    signal 9". None if none has."""
    it = loader._iterator
    workers = list(it._workers) if it is not None else []  # type: ignore[attr-defined]
    ended = wait([w.sentinel for w in workers], timeout=within)
    for w in workers:
        if w.sentinel in ended:
            w.join(within)  # its exit status: the sentinel closes just before it is waitable
    try:
        _raise_if_ended(tuple(workers))
    except WorkerEnded as e:
        return str(e)
    return None


@contextmanager
def awaiting(loader: DataLoader) -> Iterator[None]:
    """While a batch is awaited, a worker's end raises WorkerEnded at once: a SIGCHLD handler
    of ours for that time only (torch's, process-wide, raises wherever the process is, in a
    forward or a log call; netspec never installs it). Off the main thread, where no handler
    can be set, torch notices a dead worker after its 5 s poll."""
    global _AWAITED, _PREVIOUS
    it = loader._iterator
    workers = tuple(it._workers) if it is not None else ()  # type: ignore[attr-defined]
    if not workers or threading.current_thread() is not threading.main_thread():
        yield
        return
    _PREVIOUS = signal.signal(signal.SIGCHLD, _on_child_exit)
    _AWAITED = workers
    try:
        _raise_if_ended(workers)  # one that ended before the watch began
        yield
    finally:
        _AWAITED = ()
        signal.signal(signal.SIGCHLD, _PREVIOUS)


def stop_workers_with(feeder: Any, it: Any) -> weakref.finalize:
    """Stop the workers as soon as `feeder` is garbage. Left to the iterator's own __del__, a
    run that ends in a reference cycle (a Trainer does) waited 5 s per worker: the cycle's
    collector closes the iterator's queues (their weakref finalizers run first) before __del__
    sends each worker its stop message, which then never arrives, and each join times out.
    Held here, the iterator and its queues outlive the cycle and stop promptly."""
    stopper = weakref.finalize(feeder, it._shutdown_workers)
    stopper.atexit = False  # at exit torch's own hook stops them
    return stopper
