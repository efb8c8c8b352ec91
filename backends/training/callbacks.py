"""What happens after each epoch: early stopping, reduce-LR-on-plateau, the best checkpoint, the schedule."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from netspec.errors import SpecError
from netspec.run_record import RunLayout
from netspec.train_spec import Callbacks

from ..lowering import NetModule
from ..weights import weights
from . import checkpoint
from .state import RunState

LOWER_IS_BETTER = ("loss", "mae", "rmse")


def monitor_mode(monitor: str) -> str:
    """'min' for losses and errors, 'max' for scores (a `val_` prefix does not matter)."""
    return "min" if monitor.removeprefix("val_") in LOWER_IS_BETTER else "max"


def better(a: float, b: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether `a` improves on the best so far `b` (NaN never does; anything beats nothing)."""
    if b is None or math.isnan(b):
        return not math.isnan(a)
    return a < b - min_delta if mode == "min" else a > b + min_delta


def value(row: dict[str, float], monitor: str) -> float:
    """The monitored value of an epoch's row; `val_x` falls back to `x` without a validation split."""
    if monitor in row:
        return row[monitor]
    bare = monitor.removeprefix("val_")
    if bare in row:
        return row[bare]
    recorded = ", ".join(k for k in row if k not in ("epoch", "time_s", "samples_per_s"))
    raise SpecError.one(f"train.callbacks: cannot monitor '{monitor}': the run records {recorded}")


def monitor_of(cb: Callbacks) -> str:
    """The value early stopping and the best checkpoint follow."""
    return cb.early_stopping.monitor if cb.early_stopping else cb.checkpoint.monitor


def after_epoch(
    cb: Callbacks,
    st: RunState,
    row: dict[str, float],
    *,
    module: NetModule,
    opt: torch.optim.Optimizer,
    sched: Any,
    sched_when: str,
    sched_monitor: str | None,
    run_dir: Path | None,
) -> None:
    """Update `st` from the epoch's `row`; save the best weights, lower the lr, step the schedule.

    `run_dir` None: decide, but write nothing (the ranks of a distributed run other than 0).
    """
    monitor = monitor_of(cb)
    current = value(row, monitor)
    es = cb.early_stopping
    min_delta = es.min_delta if es else 0.0
    if better(current, st.best, monitor_mode(monitor), min_delta):
        st.best, st.best_epoch, st.bad_epochs = current, st.epoch, 0
        if run_dir is not None and (cb.checkpoint.best or (es and es.restore_best)):
            checkpoint.save(
                RunLayout(run_dir).best,
                weights(module),
                {"epoch": st.epoch, monitor: current},
            )
    else:
        st.bad_epochs += 1
    if es is not None and st.bad_epochs >= es.patience:
        st.stopped = (
            f"early stopping: {monitor} did not improve for {es.patience} epochs "
            f"(best {st.best:.4f} at epoch {st.best_epoch})"
        )
    rl = cb.reduce_lr_on_plateau
    if rl is not None:
        v = value(row, rl.monitor)
        if better(v, st.plateau_best, monitor_mode(rl.monitor)):
            st.plateau_best, st.plateau_bad = v, 0
        else:
            st.plateau_bad += 1
            if st.plateau_bad >= rl.patience:
                for g in opt.param_groups:
                    g["lr"] = max(g["lr"] * rl.factor, rl.min_lr)
                st.plateau_bad = 0
    if sched is not None:
        if sched_when == "epoch":
            sched.step()
        elif sched_when == "plateau":
            assert sched_monitor is not None  # a plateau schedule always names its monitor
            sched.step(value(row, sched_monitor))
