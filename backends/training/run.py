"""One `netspec train` process: the whole run, or one rank of a run that torchrun launched."""

from __future__ import annotations

import atexit
import gc
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from netspec.runs import PreparedRun, TrainOptions

from .distributed import Dist, in_worker, lost_peer
from .loop import Trainer


@contextmanager
def _callers_rng_kept() -> Iterator[None]:
    """torch's global RNGs as the caller had them once the run ends: the run seeds them for its
    own streams (weights, dropout), and a run in-process (the API, `netspec train` invoked from
    Python) must not leave them seeded at `train.seed` behind (a caller's next draws would
    repeat any other generator seeded alike)."""
    # CUDA's generators only where CUDA is up already: reading them would start it.
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        yield


def train_run(
    run: PreparedRun, options: TrainOptions, echo: Callable[[str], None]
) -> dict[str, Any] | None:
    """Train a prepared run; the result on the process that writes, None on other ranks.

    `echo` gets every line the run tells (run directory, notes, epochs, test scores).

    Under torchrun (RANK, WORLD_SIZE, ... in the environment) this process joins the group as
    one rank, and every rank takes rank 0's run directory.
    """
    with _callers_rng_kept():
        return _train(run, options, echo)


def _exit_without_teardown() -> None:
    """Leave the process at once with exit 2, its output flushed (see `_train`)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(2)


def _train(
    run: PreparedRun, options: TrainOptions, echo: Callable[[str], None]
) -> dict[str, Any] | None:
    dist = trainer = None
    try:
        if in_worker():
            dist = Dist.from_env(options.device)
            run = run._replace(run_dir=dist.agree(run.run_dir))  # rank 0's, on every node
        if dist is None or dist.writer:
            echo(f"run directory: {run.run_dir}")
        if dist is not None and dist.writer:
            echo(f"data-parallel: {dist.describe()}")
        trainer = Trainer(run, options, log=echo, dist=dist)
        trainer.setup()
        result = trainer.fit()
        if dist is not None:
            dist.barrier()  # all ranks finish before any tears the process group down
    except RuntimeError as exc:  # torch's distributed errors are RuntimeErrors
        error = lost_peer(exc) if dist is not None else None
        if error is None:
            raise
        dist = None  # the group is broken: tearing it down would wait on the lost process
        # and, left to the interpreter's exit, gloo's threads abort the process (SIGABRT), so
        # the launcher would report a crash instead of this error's exit 2.
        atexit.register(_exit_without_teardown)
        raise error from None
    finally:
        if dist is not None:
            # The Trainer freed first (its DDP module holds the process group, and it may sit
            # in a reference cycle) while the interpreter is whole: a gloo group torn down at
            # the exit's finalization aborts the process ("terminate called without an active
            # exception", exit -6, seen once on a finished run).
            trainer = None
            failure = sys.exc_info()[1]
            if failure is not None:  # the frames it went through hold the Trainer too
                traceback.clear_frames(failure.__traceback__)
            gc.collect()
            dist.close()
    return result if dist is None or dist.writer else None
