"""What a study leaves: the trials as rows, the best trial's plain spec, the table, the plots."""

from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from netspec.errors import NetspecError
from netspec.fileio import write_text
from netspec.jsonio import dumps
from netspec.run_record import RunLayout, StudyLayout

from .storage import shown
from .study import Plan, StudyOptions

# The one way a trial fails without a reason: its worker died and sent no more heartbeats.
STALE = "its worker stopped (no heartbeat: killed, or its machine lost)"


def trial_rows(study) -> list[dict[str, Any]]:
    """One record per trial: number, state, value, params, seconds, run directory, reason."""
    out = []
    for t in study.get_trials(deepcopy=False):
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        out.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": dict(t.params),
                "seconds": seconds,
                "run": t.user_attrs.get("run"),
                "reason": t.user_attrs.get("reason")
                or t.system_attrs.get("fail_reason")
                or (STALE if t.state.name == "FAIL" else None),
            }
        )
    return out


def best_row(rows: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    if not complete:
        return None
    pick = min if direction == "minimize" else max
    return pick(complete, key=lambda r: r["value"])


def write_best(plan: Plan, best: dict[str, Any]) -> Path:
    """best.yaml: the best trial's resolved spec, a plain spec that `netspec train` reproduces."""
    spec_text = RunLayout(Path(best["run"])).spec.read_text(encoding="utf-8")
    head = (
        f"# The best trial ({best['number']}) of study '{plan.study}' over {plan.spec}: "
        f"{plan.monitor} {best['value']:.4f}. Reproduce it with `netspec train` on this file.\n"
    )
    path = StudyLayout(plan.folder).best
    write_text(path, head + spec_text)
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def render(rows: list[dict[str, Any]], plan: Plan, best: dict[str, Any] | None) -> str:
    """The trials as a text table, then the best one."""
    header = ["trial", "state", plan.monitor, "time_s", "params", "reason"]
    body = [
        [
            str(r["number"]),
            r["state"],
            _fmt(r["value"]),
            _fmt(r["seconds"]),
            " ".join(f"{k}={_fmt(v)}" for k, v in r["params"].items()),
            r["reason"] or "",
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *body]
    ]
    if best is not None:
        lines.append(
            f"best: trial {best['number']}, {plan.monitor} {best['value']:.4f} "
            f"-> {StudyLayout(plan.folder).best}"
        )
    else:
        lines.append("best: none (no trial completed)")
    return "\n".join(lines) + "\n"


def plot(study, rows: list[dict[str, Any]], plan: Plan) -> list[Path]:
    """history.png (each completed trial's value, and the best so far) and importance.png
    (fANOVA parameter importances, once at least two trials completed); matplotlib, not plotly."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from netspec.backends.training.plots import save_png

    written = []
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    if not done:
        return written
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = [r["number"] for r in done]
    ys = [r["value"] for r in done]
    pick = min if plan.direction == "minimize" else max
    ax.plot(xs, ys, "o", label="trial")
    ax.step(xs, [pick(ys[: i + 1]) for i in range(len(ys))], where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are whole numbers
    ax.set_ylabel(plan.monitor)
    ax.set_title(f"study {plan.study}: optimization history")
    ax.legend()
    fig.tight_layout()
    save_png(fig, StudyLayout(plan.folder).history_png)
    written.append(StudyLayout(plan.folder).history_png)
    if len(done) < 2:
        return written
    import optuna

    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # e.g. every completed trial drew the same values
        return written
    if not importances or not all(math.isfinite(v) for v in importances.values()):
        return written
    fig = Figure(figsize=(7, 1 + 0.5 * len(importances)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel(f"importance for {plan.monitor} (fANOVA)")
    ax.set_title(f"study {plan.study}: parameter importance")
    fig.tight_layout()
    save_png(fig, StudyLayout(plan.folder).importance_png)
    written.append(StudyLayout(plan.folder).importance_png)
    return written


def finish(plan: Plan) -> dict[str, Any]:
    """Load the study, write best.yaml, trials.json and the plots; the study as one dict."""

    from .study import open_study

    study = open_study(plan)
    rows = trial_rows(study)
    best = best_row(rows, plan.direction)
    best_spec = None
    if best is not None and RunLayout(Path(best["run"])).spec.is_file():
        best_spec = write_best(plan, best)
    elif best is not None:  # another machine ran it, into a folder this one does not see
        print(
            f"note: best.yaml not written: the best trial ({best['number']}) ran into "
            f"{best['run']}, which is not on this machine (give every machine the same --out "
            "on a shared filesystem)",
            file=sys.stderr,
        )
    plots = plot(study, rows, plan)
    result = {
        "study": plan.study,
        "storage": shown(plan.storage),
        "folder": str(plan.folder),
        "monitor": plan.monitor,
        "direction": plan.direction,
        "best": best,
        "best_spec": str(best_spec) if best_spec else None,
        "plots": [str(p) for p in plots],
        "trials": rows,
    }
    write_text(StudyLayout(plan.folder).trials, dumps(result))
    return result


def none_completed(result: dict[str, Any]) -> NetspecError:
    """The error of a study without one completed trial (a missing data file fails every
    trial alike): the first failure's reason, and the way to a study that trains again."""
    trials = result["trials"]
    states = Counter("failed" if r["state"] == "fail" else r["state"] for r in trials)
    counts = ", ".join(f"{n} {state}" for state, n in states.items())
    failed = [r for r in trials if r["state"] == "fail"]
    first = (
        f"; the first failure (trial {failed[0]['number']}): {failed[0]['reason']}"
        if failed
        else ""
    )
    return NetspecError.one(
        f"no trial of study '{result['study']}' completed: {counts} of {len(trials)}{first}",
        hint="trials.json in the study folder has every trial's reason. Failed trials count "
        "toward --trials: once the cause is fixed, start a new study (another --study or --out)",
    )


def tune_study(
    spec: Path, trials: int, workers: int, options: StudyOptions
) -> tuple[dict[str, Any], str]:
    """`netspec tune`: plan, run the workers, report; the study as data and as a table."""
    from .study import plan_study
    from .workers import check_workers, run_workers

    check_workers(workers)  # before the study folder is made
    plan, _ = plan_study(spec, trials, options)
    where = shown(plan.storage)
    print(f"study '{plan.study}' in {where}; trials in {plan.folder}", file=sys.stderr)
    try:
        run_workers(plan, workers)
    except KeyboardInterrupt:
        print(
            f"interrupted: run the same command to resume the study in {where}",
            file=sys.stderr,
        )
        raise
    result = finish(plan)
    return result, render(result["trials"], plan, result["best"])
