"""Search specs and `netspec tune`: entries found and checked, validate and summary, the Trainer's
epoch hook, and real Optuna studies (failed trials recorded, best.yaml reproducible, 2 workers,
one of them killed)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import sqlite3
import threading
import time
import warnings
from pathlib import Path

import pytest
from helpers import REPO, digits_npz, fails, invoke

from netspec.compiler import compile_source
from netspec.errors import SpecError
from netspec.search import at_end, find_search, substitute
from netspec.source import parse, read
from netspec.summary import rows, totals

SEARCH_SPEC = REPO / "specs" / "unet_isbi_search.yaml"
GOLDEN = Path(__file__).parent / "golden"

# Digits (bundled with scikit-learn): a trial trains in well under a second.
TINY = """\
name: tiny_search
input: [1, 8, 8]
layers:
  - conv2d: {filters: {search: int, low: 4, high: 12, step: 4}, kernel: KERNEL, activation: relu}
  - flatten
  - dense: {units: 10, activation: softmax}
train:
  data: {source: builtin, name: digits, val: 0.2}
  preprocess: {rescale: 0.0625}
  batch_size: 128
  epochs: 2
  optimizer: {name: adam, lr: {search: float, low: 0.001, high: 0.01, log: true}}
  metrics: [accuracy]
  log: {pictures: false}  # each run is a process: pictures would cost ~1.5 s
"""


def tiny(tmp_path: Path, kernel: str = "3") -> Path:
    path = tmp_path / "tiny_search.yaml"
    path.write_text(TINY.replace("KERNEL", kernel), encoding="utf-8")
    return path


# --- the core: finding, checking and substituting search entries --------------------------------


def test_find_search_gives_paths_ranges_and_locations():
    source = parse(TINY.replace("KERNEL", "3"), "t.yaml")
    entries = find_search(source)
    assert [(e.name, e.kind) for e in entries] == [
        ("layers[0].conv2d.filters", "int"),
        ("train.optimizer.lr", "float"),
    ]
    filters, lr = entries
    assert (filters.low, filters.high, filters.step, filters.log) == (4, 12, 4, False)
    assert (lr.low, lr.high, lr.log) == (0.001, 0.01, True)
    assert source.locate(filters.path) == (4, 23)  # the `{search` of the entry
    assert filters.ends() == {"low": 4, "middle": 8, "high": 12}
    assert lr.ends()["middle"] == pytest.approx(0.001 * 10**0.5)


def test_malformed_entries_are_all_reported_with_their_lines():
    text = """\
name: bad
input: [4]
layers:
  - dense: {units: {search: int, low: 64, high: 16}}
  - dense: {units: {search: intt, low: 1, high: 2}}
  - dropout: {rate: {search: float, low: 0, high: 0.5, log: true}}
  - dense: {units: {search: choice, values: []}}
  - dense: {units: {search: int, low: 1, high: 8, lg: true}}
