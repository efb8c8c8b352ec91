"""`netspec tune` on a real PostgreSQL server and shared by many workers: storage URLs, exactly
N trials across workers and separately started commands, a killed worker, notes once a study
(tests/test_tune.py kills a worker of one command on SQLite).

The `postgres` fixture starts a throwaway server (initdb, trust auth, a free port, its socket in
a temp folder) when the PostgreSQL binaries and a driver are installed, and skips otherwise.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import digits_npz, fails, invoke, spawned

pytest.importorskip("optuna")

from netspec.backends.tune import storage as tune_storage
from netspec.backends.tune.storage import normalize, shown
from netspec.errors import UsageError

TINY = """\
name: tiny_search
input: [64]  # the digits are 8x8: a note says they are reshaped, once a study
layers:
  - dense: {units: {search: int, low: 8, high: 24, step: 8}, activation: relu}
  - dense: {units: 10, activation: softmax}
train:
  data: {source: arrays, path: digits.npz, val: 0.2}  # helpers.digits_npz: no scikit-learn
  batch_size: 128
  epochs: 1
  optimizer: {name: adam, lr: {search: float, low: 0.001, high: 0.01, log: true}}
  log: {pictures: false}
"""


def tiny(tmp_path: Path) -> Path:
    digits_npz(tmp_path)
    path = tmp_path / "tiny_search.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the distribution's postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The URL of a throwaway PostgreSQL server's `postgres` database (user postgres, trust)."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not on PATH")
    if not any(importlib.util.find_spec(m) for m in ("psycopg", "psycopg2")):
        pytest.skip("no PostgreSQL driver: pip install 'netspec[postgres]'")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: initdb refuses root")
    root = Path(tempfile.mkdtemp(prefix="netspec-pg-"))  # short: a socket path is <108 bytes
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    run = lambda *cmd: subprocess.run(  # noqa: E731
        _as_server_user([*cmd]), capture_output=True, text=True, timeout=120
    )
    made = run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    if made.returncode:
        pytest.skip(f"initdb failed: {made.stderr.strip()[-300:]}")
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = run(pg_ctl, "-D", str(data), "-l", str(root / "log"), "-o", opts, "-w", "start")
    if started.returncode:
        pytest.skip(f"pg_ctl start failed: {started.stderr.strip()[-300:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def tune_cmd(spec: Path, *args: str | int | Path) -> list[str]:
    return [sys.executable, "-m", "netspec", "tune", str(spec), *map(str, args), "--device", "cpu"]


@contextlib.contextmanager
def rdb(url: str) -> Iterator:
    """An Optuna storage on `url`, its connections closed after."""
    # netspec's own opening: it waits for SQLite's lock, and for tables a tune process is
    # creating this very moment (the race this test process would otherwise lose).
    storage = tune_storage.open_storage(normalize(url), heartbeat=60)
    try:
        yield storage
    finally:  # psycopg warns of a connection left open when it is collected: close them all
        storage.remove_session()
        storage.engine.dispose()


def tune_here(*args: str | int | Path):
    """`netspec tune ARGS --device cpu` in this process, the storages it opened closed after it:
    a command's own process ends with its connections, this one lives on (and psycopg warns
    of a connection collected open, into whichever test runs then)."""
    from netspec.backends.tune import study as tune_study

    opened = []

    def opening(url: str, heartbeat: int):
        opened.append(tune_storage.open_storage(url, heartbeat))
        return opened[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tune_study, "open_storage", opening)
        try:
            return invoke("tune", *args, "--device", "cpu")
        finally:
            for storage in opened:
                storage.remove_session()
                storage.engine.dispose()


def states(url: str, study: str) -> list[str]:
    import optuna

    with rdb(url) as storage:
        loaded = optuna.load_study(study_name=study, storage=storage)
        return [t.state.name for t in loaded.get_trials(deepcopy=False)]


def check_best(folder: Path) -> dict:
    """trials.json's best is the best completed trial, and best.yaml says it."""
    data = json.loads((folder / "trials.json").read_text(encoding="utf-8"))
    done = [t for t in data["trials"] if t["state"] == "complete"]
    best = min(done, key=lambda t: t["value"])
    assert data["best"]["number"] == best["number"]
    head = (folder / "best.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert f"The best trial ({best['number']})" in head
    return data


# --- storage URLs, no server needed -------------------------------------------------------------


def test_postgres_urls_get_the_installed_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tune_storage, "_installed", lambda m: m == "psycopg")
    for url in ("postgresql://u:secret@h:5432/db", "postgres://u:secret@h:5432/db"):
        assert normalize(url) == "postgresql+psycopg://u:secret@h:5432/db"
    # psycopg2 asked for but absent: the declared psycopg 3 serves it.
    assert normalize("postgresql+psycopg2://u@h/db") == "postgresql+psycopg://u@h/db"
    monkeypatch.setattr(tune_storage, "_installed", lambda m: m == "psycopg2")
    assert normalize("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalize("sqlite:///x/study.db") == "sqlite:///x/study.db"
    assert shown("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"


def test_a_missing_driver_is_one_error_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tune_storage, "_installed", lambda m: False)
    out = fails(
        invoke("tune", tiny(tmp_path), "--storage", "postgresql://u:secret@h/db"),
        "--storage postgresql://u:***@h/db: no postgresql driver is installed (psycopg or psycopg2)",
        "pip install 'netspec[postgres]'",
    )
    assert "secret" not in out


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("not a url", "--storage 'not a url' is not a database URL"),
        ("oracle://u@h/db", "not 'oracle'"),
    ],
)
def test_a_bad_url_is_one_error(tmp_path: Path, url: str, needle: str) -> None:
    fails(invoke("tune", tiny(tmp_path), "--storage", url), needle)


