"""`netspec tune`: an Optuna study over a search spec, each trial an ordinary run directory."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netspec.compiler import compile_source
from netspec.errors import Interrupted, NetspecError, SpecError, UsageError
from netspec.run_record import StudyLayout
from netspec.runs import TrainOptions, absolute_paths, prepare_run
from netspec.search import SearchEntry, at_end, check_ends, find_search, substitute
from netspec.source import Source, apply_overrides, read

from .storage import normalize, open_storage, study_lock

PRUNERS = ("median", "hyperband", "none")


class TrialFailed(Exception):
    """A trial that cannot give a value (NaN loss, out of memory, a network that does not fit)."""


@dataclass(frozen=True)
class StudyOptions:
    """The `netspec tune` options a plan is made from, as the CLI passes them."""

    storage: str | None = None  # an Optuna storage URL; None: sqlite in the study folder
    study: str = "main"
    pruner: str = "median"
    device: str = "auto"
    out: Path | None = None  # the study folder; None: runs/<spec name>/tune-<study>
    sets: tuple[str, ...] = ()  # --set overrides
    heartbeat: int = 20  # seconds between a trial's heartbeats (--heartbeat)


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs to run trials: picklable, so spawned workers get it whole."""

    spec: Path
    folder: Path
    storage: str
    study: str
    trials: int
    pruner: str
    device: str
    seed: int
    monitor: str
    direction: str  # minimize or maximize
    epochs: int
    sets: tuple[str, ...] = ()  # --set overrides, applied to the spec by every worker
    heartbeat: int = 20  # seconds between a trial's heartbeats; 3 missed: its worker is dead


def plan_study(
    spec: Path,
    trials: int,
    options: StudyOptions | None = None,
) -> tuple[Plan, list[SearchEntry]]:
    """Check the search spec and its options; pick the study folder and storage."""
    o = options or StudyOptions()
    from netspec.backends.training.callbacks import monitor_mode, monitor_of

    if trials < 1:
        raise UsageError.one(f"--trials must be 1 or more, not {trials}")
    if o.heartbeat < 1:
        raise UsageError.one(f"--heartbeat must be 1 second or more, not {o.heartbeat}")
    # before any training: a bad URL is refused at once
    storage = normalize(o.storage) if o.storage is not None else None
    if o.pruner not in PRUNERS:
        raise UsageError.one(
            f"unknown --pruner {o.pruner!r}", hint="choose median, hyperband or none"
        )
    source = apply_overrides(read(spec), list(o.sets))
    entries = find_search(source)
    if not entries:
        raise SpecError.one(
            "the spec searches nothing: no {search: ...} value",
            str(spec),
            hint="train it with `netspec train`, or mark values to search (docs/tune.md)",
        )
    try:
        graph = next(iter(check_ends(source, entries).values()))
    except SpecError as err:
        # Some ends may not fit (those trials fail and the study goes on); none fitting is the
        # spec's problem, and the shared train section must be sound.
        graph = None
        for end in ("middle", "low", "high"):
            try:
                graph = compile_source(at_end(source, entries, end))
                break
            except SpecError:
                continue
        if graph is None:
            raise err from None
    if graph.train is None:
        raise SpecError.one("the spec has no `train:` section", str(spec))
    folder = o.out or Path("runs") / graph.name / f"tune-{o.study}"
    folder.mkdir(parents=True, exist_ok=True)
    monitor = monitor_of(graph.train.callbacks)
    plan = Plan(
        spec=Path(spec),
        folder=folder,
        storage=storage or f"sqlite:///{StudyLayout(folder).db.resolve()}",
        study=o.study,
        trials=trials,
        pruner=o.pruner,
        device=o.device,
        seed=graph.train.seed,
        monitor=monitor,
        direction="minimize" if monitor_mode(monitor) == "min" else "maximize",
        epochs=graph.train.epochs,
        sets=tuple(o.sets),
        heartbeat=o.heartbeat,
    )
    return plan, entries


def _pruner(plan: Plan):
    import optuna

    if plan.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=plan.epochs)
    if plan.pruner == "none":
        return optuna.pruners.NopPruner()
    # Compare from the third epoch on, once three trials have finished: early epochs are noisy.
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)