"""
    with pytest.raises(SpecError, match=r"low \(64\) must be below high \(16\)") as info:
        find_search(parse(text, "bad.yaml"))
    problems = info.value.problems
    assert [(p.line, p.path) for p in problems] == [
        (4, "layers[0].dense.units"),
        (5, "layers[1].dense.units.search"),
        (6, "layers[2].dropout.rate.low"),
        (7, "layers[3].dense.units"),
        (8, "layers[4].dense.units.lg"),
    ]
    assert "unknown search kind 'intt'" in problems[1].message
    assert "a log search needs low > 0" in problems[2].message
    assert "non-empty list" in problems[3].message
    assert all(p.file == "bad.yaml" and p.hint for p in problems)


def test_substitute_gives_an_ordinary_spec_and_leaves_the_source_alone():
    source = parse(TINY.replace("KERNEL", "3"), "t.yaml")
    entries = find_search(source)
    chosen = substitute(source, {entries[0].path: 8, entries[1].path: 0.005})
    assert find_search(chosen) == []
    graph = compile_source(chosen)
    assert graph.nodes[0].shape == (8, 6, 6)
    assert graph.train.optimizer.lr == 0.005
    assert source.data["layers"][0]["conv2d"]["filters"]["search"] == "int"


# --- validate and summary ---------------------------------------------------------------------


def test_validate_names_the_end_that_does_not_fit(tmp_path: Path):
    # kernel 9 does not fit an 8x8 input; 3 does: only the high end fails.
    spec = tiny(tmp_path, "{search: choice, values: [3, 5, 9]}")
    out = fails(invoke("validate", spec), "with every searched value at its high", "kernel=9")
    assert f"{spec}:4:" in out
    assert "(search stage)" in out
    ok = invoke("validate", tiny(tmp_path))
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith(f"ok: {tmp_path / 'tiny_search.yaml'}: search space of 2 values")


def test_search_spec_summary_matches_golden(update_golden: bool):
    result = invoke("summary", SEARCH_SPEC)
    assert result.exit_code == 0, result.output
    golden = GOLDEN / "unet_isbi_search.txt"
    if update_golden:
        golden.write_text(result.stdout, encoding="utf-8")
    assert result.stdout == golden.read_text(encoding="utf-8")


def test_search_spec_is_the_default_unet_in_its_middle():
    data = json.loads(invoke("summary", "--json", SEARCH_SPEC).stdout)
    plain = totals(rows(compile_source(read(REPO / "specs" / "unet_isbi.yaml")))).total_params
    params = data["total_params"]
    assert params["middle"] == plain == 483_874
    assert params["low"] < params["middle"] < params["high"]
    assert [e["name"] for e in data["search"]] == [
        "layers[0].double_conv.filters",
        "layers[1].down.filters",
        "layers[4].dropout.rate",
        "train.optimizer.lr",
    ]


@pytest.mark.parametrize("end", ["low", "middle", "high"])
def test_search_spec_lowers_at_each_end(end: str):
    pytest.importorskip("torch")
    from netspec.backends.lowering import build_module

    source = read(SEARCH_SPEC)
    graph = compile_source(at_end(source, find_search(source), end))
    module = build_module(graph)
    assert sum(p.numel() for p in module.parameters()) == totals(rows(graph)).trainable_params


# --- the Trainer's epoch hook -----------------------------------------------------------------


class Stop(Exception):
    pass


@pytest.mark.slow
def test_trainer_on_epoch_sees_each_row_and_can_stop_the_run(tmp_path: Path):
    pytest.importorskip("torch")
    from netspec.backends.training.loop import Trainer
    from netspec.runs import PreparedRun, TrainOptions

    source = parse(TINY.replace("KERNEL", "3"), str(tmp_path / "t.yaml"))
    entries = find_search(source)
    graph = compile_source(at_end(source, entries, "low"))
    seen: list[dict] = []

    def on_epoch(row: dict) -> None:
        seen.append(row)
        if row["epoch"] == 1:
            raise Stop

    run = PreparedRun(graph, tmp_path / "run")
    trainer = Trainer(run, TrainOptions(progress=False), on_epoch=on_epoch)
    trainer.log = lambda s: None
    trainer.setup()
    with pytest.raises(Stop):
        trainer.fit()
    assert [r["epoch"] for r in seen] == [1]
    assert "val_loss" in seen[0] and "val_accuracy" in seen[0]
    assert (tmp_path / "run" / "checkpoint" / "last.safetensors").is_file()  # epoch 1 saved


# --- netspec tune -------------------------------------------------------------------------------


def test_tune_records_a_misfit_as_failed_and_writes_a_reproducible_best(tmp_path: Path, no_plots):
    pytest.importorskip("optuna")
    from netspec.backends.tune.study import StudyOptions, open_study, plan_study

    spec = tiny(tmp_path, "{search: choice, values: [3, 9]}")
    folder = tmp_path / "study"
    plan, _ = plan_study(spec, 2, StudyOptions(pruner="none", out=folder))
    # Trial 0 draws kernel 9, which does not fit the 8x8 input: the study must go on.
    open_study(plan).enqueue_trial({"layers[0].conv2d.kernel": 9})
    result = invoke("tune", spec, "--trials", 2, "--out", folder, "--pruner", "none", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    first, second = data["trials"]
    assert first["state"] == "fail"
    assert first["params"]["layers[0].conv2d.kernel"] == 9
    assert first["reason"].startswith("spec error:")
    assert "a window of 9 does not fit the input height 8" in first["reason"]
    assert second["state"] == "complete"
    assert second["params"]["layers[0].conv2d.kernel"] == 3
    assert data["best"]["number"] == 1
    assert data["monitor"] == "val_loss" and data["direction"] == "minimize"
    assert (folder / "trial-001" / "model.safetensors").is_file()
    assert (folder / "study.db").is_file()

    # best.yaml is a plain spec, and `netspec train` on it gives the trial's value again.
    best = folder / "best.yaml"
    assert find_search(read(best)) == []
    run = tmp_path / "again"
    assert invoke("train", best, "--out", run).exit_code == 0
    history = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["history"]
    assert min(r["val_loss"] for r in history) == pytest.approx(data["best"]["value"], rel=1e-6)

    # Run again with the same --trials: the study in study.db is already complete.
    again = invoke("tune", spec, "--trials", 2, "--out", folder, "--json")
    assert [t["number"] for t in json.loads(again.stdout)["trials"]] == [0, 1]


def _workers(pid: int) -> list[int]:
    """The live tune workers of `pid`'s commands: the children of the forkserver it started
    (not the server itself, nor multiprocessing's resource tracker; a worker that has exited
    but is not yet reaped has an empty cmdline)."""
    procs: dict[int, tuple[int, bytes]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the field after state
            procs[int(stat.parent.name)] = (parent, (stat.parent / "cmdline").read_bytes())
        except OSError:  # the process ended meanwhile
            continue
    servers = {p for p, (parent, cmd) in procs.items() if parent == pid and b"forkserver" in cmd}
    return sorted(p for p, (parent, cmd) in procs.items() if parent in servers and cmd)


def _trials(db: Path) -> list[tuple[str, int]]:
    """Each trial's state and how many epochs it has reported, in trial order."""
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con:
        return con.execute(
            "SELECT t.state, (SELECT COUNT(*) FROM trial_intermediate_values v "
            "WHERE v.trial_id = t.trial_id) FROM trials t ORDER BY t.number"
        ).fetchall()