def test_tables_created_by_another_process_meanwhile_are_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite tells a lost table-creation race as an OperationalError (CI saw `table
    study_user_attributes already exists` when two processes opened one new study.db)."""
    import optuna
    from sqlalchemy.exc import OperationalError

    real, calls = optuna.storages.RDBStorage, []

    def opening(reasons: list[str]):
        def open_(url: str, **kw):
            calls.append(url)
            if len(calls) <= len(reasons):
                raise OperationalError("CREATE TABLE", (), Exception(reasons[len(calls) - 1]))
            return real(url, **kw)

        return open_

    monkeypatch.setattr(tune_storage.time, "sleep", lambda s: None)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    monkeypatch.setattr(optuna.storages, "RDBStorage", opening(["table studies already exists"]))
    tune_storage.open_storage(url, heartbeat=60).engine.dispose()
    assert len(calls) == 2
    # Any other OperationalError is the database's real answer: one error, not retried.
    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", opening(["unable to open database file"]))
    with pytest.raises(UsageError, match="cannot open the study's database: unable to open"):
        tune_storage.open_storage(url, heartbeat=60)
    assert len(calls) == 1


def test_a_process_checks_a_databases_tables_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna makes and checks its tables on every storage it opens (its check runs Alembic's
    migration scripts, ~0.15 s); a tune command opens its study 4 times. This process checks
    a database once, and again after its SQLite file is deleted."""
    import optuna

    skipped = []

    class Counting(optuna.storages.RDBStorage):
        def __init__(self, url: str, *args, **kw) -> None:
            skipped.append((kw["skip_compatibility_check"], kw["skip_table_creation"]))
            super().__init__(url, *args, **kw)

    monkeypatch.setattr(optuna.storages, "RDBStorage", Counting)
    db = tmp_path / "study.db"
    for _ in range(3):
        tune_storage.open_storage(f"sqlite:///{db}", heartbeat=60).engine.dispose()
    db.unlink()
    storage = tune_storage.open_storage(f"sqlite:///{db}", heartbeat=60)
    assert optuna.create_study(storage=storage, study_name="s").study_name == "s"  # tables made
    storage.engine.dispose()
    assert skipped == [(False, False), (True, True), (True, True), (False, False)]


def test_an_unreachable_server_is_one_error(tmp_path: Path) -> None:
    if not any(importlib.util.find_spec(m) for m in ("psycopg", "psycopg2")):
        pytest.skip("no PostgreSQL driver installed")
    url = f"postgresql://u:secret@127.0.0.1:{free_port()}/db"  # nothing listens there
    out = fails(
        invoke("tune", tiny(tmp_path), "--storage", url, "--out", tmp_path / "s"),
        "cannot open the study's database",
        "check that the server runs",
    )
    assert "secret" not in out


# --- a real server ------------------------------------------------------------------------------


@pytest.mark.slow  # a killed command, then one of 2 spawned workers and one in-process
def test_a_killed_worker_and_two_commands_leave_an_exact_study(
    tmp_path: Path, postgres: str
) -> None:
    """The issue's whole scene on a real server: a worker killed mid-trial, then two commands
    started apart (one with 2 workers) finish the study: exactly N trials between them, the
    killed one failed, the data's note told once for the study."""
    import optuna

    spec = tiny(tmp_path)
    folder = tmp_path / "study"
    common = ["--storage", postgres, "--study", "killed", "--heartbeat", "1", "--out", folder]
    with (
        spawned(
            tune_cmd(spec, "--trials", 3, "--set", "train.epochs=100000", *common),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as doomed,
        rdb(postgres) as storage,
    ):
        deadline = time.monotonic() + 120  # reached only on failure
        while time.monotonic() < deadline and doomed.poll() is None:
            try:
                study = optuna.load_study(study_name="killed", storage=storage)
                trials = study.get_trials(deepcopy=False)
                if trials and trials[0].intermediate_values:  # it trains: kill it mid-trial
                    break
            except KeyError:  # the study is not created yet
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the first worker never trained an epoch")
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=30)
        # The killed worker told the data's note already: forget it, so that the
        # workers below meet it again (and tell it once among them).
        study.set_user_attr("notes", [])
    assert states(postgres, "killed") == ["RUNNING"]
    with spawned(
        tune_cmd(spec, "--trials", 4, "--workers", 2, *common), stderr=subprocess.PIPE
    ) as two:
        # Started apart: once the 2-worker command has taken a trial, one more in-process.
        deadline = time.monotonic() + 120  # reached only on failure
        while len(states(postgres, "killed")) < 2 and two.poll() is None:
            assert time.monotonic() < deadline, "the 2-worker command never took a trial"
            time.sleep(0.2)
        done = tune_here(spec, "--trials", 4, *common)
        two_err = two.communicate(timeout=240)[1].decode()
    assert two.returncode == 0, two_err
    assert done.exit_code == 0, done.output
    assert states(postgres, "killed") == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    data = check_best(folder)
    assert data["trials"][0]["reason"].startswith("its worker stopped (no heartbeat")
    assert data["best"]["number"] in (1, 2, 3)
    # The data's note (8x8 reshaped to 64) is told once for the study, not once a trial.
    assert two_err.count("note: ") + done.output.count("note: ") == 1, (two_err, done.output)
    # Run again: the study is full, nothing more is trained.
    again = tune_here(spec, "--trials", 4, *common)
    assert again.exit_code == 0, again.output
    assert len(states(postgres, "killed")) == 4
