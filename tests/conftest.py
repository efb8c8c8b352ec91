"""Shared test configuration: torch on one thread, bytecode kept, the `--update-golden` flag,
every spec in specs/, the shared data, Keras imported when first needed, plots switched off, and
one trained quickstart run for the whole session."""

from __future__ import annotations

import gc
import os
import shutil
import sys
from pathlib import Path
from typing import Any

# torch (and numpy's BLAS) on one thread in the tests and in the processes they start, unless the
# caller says otherwise; set before anything imports torch. The tests' networks are small: a
# second thread gains little, and on a machine doing other work the threads wait for each other
# (measured on 2 busy cores: four tiny Trainer tests took 31 s on 2 threads, 18 s on 1; five
# U-Net training steps on 8 tiles of 64x64, 1.9-9.9 s on 2 threads, 0.3-0.4 s on 1).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The collector's thresholds of netspec's own processes (gcpause.collect_less) in the suite's
# workers too: each holds torch, onnx, Keras and the tests' objects (~700,000).
from netspec.gcpause import collect_less

collect_less()

# Bytecode kept (in __pycache__ folders, which git ignores) even where the environment says
# PYTHONDONTWRITEBYTECODE, as many containers do: otherwise every process of the suite (each
# xdist worker, each `python -m netspec` it starts) compiles the tests, netspec and Keras from
# source again, and pytest rewrites every test module's asserts again (measured on 2 cores:
# collection 16.7 s without, 9.1 s with).
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

import pytest  # noqa: E402 (after the settings above, which its imports must see)
from helpers import REPO, SHARED_DATA, invoke, plain_specs  # noqa: E402

SPEC_FILES = plain_specs()


def _exit_without_teardown() -> None:
    """The last of an xdist worker's exit handlers: end the process without the interpreter's
    teardown, which frees torch's, Keras's and every test's objects one by one (1-2 s a worker
    that the run waits for, measured on 2 cores). Its results went to the controller before."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if os.environ.get("PYTEST_XDIST_WORKER"):
    import atexit

    atexit.register(_exit_without_teardown)  # before what the tests import registers: run after it


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/*.txt from the current output instead of comparing with them",
    )


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent without it
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per core this process may use, at most 4 (PYTEST_XDIST_AUTO_NUM_WORKERS
    overrides). Every worker collects the whole suite (torch, onnx and Keras imported: ~10 s of
    CPU and about a GB each), and `--dist loadfile` keeps a file's tests, and so its module
    fixtures, on one worker: past a few workers, the longest files set the time."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    from netspec.data.cache_choice import cores

    return max(1, min(4, cores()))


def pytest_configure(config: pytest.Config) -> None:
    # xdist's loadfile schedule hands out files by their number of tests, most first, which
    # leaves the files of a few multi-process tests (10-30 s each) to the end, one worker running
    # them while the other waits. Files go out in the order pytest_collection_modifyitems below
    # gives instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


# The test files that import a library few tests need, by what they import: xdist runs each
# group on one worker, as one unit of work, rather than every worker importing the library for
# a few tests of its own (test_suite.py checks each list is every file that imports it).
GROUPS = {
    # Keras ~2 s of CPU and ~300 MB a process, scikit-learn and SciPy ~1 s (Keras imports them)
    "Keras and scikit-learn": frozenset(
        f"tests/test_{name}.py"
        for name in (
            "classify", "classreport", "data", "docs", "import_blocks", "import_edges",
            "import_keras", "import_producers", "import_vocab", "import_walkthrough",
            "keras_parity", "metrics", "vocab_layers",
        )
    ),
    # Optuna, and SQLAlchemy and Alembic when a study's storage opens (~0.5 s)
    "Optuna": frozenset(
        f"tests/test_{name}.py"
        for name in ("cli_conventions", "stream", "strict_json", "tune", "tune_postgres")
    ),
}  # fmt: skip
_GROUP_OF = {path: group for group, paths in GROUPS.items() for path in paths}


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, with each of GROUPS one unit of work."""
    if config.getoption("dist") != "loadfile":
        return None  # xdist's own scheduler for the mode asked
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return _GROUP_OF.get(path, path)

    return Scheduling(config, log)


# A test's guessed cost in seconds, to order files by: a slow one (mostly processes that train)
# against a typical other one (measured: 228 s for 41 slow tests, 162 s for 2716 others).
SLOW_COST, OTHER_COST = 8.0, 0.06


def pytest_collection_finish(session: pytest.Session) -> None:
    # What collection imported (torch, onnx, netspec, the test modules: ~400,000 objects) lives
    # as long as the process: kept out of every later full collection, including the explicit
    # ones (DDP's teardown, pytest's last). Measured: the collector took 6.0 s of `-m "not slow"`,
    # 3.9 s with this.
    gc.freeze()