def _kill_the_worker_of_trial_0(
    db: Path, done: list[str], stop: threading.Event, others: set[int]
) -> None:
    """SIGKILL the worker that trains trial 0 (which never ends) once the other worker has
    finished the other trials and exited: the one tune worker left is then surely mid-trial.
    Whatever happens, no worker is left running: on failure all are killed. `stop`: the
    command has ended (then it failed), nothing to wait for; `others`: worker processes of
    this process that are not the command's (an earlier test's), never counted nor killed."""
    deadline = time.monotonic() + 240  # reached only on failure
    trials: list[tuple[str, int]] = []
    try:
        while time.monotonic() < deadline and not stop.is_set():
            trials = _trials(db) if db.is_file() else []
            workers = [w for w in _workers(os.getpid()) if w not in others]
            finished = [s for s, _ in trials[1:]] == ["COMPLETE"] * 3
            if finished and trials[0][0] == "RUNNING" and trials[0][1] and len(workers) == 1:
                os.kill(workers[0], signal.SIGKILL)
                done.append("killed")
                return
            time.sleep(0.1)
        done.append(f"trial 0 was never left alone mid-trial: {trials}")
    except BaseException as exc:  # the test's failure, told in the main thread
        done.append(repr(exc))
    for pid in set(_workers(os.getpid())) - others:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow  # 2 forked workers, 3 two-epoch trials; one worker SIGKILLed mid-trial
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds workers through /proc")
def test_tune_two_workers_share_one_sqlite_study_and_survive_a_killed_one(tmp_path: Path):
    """Two workers of one command share one SQLite study; one of them is SIGKILLed mid-trial:
    the command ends normally, with a note, the killed trial failed once its heartbeat stops,
    and the study exact (every trial counts, never one more)."""
    pytest.importorskip("optuna")
    from netspec.backends.tune.study import StudyOptions, open_study, plan_study

    # Trial 0 trains (all but) forever: its worker is the one killed, once the other worker
    # has done trials 1-3 and exited, so no timing decides which worker is mid-trial.
    text = TINY.replace("KERNEL", "3").replace(
        "epochs: 2", "epochs: {search: choice, values: [2, 100000]}"
    )
    # The digits from an .npz (helpers.digits_npz): the workers do not import scikit-learn.
    text = text.replace("{source: builtin, name: digits,", "{source: arrays, path: digits.npz,")
    digits_npz(tmp_path)
    spec = tmp_path / "tiny_search.yaml"
    spec.write_text(text, encoding="utf-8")
    folder = tmp_path / "study"
    options = StudyOptions(pruner="none", out=folder, heartbeat=1)
    study = open_study(plan_study(spec, 4, options)[0])
    for epochs in (100000, 2, 2, 2):  # workers take enqueued trials first, in order
        study.enqueue_trial({"train.epochs": epochs})
    done: list[str] = []
    stop = threading.Event()
    killer = threading.Thread(
        target=_kill_the_worker_of_trial_0,
        args=(folder / "study.db", done, stop, set(_workers(os.getpid()))),
    )
    killer.start()
    try:
        args = ("--trials", 4, "--workers", 2, "--pruner", "none", "--heartbeat", 1)
        result = invoke("tune", spec, *args, "--out", folder, "--device", "cpu")
    finally:
        stop.set()
        killer.join()
    assert done == ["killed"], done
    assert result.exit_code == 0, result.output
    assert "note: 1 of 2 workers were killed (signal 9)" in result.output
    # Workers take trials under the study's lock: exactly 4, never one more.
    states = [s for s, _ in _trials(folder / "study.db")]
    assert states == ["FAIL"] + ["COMPLETE"] * 3, (states, result.output[-3000:])
    data = json.loads((folder / "trials.json").read_text(encoding="utf-8"))
    assert data["trials"][0]["reason"].startswith("its worker stopped (no heartbeat")
    assert data["best"]["number"] in (1, 2, 3)
    assert sorted(p.name for p in folder.glob("trial-*")) == [f"trial-{i:03d}" for i in range(4)]
    assert "best: trial" in result.stdout
    assert (folder / "history.png").stat().st_size > 0
    assert (folder / "importance.png").stat().st_size > 0