def open_study(plan: Plan, worker: int = 0):
    """The study (created on first use); each worker's TPE sampler gets its own seed."""
    import optuna

    # Failed trials are reported in the table with their reason, not as Optuna's tracebacks.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(
        storage=open_storage(plan.storage, plan.heartbeat),
        study_name=plan.study,
        sampler=optuna.samplers.TPESampler(seed=plan.seed + 1000 * worker),
        pruner=_pruner(plan),
        direction=plan.direction,
        load_if_exists=True,
    )


def _suggest(trial, entry: SearchEntry) -> Any:
    if entry.kind == "int":
        return trial.suggest_int(
            entry.name, int(entry.low), int(entry.high), step=int(entry.step or 1), log=entry.log
        )
    if entry.kind == "float":
        return trial.suggest_float(
            entry.name, float(entry.low), float(entry.high), step=entry.step, log=entry.log
        )
    return trial.suggest_categorical(entry.name, list(entry.values))


def _fail(trial, reason: str) -> TrialFailed:
    trial.set_user_attr("reason", reason)
    return TrialFailed(reason)


def tell_once(study, name: str, line: str) -> bool:
    """Notes (about the data, the same in every trial) are printed once per study, by whichever
    worker meets them first; True when `line` is such a note (printed now or before)."""
    if not line.startswith("note: "):
        return False
    with study_lock(study._storage, name):  # workers meet the same note at the same time
        told = study.user_attrs.get("notes", [])
        if line not in told:
            study.set_user_attr("notes", [*told, line])
            print(line, file=sys.stderr, flush=True)
    return True


def run_trial(trial, plan: Plan, source: Source, entries: list[SearchEntry]) -> float:
    """One trial: sample, compile, train with pruning; the best monitored value of its epochs."""
    import optuna
    import torch

    from ..training.callbacks import value
    from ..training.loop import Trainer

    chosen = {e.path: _suggest(trial, e) for e in entries}
    run_dir = StudyLayout(plan.folder).trial(trial.number)
    trial.set_user_attr("run", str(run_dir))
    try:
        # A trial starts as every run does: compiled, paths absolute, its own new folder.
        run = prepare_run(substitute(source, chosen), [], run_dir, resume=False)
    except SpecError as err:
        raise _fail(trial, f"spec error: {err.problems[0].format().splitlines()[0]}") from None
    seen: list[float] = []

    def on_epoch(row: dict[str, float]) -> None:
        v = value(row, plan.monitor)
        seen.append(v)
        if math.isfinite(v):
            trial.report(v, int(row["epoch"]))
            if trial.should_prune():
                trial.set_user_attr(
                    "reason", f"pruned after epoch {int(row['epoch'])}: {plan.monitor} {v:.4g}"
                )
                raise optuna.TrialPruned()

    trainer = Trainer(
        run,
        TrainOptions(device=plan.device, progress=False),
        log=lambda s: (
            tell_once(trial.study, plan.study, s)
            or print(f"trial {trial.number}: {s}", file=sys.stderr, flush=True)
        ),
        on_epoch=on_epoch,
    )
    try:
        trainer.setup()
        trainer.fit()
    except Interrupted:
        raise KeyboardInterrupt from None  # Optuna records the trial as failed and stops
    except torch.OutOfMemoryError:
        raise _fail(trial, "out of memory") from None
    except NetspecError as err:
        raise _fail(trial, err.problems[0].format().splitlines()[0]) from None
    stopped = trainer.state.stopped
    if stopped and "loss is" in stopped:
        raise _fail(trial, stopped)
    finite = [v for v in seen if math.isfinite(v)]
    if not finite:
        raise _fail(trial, f"no finite {plan.monitor} in any epoch")
    return min(finite) if plan.direction == "minimize" else max(finite)


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


def _spawned(plan: Plan, worker: int) -> None:
    try:
        work(plan, worker)
    except KeyboardInterrupt:
        sys.exit(130)


def run_workers(plan: Plan, workers: int) -> None:
    """`workers` processes on one study; one worker runs here, without a child process."""
    if workers < 1:
        raise UsageError.one(f"--workers must be 1 or more, not {workers}")
    open_study(plan)  # create the study (and its tables) once, before workers race to
    if workers == 1:
        work(plan)
        settle(plan)
        return
    ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
    procs = [ctx.Process(target=_spawned, args=(plan, i)) for i in range(workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.join()  # the children got the same Ctrl-C; their running trials are marked failed
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
