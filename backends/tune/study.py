"""`netspec tune`: the plan, the study, and one trial as an ordinary run directory."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netspec.compiler import compile_source
from netspec.errors import Interrupted, NetspecError, SpecError, UsageError
from netspec.run_record import StudyLayout
from netspec.runs import TrainOptions, prepare_run
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
