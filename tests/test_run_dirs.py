"""Run directories at their edges: what --out may be, and interrupted runs (no model.safetensors
yet) exported, evaluated and benchmarked from their checkpoints, or refused with the way on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import MLP, NO_PICTURES, fails, invoke, tiny_spec
from helpers import write_spec as write

from netspec.errors import SpecError
from netspec.runs import prepare_run, read_run, read_weights

pytestmark = pytest.mark.usefixtures("no_plots")

# No pictures: the report of the test split is drawn by none of these tests (1-2 s a run).
TINY = tiny_spec(MLP, test=0.2, log=NO_PICTURES)


def write_spec(folder: Path) -> Path:
    return write(folder, TINY)


# --- item 10: what --out may be -------------------------------------------------------------


def test_out_at_a_file_is_refused_before_any_data_is_read(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    out = tmp_path / "results.csv"
    out.write_text("a,b\n")
    fails(
        invoke("train", spec, "--out", out),
        f"--out {out} is a file, not a folder",
        "choose a new or empty folder",
    )
    assert out.read_text() == "a,b\n"
    with pytest.raises(SpecError, match=r"is a file, not a folder"):
        prepare_run(spec, [], out, True)


def test_out_at_a_folder_of_other_files_is_refused(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    data = tmp_path / "data"
    (data / "cats").mkdir(parents=True)
    (data / "labels.csv").write_text("x\n")
    output = fails(
        invoke("train", spec, "--out", data),
        f"--out {data} is a folder with other files (cats, labels.csv), not a run",
        "choose a new or empty folder",
    )
    assert "run directory:" not in output  # refused before the Trainer was made
    assert sorted(p.name for p in data.iterdir()) == ["cats", "labels.csv"]
    # --resume into it: not a run either, and said before the data is loaded.
    fails(invoke("train", spec, "--out", data, "--resume"), f"--resume: no checkpoint in {data}")


def test_out_at_an_empty_folder_or_a_run_being_resumed_is_fine(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    # What a killed atomic write leaves behind is not the user's: the folder counts as empty.
    (out / ".spec.yaml.abc123.tmp").write_text("half")
    assert prepare_run(spec, [], out, False)[1] == out
    (out / "model.json").write_text('{"name": "tiny", "netspec_version": "0.1.0"}')
    with pytest.raises(SpecError, match=r"already holds a run"):
        prepare_run(spec, [], out, False)
    assert prepare_run(spec, [], out, True)[1] == out


# --- item 12: interrupted runs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny spec trained for 2 epochs: model.safetensors, checkpoint/best and last."""
    folder = tmp_path_factory.mktemp("tiny-run")
    run = folder / "run"
    result = invoke("train", write_spec(folder), "--out", run)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def interrupted(finished: Path, tmp_path: Path) -> Path:
    """A copy of the run as Ctrl-C leaves it while the final model is written: no model.safetensors."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "model.safetensors").unlink()
    return run


def epoch_of(path: Path) -> int:
    from netspec.runs import checkpoint_epoch

    epoch = checkpoint_epoch(path)
    assert epoch is not None
    return epoch


def test_export_uses_the_best_checkpoint_and_says_so(interrupted: Path) -> None:
    best = interrupted / "checkpoint" / "best.safetensors"
    result = invoke("export", interrupted)
    assert result.exit_code == 0, result.output
    assert (
        f"note: {interrupted} has no model.safetensors (its training did not finish): "
        f"using checkpoint/best.safetensors (saved after epoch {epoch_of(best)})"
    ) in result.output
    assert (interrupted / "model.onnx").is_file()
    run = read_run(interrupted)
    assert run.weights_path == best
    expected, _ = read_weights(best)
    assert all(np.array_equal(run.weights[k], expected[k]) for k in expected)


def test_without_a_best_checkpoint_the_last_one_is_used(interrupted: Path) -> None:
    (interrupted / "checkpoint" / "best.safetensors").unlink()
    last = interrupted / "checkpoint" / "last.safetensors"
    run = read_run(interrupted)
    assert run.weights_path == last
    assert run.notes == [
        f"{interrupted} has no model.safetensors (its training did not finish): "
        "using checkpoint/last.safetensors (saved after epoch 2)"
    ]
    # The checkpoint's model part, not its optimizer and RNG state.
    assert set(run.weights) == {"dense.weight", "dense.bias", "dense_1.weight", "dense_1.bias"}


def test_evaluate_scores_the_checkpoint_and_says_so(interrupted: Path, finished: Path) -> None:
    (interrupted / "checkpoint" / "best.safetensors").unlink()
    result = invoke("evaluate", interrupted, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "using checkpoint/last.safetensors (saved after epoch 2)" in result.stderr
    # The last checkpoint holds the final weights here (no early stopping): same scores.
    reference = invoke("evaluate", finished, "--device", "cpu")
    assert json.loads(result.stdout) == json.loads(reference.stdout)


def test_bench_benchmarks_the_checkpoint_and_says_so(interrupted: Path) -> None:
    result = invoke("bench", interrupted, "--repeats", "1", "--batches", "1", "--json")
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["notes"]
    assert any("using checkpoint/best.safetensors" in n for n in notes), notes


@pytest.mark.parametrize("command", ["export", "evaluate", "bench"])
def test_a_run_stopped_before_its_first_epoch_holds_no_weights(
    interrupted: Path, command: str
) -> None:
    shutil.rmtree(interrupted / "checkpoint")
    fails(
        invoke(command, interrupted),
        "the run holds no weights yet: its training stopped before the first epoch ended",
        f"resume it with: netspec train {interrupted / 'spec.yaml'} --out {interrupted} --resume",
    )


def test_the_hint_resumes_a_run_that_saved_no_epoch(interrupted: Path, finished: Path) -> None:
    shutil.rmtree(interrupted / "checkpoint")
    for name in ("metrics.json", "metrics.csv"):
        (interrupted / name).unlink()
    result = invoke("train", interrupted / "spec.yaml", "--out", interrupted, "--resume")
    assert result.exit_code == 0, result.output
    assert "saved no epoch: training starts at epoch 1" in result.output
    got, _ = read_weights(interrupted / "model.safetensors")
    want, _ = read_weights(finished / "model.safetensors")
    assert got.keys() == want.keys()
    assert all(np.array_equal(got[k], want[k]) for k in want)  # the same seeds, the same run