@pytest.hookimpl(trylast=True)  # after the runner has torn down the file's fixtures
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    # At the end of each test file: its garbage collected (a collection of what the file left,
    # frozen before it is not walked again), then what lives on (session fixtures, modules the
    # file imported, caches) frozen as collection's objects are. The collector's later passes,
    # and pytest's two at the end of each worker, walk only what newer files made. Measured on
    # `-m "not slow"`: 4.6 s in the collector during the tests, 3.3 s with this (the end's
    # passes, not counted there, were about 0.5 s a worker before).
    if nextitem is None or nextitem.path != item.path:
        gc.collect()
        gc.freeze()


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the costliest files first: each worker takes the next file when it is nearly
    done, so the long ones start early and short ones fill the end (simulated on a measured full
    run: the busier of 2 workers at 195 s of tests rather than 204 s)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process: the usual order
    cost: dict[Path, float] = {}
    for item in items:
        slow = item.get_closest_marker("slow") is not None
        cost[item.path] = cost.get(item.path, 0.0) + (SLOW_COST if slow else OTHER_COST)
    first = {path: i for i, path in enumerate(cost)}
    items.sort(key=lambda item: (-cost[item.path], first[item.path]))  # a file's tests in order


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test that takes `spec_path` runs once per file in specs/: a new spec is tested by adding it.
    if "spec_path" in metafunc.fixturenames:
        metafunc.parametrize("spec_path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The datasets shared by every checkout: a `shared/data` folder beside the repository."""
    return SHARED_DATA


# --- Keras, imported by the tests that use it ---------------------------------------------------


@pytest.fixture(scope="session")
def keras_module() -> Any:
    """Keras 3 on its torch backend (skips where it is missing or on another backend), imported
    when a test first needs it rather than when its file is collected: importing Keras pulls in
    scikit-learn, SciPy, matplotlib and torch._dynamo (~3 s, 7 s on busy cores), and every xdist
    worker collects every file, although one worker runs the Keras tests."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("Keras runs on another backend here")
    return keras


# --- plots ----------------------------------------------------------------------------------


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A disk cache of decoded samples of the test's own (train.data.cache: disk), never the
    user's: the streaming tests use it."""
    from netspec.data import stream

    folder = tmp_path / "cache"
    monkeypatch.setenv(stream.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def no_plots(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """history.png, a classification run's report pictures and a segmentation run's
    predictions.png (or a completion run's completions.png) take longer to draw than tiny runs
    take to train: record their paths instead of drawing them (test_train_cli.py's quickstart
    test, test_classify.py, test_train_seg.py and test_gallery.py check real ones). A test that
    also asks for `real_plots` draws them for real. Returns the paths that would have been drawn."""
    drawn: list[Path] = []
    if "real_plots" not in request.fixturenames:
        import netspec.backends.training.completions as completions
        import netspec.backends.training.plots
        import netspec.backends.training.report_plots as report_plots
        import netspec.backends.training.seg_plots as seg_plots

        def plot_history(history, path, **kwargs) -> None:
            drawn.append(Path(path))

        def plot_grid(images, true, pred, path, **kwargs) -> None:  # predictions, completions
            drawn.append(Path(path))

        def plot_class_report(out_dir, report, *, images, **kwargs) -> list[Path]:
            names = report_plots.report_pictures(report, images=images is not None)
            drawn.extend(Path(out_dir) / name for name in names)
            return [Path(out_dir) / name for name in names]

        monkeypatch.setattr(netspec.backends.training.plots, "plot_history", plot_history)
        monkeypatch.setattr(report_plots, "plot_class_report", plot_class_report)
        monkeypatch.setattr(seg_plots, "plot_predictions", plot_grid)
        monkeypatch.setattr(completions, "plot_completions", plot_grid)
    return drawn


@pytest.fixture
def real_plots() -> None:
    """Draw history.png and the report pictures for real in this test, even where `no_plots`
    is in use."""


# --- one trained quickstart run -----------------------------------------------------------------


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """specs/quickstart.yaml trained for one epoch (history.png not drawn; the classification
    report and its pictures are) and exported to model.onnx, checked against PyTorch on the
    run's data. Shared by the session and its xdist workers: read it, never write into it; a
    test that writes into a run takes `quickstart_copy`."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _train_quickstart(tmp_path_factory.mktemp("quickstart-1-epoch") / "run")
    # Under xdist, one run for all the workers: the first to ask trains it (about 3 s of CPU and
    # the run's export), the others wait for it under a lock. The workers' temporary folders
    # share a parent that belongs to this session alone.
    from filelock import FileLock  # torch's own dependency

    shared = tmp_path_factory.getbasetemp().parent / "quickstart-1-epoch"
    with FileLock(str(shared) + ".lock"):
        done = shared / "done"
        if not done.is_file():
            shutil.rmtree(shared, ignore_errors=True)  # a worker that failed half-way
            _train_quickstart(shared / "run")
            done.touch()
    return shared / "run"


def _train_quickstart(run: Path) -> Path:
    import netspec.backends.training.plots
    from netspec.backends.export.run import export_run

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(netspec.backends.training.plots, "plot_history", lambda *a, **k: None)
        result = invoke(
            "train", REPO / "specs" / "quickstart.yaml", "--out", run, "--set", "train.epochs=1"
        )
    assert result.exit_code == 0, result.output
    export_run(run)
    return run


@pytest.fixture(scope="session")
def quickstart_onnx(quickstart_run: Path) -> Path:
    """The trained quickstart run's model.onnx (shared: read only)."""
    return quickstart_run / "model.onnx"


@pytest.fixture
def quickstart_copy(quickstart_run: Path, tmp_path: Path) -> Path:
    """This test's own copy of the trained quickstart run, as `netspec train` left it: without
    the model.onnx that export writes, so that a test can write into it and see its own files only."""
    run = tmp_path / "quickstart-run"
    shutil.copytree(
        quickstart_run, run, ignore=shutil.ignore_patterns("model.onnx", "model.onnx.json")
    )
    return run
