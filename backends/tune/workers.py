"""A study's workers: each takes the next trial under the study's lock, runs it under its
heartbeat, and tells the study; the dead are failed by the living, and a command settles
(waits for other workers' trials) before it reports."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

from netspec.errors import NetspecError, UsageError
from netspec.gcpause import collect_less
from netspec.runs import absolute_paths
from netspec.search import SearchEntry, find_search
from netspec.source import Source, apply_overrides, read

from .storage import study_lock
from .study import Plan, TrialFailed, open_study, run_trial


def fail_stale(study) -> None:
    """Fail the running trials whose worker stopped sending heartbeats (killed, or its machine
    lost): they count as finished, failed trials."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def fail_silent(study, after: float) -> None:
    """Fail the running trials that never sent a heartbeat and started over `after` seconds ago:
    left by a worker killed before its first beat, or by a netspec from before heartbeats.
    Optuna's own check skips them, so a study holding one would be waited on forever."""
    import datetime

    from optuna.trial import TrialState

    try:  # Optuna's tables: no public call says whether a trial ever sent a heartbeat
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        storage = study._storage
        storage = getattr(storage, "_backend", storage)  # the cached storage's RDB storage
        with _create_scoped_session(storage.scoped_session) as session:
            silent = [
                t.trial_id
                for t in session.query(models.TrialModel)
                .filter(models.TrialModel.study_id == study._study_id)
                .filter(models.TrialModel.state == TrialState.RUNNING)
                .all()
                if not t.heartbeats
                and t.datetime_start is not None
                and (datetime.datetime.now() - t.datetime_start).total_seconds() > after
            ]
    except (ImportError, AttributeError):
        return
    for trial_id in silent:
        study._storage.set_trial_user_attr(trial_id, "reason", "its worker sent no heartbeat")
        study._storage.set_trial_state_values(trial_id, state=TrialState.FAIL)


def next_trial(study, plan: Plan):
    """The study's next trial for this worker, or None once the study holds `plan.trials`.

    Every trial counts (running, waiting, finished, failed), and the count and the taking are
    one step under the study's lock: however many workers and commands share the study, it
    never holds more than `plan.trials` (a killed worker's trial is failed, not rerun).
    """
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.trial import TrialState

    with study_lock(study._storage, plan.study):
        fail_stale(study)
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if len(trials) >= plan.trials and not waiting:
            return None
        with warnings.catch_warnings():
            # Optuna warns that heartbeats are meant for Study.optimize: `work` sends them.
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trial = study.ask()  # an enqueued (waiting) trial first, else a new one
        if is_heartbeat_enabled(study._storage):
            # The first beat before the lock is let go: a trial is never seen without one
            # (`fail_silent` would take its worker for dead), however late its thread starts.
            study._storage.record_heartbeat(trial._trial_id)
        return trial


def work(plan: Plan, worker: int = 0) -> None:
    """One worker: trials until the study holds `plan.trials` of them."""
    from optuna.exceptions import UpdateFinishedTrialError

    # Torch and the Trainer imported before a trial is taken: the import holds the GIL for
    # seconds on a busy machine, and a trial whose heartbeat thread cannot run is failed by
    # the other workers as stale.
    from ..training import loop  # noqa: F401

    source = absolute_paths(apply_overrides(read(plan.spec), list(plan.sets)))
    entries = find_search(source)
    study = open_study(plan, worker)
    while (trial := next_trial(study, plan)) is not None:
        try:
            state, value = _attempt(study, trial, plan, source, entries)
            if study.tell(trial, value, state=state, skip_if_finished=True).state == state:
                continue
        except UpdateFinishedTrialError:
            pass
        # This worker is alive, but others failed its trial as stale (its heartbeats came too
        # late): the study counts that trial as failed, and this worker goes on with the next.
        print(
            f"trial {trial.number}: failed by another worker, which heard no heartbeat from it "
            f"for {3 * plan.heartbeat} s (a machine too busy? raise --heartbeat); "
            "its result is dropped",
            file=sys.stderr,
            flush=True,
        )


