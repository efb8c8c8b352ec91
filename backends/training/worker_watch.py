"""The streamed splits' DataLoader workers watched from the training process: a worker that
ends while a batch is awaited is raised at once (SIGCHLD), not after torch's 5 s poll, and the
workers stop as soon as their Feeder is garbage, not 5 s per worker later."""

from __future__ import annotations

import os
import signal
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch.utils.data import DataLoader


class _WorkerEnded(RuntimeError):
    """A worker process ended while the training process waited for a batch."""


_AWAITED: tuple[int, ...] = ()  # the pids of the workers whose batch is awaited now
_watching = False
_previous_handler: Any = None


def watch_children() -> None:
    """Install _on_child_exit once (the main thread only: elsewhere torch notices a dead worker
    after its 5 s poll). Without it a killed worker was noticed only after that poll."""
    global _previous_handler, _watching
    if _watching or threading.current_thread() is not threading.main_thread():
        return
    _previous_handler = signal.signal(signal.SIGCHLD, _on_child_exit)
    _watching = True


def _on_child_exit(signum: int, frame: Any) -> None:
    _raise_if_ended(_AWAITED)
    if callable(_previous_handler):
        _previous_handler(signum, frame)


def _raise_if_ended(pids: tuple[int, ...]) -> None:
    for pid in pids:
        try:  # WNOWAIT: the child is left for torch (multiprocessing) to reap
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped: gone all the same
            raise _WorkerEnded(f"worker process {pid} ended") from None
        if info is not None:
            how = (
                f"was killed by signal {info.si_status}"
                if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
                else f"exited with code {info.si_status}"
            )
            raise _WorkerEnded(f"worker process {pid} {how}")


@contextmanager
def awaiting(loader: DataLoader) -> Iterator[None]:
    """While a batch is awaited, a worker's end raises _WorkerEnded at once (SIGCHLD)."""
    global _AWAITED
    it = loader._iterator
    pids = tuple(w.pid for w in it._workers) if it is not None else ()  # type: ignore[attr-defined]
    _AWAITED = pids if _watching else ()
    try:
        _raise_if_ended(_AWAITED)  # one that ended before the watch began
        yield
    finally:
        _AWAITED = ()


def stop_workers_with(feeder: Any, it: Any) -> weakref.finalize:
    """Stop the workers as soon as `feeder` is garbage. Left to the iterator's own __del__, a
    run that ends in a reference cycle (a Trainer does) waited 5 s per worker: the cycle's
    collector closes the iterator's queues (their weakref finalizers run first) before __del__
    sends each worker its stop message, which then never arrives, and each join times out.
    Held here, the iterator and its queues outlive the cycle and stop promptly."""
    stopper = weakref.finalize(feeder, it._shutdown_workers)
    stopper.atexit = False  # at exit torch's own hook stops them
    return stopper