def test_a_study_where_no_trial_completed_is_an_error_after_its_table(tmp_path: Path):
    """A data file missing fails every trial alike: the table with each reason, then one
    error naming the first, exit 2 (it was exit 0 with `best: none`). Run again, the study
    is full (failed trials count): the same error, and the hint says to start a new one."""
    pytest.importorskip("optuna")
    spec = tiny(tmp_path)
    spec.write_text(
        spec.read_text().replace(
            "{source: builtin, name: digits,", "{source: arrays, path: gone.npz,"
        )
    )
    folder = tmp_path / "study"
    result = invoke("tune", spec, "--trials", 2, "--out", folder, "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stdout.count("gone.npz: error: array file not found") == 2  # the table
    assert result.stdout.rstrip().endswith("best: none (no trial completed)")
    error = "no trial of study 'main' completed: 2 failed of 2; the first failure (trial 0): "
    missing = f"{tmp_path / 'gone.npz'}: error: array file not found"
    assert f"error: {error}{missing}" in result.stderr
    assert "start a new study (another --study or --out)" in result.stderr
    # Again, as JSON: the study is full, nothing runs, the same error.
    again = invoke("tune", spec, "--trials", 2, "--out", folder, "--json")
    assert again.exit_code == 2
    assert json.loads(again.stdout)["error"]["message"] == error + missing


def test_workers_below_one_are_refused_before_the_study_folder_is_made(tmp_path: Path):
    pytest.importorskip("optuna")
    out = tmp_path / "study"
    fails(invoke("tune", tiny(tmp_path), "--workers", 0, "--out", out), "--workers must be 1")
    assert not out.exists()


def test_tune_refuses_a_spec_that_searches_nothing_and_a_bad_pruner(tmp_path: Path):
    fails(invoke("tune", REPO / "specs" / "quickstart.yaml"), "searches nothing")
    fails(invoke("tune", tiny(tmp_path), "--pruner", "asha"), "unknown --pruner 'asha'")


def test_settle_fails_a_running_trial_that_never_sent_a_heartbeat(tmp_path: Path):
    """A trial left RUNNING by a worker that never beat (killed before its first heartbeat, or
    a netspec from before heartbeats) is failed once it is older than three heartbeats, so the
    report does not wait for it forever."""
    pytest.importorskip("optuna")
    from optuna.trial import TrialState

    from netspec.backends.tune.study import StudyOptions, open_study, plan_study
    from netspec.backends.tune.workers import fail_silent, settle

    spec = tiny(tmp_path)
    plan, _ = plan_study(spec, 2, StudyOptions(pruner="none", out=tmp_path / "s", heartbeat=20))
    study = open_study(plan)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        orphan = study.ask()  # RUNNING, and no heartbeat thread ever started for it
    fail_silent(study, 3 * plan.heartbeat)  # younger than three heartbeats: left running
    assert open_study(plan).get_trials()[orphan.number].state == TrialState.RUNNING
    # Three heartbeats (60 s) pass, without waiting for them: the trial started 61 s ago.
    with contextlib.closing(sqlite3.connect(tmp_path / "s" / "study.db")) as db, db:
        (started,) = db.execute(
            "SELECT datetime_start FROM trials WHERE number = ?", (orphan.number,)
        ).fetchone()
        earlier = datetime.datetime.fromisoformat(started) - datetime.timedelta(seconds=61)
        db.execute(
            "UPDATE trials SET datetime_start = ? WHERE number = ?",
            (earlier.strftime("%Y-%m-%d %H:%M:%S.%f"), orphan.number),
        )
    settle(plan)  # fails the orphan at once, so nothing runs: returns
    trial = open_study(plan).get_trials()[orphan.number]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["reason"] == "its worker sent no heartbeat"


def test_a_trial_is_taken_with_its_first_heartbeat(tmp_path: Path):
    """`next_trial` records the trial's first heartbeat before it lets the lock go. Before, the
    first beat came from the heartbeat thread, which a spawned worker importing torch (GIL held
    for seconds) could not run: another command's `settle` failed the live worker's trial as
    silent, and the worker crashed on its next write (CI, test_tune_postgres)."""
    pytest.importorskip("optuna")
    from optuna.trial import TrialState

    from netspec.backends.tune.study import StudyOptions, open_study, plan_study
    from netspec.backends.tune.workers import fail_silent, next_trial

    plan, _ = plan_study(tiny(tmp_path), 2, StudyOptions(pruner="none", out=tmp_path / "s"))
    study = open_study(plan)
    trial = next_trial(study, plan)
    fail_silent(study, 0)  # any trial without a heartbeat, however young, is failed
    assert open_study(plan).get_trials()[trial.number].state == TrialState.RUNNING


def test_a_worker_whose_trial_was_failed_as_stale_goes_on(tmp_path: Path, monkeypatch, capsys):
    """A live worker whose trial the others failed as stale (heartbeats too late, on a machine
    too busy) drops that trial's result with one line and goes on: it neither crashes on the
    finished trial nor counts it twice. The trial's end is met both ways: at `tell`, and at a
    write inside the trial (a report)."""
    pytest.importorskip("optuna")
    from optuna.trial import TrialState

    from netspec.backends.tune import study as study_mod
    from netspec.backends.tune import workers
    from netspec.backends.tune.report import STALE

    plan, _ = study_mod.plan_study(
        tiny(tmp_path), 3, study_mod.StudyOptions(pruner="none", out=tmp_path / "s")
    )

    def failed_meanwhile(trial, plan, source, entries) -> float:
        other = study_mod.open_study(plan)._storage  # as another worker's fail_stale does
        other.set_trial_user_attr(trial._trial_id, "reason", STALE)
        other.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        if trial.number == 1:
            trial.report(0.5, 1)  # raises: the trial is finished
        return 0.5

    monkeypatch.setattr(workers, "run_trial", failed_meanwhile)
    workers.work(plan)
    trials = study_mod.open_study(plan).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    assert {t.user_attrs["reason"] for t in trials} == {STALE}
    err = capsys.readouterr().err
    for n in range(3):
        assert f"trial {n}: failed by another worker, which heard no heartbeat" in err