def _attempt(study, trial, plan: Plan, source: Source, entries: list[SearchEntry]):
    """Run `trial` under its heartbeat: the state and value to tell the study."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages._heartbeat import get_heartbeat_thread
    from optuna.trial import TrialState

    try:
        with get_heartbeat_thread(trial._trial_id, study._storage):
            return TrialState.COMPLETE, run_trial(trial, plan, source, entries)
    except optuna.TrialPruned:
        return TrialState.PRUNED, None
    except TrialFailed:
        return TrialState.FAIL, None
    except UpdateFinishedTrialError:
        raise  # failed meanwhile by another worker: `work` says so
    except BaseException as exc:  # Ctrl-C, or a bug: the trial is failed, the worker stops
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else repr(exc)
        with contextlib.suppress(UpdateFinishedTrialError):
            trial.set_user_attr("reason", reason)
            study.tell(trial, state=TrialState.FAIL)
        raise


def settle(plan: Plan) -> None:
    """Wait until no trial of the study is running elsewhere (another command, another
    machine), failing those whose worker died, so that the report is the whole study."""
    from optuna.trial import TrialState

    study = open_study(plan)
    told = False
    while True:
        fail_stale(study)
        fail_silent(study, 3 * plan.heartbeat)
        busy = [
            t.number
            for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.RUNNING, TrialState.WAITING)
        ]
        if not busy:
            return
        if not told:
            print(
                f"waiting for trial(s) {', '.join(map(str, busy))} of other workers "
                f"(a worker silent for {3 * plan.heartbeat} s is taken as dead)",
                file=sys.stderr,
                flush=True,
            )
            told = True
        time.sleep(min(plan.heartbeat, 5))


# What every worker imports before its first trial: imported once, in the server the workers
# are forked from, rather than once a worker (~3 s of CPU each; the pages are shared, too).
# Opening the study's storage imports SQLAlchemy and Alembic (~0.4 s). Multiprocessing skips
# a name that does not import.
_PRELOAD = [
    "torch",
    "torch._dynamo",  # imported by the first optimizer (~1 s)
    "optuna",
    __name__,
    "netspec.backends.training.loop",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite",
    *(f"alembic.{m}" for m in ("command", "config", "migration", "script")),
]


def _spawned(plan: Plan, worker: int, environ: dict[str, str]) -> None:
    # The command's environment as it is now: the server was started with the one it had then.
    os.environ.clear()
    os.environ.update(environ)
    collect_less()  # a process of its own, as a command's (gcpause.collect_less)
    try:
        work(plan, worker)
    except KeyboardInterrupt:
        sys.exit(130)


@contextlib.contextmanager
def _worker_context() -> Iterator[Any]:
    """Workers forked from a server process that imported torch, Optuna and the Trainer once
    (multiprocessing's forkserver: torch and a plain fork of this process do not mix), stopped
    after them. Linux only: macOS's system libraries start threads that a fork does not carry
    (Python spawns there by default for that), and Windows has no fork; there each worker is
    spawned and imports them itself."""
    if not sys.platform.startswith("linux"):
        yield multiprocessing.get_context("spawn")
        return
    from multiprocessing import forkserver

    server = forkserver._forkserver
    ours = getattr(server, "_forkserver_pid", 0) is None  # none runs yet: this command's own
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    forkserver.ensure_running()  # it imports them meanwhile, while this process goes on
    try:
        yield ctx
    finally:
        # Stopped once its workers have ended, else it would outlive the command in a
        # long-lived process (a notebook), with the modules and environment of its start.
        # `_stop` is CPython's own, there since the forkserver (3.4).
        if ours and hasattr(server, "_stop"):
            server._stop()


def check_workers(workers: int) -> None:
    if workers < 1:
        raise UsageError.one(f"--workers must be 1 or more, not {workers}")


def run_workers(plan: Plan, workers: int) -> None:
    """`workers` processes on one study; a single worker runs here, without a child process."""
    check_workers(workers)
    if workers == 1:
        open_study(plan)  # create the study (and its tables) once, before workers race to
        work(plan)
        settle(plan)
        return
    with _worker_context() as ctx:
        open_study(plan)
        environ = dict(os.environ)
        procs = [ctx.Process(target=_spawned, args=(plan, i, environ)) for i in range(workers)]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            for p in procs:
                p.join()  # they got the same Ctrl-C; their running trials are marked failed
            raise
    failed = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    killed = [-c for c in failed if c < 0]
    if failed and (len(killed) < len(failed) or len(killed) == workers):
        raise NetspecError.one(f"{len(failed)} of {workers} workers exited with codes {failed}")
    if killed:  # the others went on; the killed one's trial fails once its heartbeat is stale
        print(
            f"note: {len(killed)} of {workers} workers were killed (signal "
            f"{', '.join(map(str, killed))}); their running trials are marked failed",
            file=sys.stderr,
            flush=True,
        )
    settle(plan)
