"""`netspec tune`: an Optuna study over a search spec, each trial an ordinary run directory."""

from __future__ import annotations

import math
import multiprocessing
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netspec.compiler import compile_source
from netspec.errors import Interrupted, NetspecError, SpecError, UsageError
from netspec.run_record import StudyLayout
from netspec.runs import TrainOptions, absolute_paths, prepare_run
from netspec.search import SearchEntry, at_end, check_ends, find_search, substitute
from netspec.source import Source, apply_overrides, read

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
        storage=o.storage or f"sqlite:///{StudyLayout(folder).db.resolve()}",
        study=o.study,
        trials=trials,
        pruner=o.pruner,
        device=o.device,
        seed=graph.train.seed,
        monitor=monitor,
        direction="minimize" if monitor_mode(monitor) == "min" else "maximize",
        epochs=graph.train.epochs,
        sets=tuple(o.sets),
    )
    return plan, entries


def _storage(url: str):
    import optuna

    if url.startswith("sqlite"):
        # Several worker processes write one SQLite file: wait for its lock instead of failing.
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return url


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
        storage=_storage(plan.storage),
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
        log=lambda s: print(f"trial {trial.number}: {s}", file=sys.stderr, flush=True),
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


def work(plan: Plan, worker: int = 0) -> None:
    """One worker: trials until the study holds `plan.trials` finished ones."""
    import optuna
    from optuna.trial import TrialState

    source = absolute_paths(apply_overrides(read(plan.spec), list(plan.sets)))
    entries = find_search(source)
    study = open_study(plan, worker)
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    left = plan.trials - len(study.get_trials(deepcopy=False, states=done))
    if left <= 0:
        return
    study.optimize(
        lambda trial: run_trial(trial, plan, source, entries),
        n_trials=left,
        catch=(TrialFailed,),
        callbacks=[optuna.study.MaxTrialsCallback(plan.trials, states=done)],
    )


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
    if failed:
        raise NetspecError.one(f"{len(failed)} of {workers} workers exited with codes {failed}")
