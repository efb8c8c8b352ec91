"""`netspec train` and `netspec evaluate` from the command line (in-process, via CliRunner).

The README's main job (specs/quickstart.yaml, ~15 s) runs once for the module; everything else
trains a few hundred digits for a few epochs.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers import CONV, LINEAR, fails, invoke, tiny_spec
from helpers import write_spec as write
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import netspec
from netspec import compile_file
from netspec.backends.training.loop import Trainer
from netspec.backends.training.state import spec_hash
from netspec.summary import render

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "specs" / "quickstart.yaml"


# --- the README's main job ---------------------------------------------------------------------


def report_pictures_off(mp: pytest.MonkeyPatch) -> None:
    """The classification report's pictures named but not drawn (~1.5 s a run on 2 busy
    cores): test_classify.py draws and checks real ones."""
    import netspec.backends.training.report_plots as report_plots

    def plot_class_report(out_dir, report, *, images, **kwargs) -> list[Path]:
        names = report_plots.report_pictures(report, images=images is not None)
        return [Path(out_dir) / name for name in names]

    mp.setattr(report_plots, "plot_class_report", plot_class_report)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("quickstart") / "run"
    with pytest.MonkeyPatch.context() as mp:
        report_pictures_off(mp)  # history.png is drawn, and checked below
        result = invoke("train", QUICKSTART, "--out", out)
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


@pytest.mark.slow  # the quickstart fixture trains 30 epochs (~15 s)
def test_quickstart_reaches_97_percent(quickstart: tuple[Path, dict]) -> None:
    run, printed = quickstart
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.97
    assert printed == {k: v for k, v in metrics.items() if k != "history"}


@pytest.mark.slow  # the quickstart fixture trains 30 epochs (~15 s)
def test_quickstart_run_directory(quickstart: tuple[Path, dict]) -> None:
    run, _ = quickstart
    graph = compile_file(QUICKSTART)
    assert yaml.safe_load((run / "spec.yaml").read_text()) == yaml.safe_load(QUICKSTART.read_text())
    assert (run / "summary.txt").read_text() == render(graph)

    meta = json.loads((run / "model.json").read_text())
    assert meta["task"] == "multiclass"
    assert meta["classes"] == [str(i) for i in range(10)]
    assert meta["spec_sha256"] == spec_hash(graph)
    assert meta["netspec_version"] == netspec.__version__
    assert meta["preprocessing"]["scale"] == 0.0625
    assert meta["preprocessing"]["input_shape"] == [1, 8, 8]

    tensors = load_file(str(run / "model.safetensors"))
    expected = {
        f"{layer}.{t}"
        for layer in ("conv2d", "conv2d_1", "dense", "dense_1")
        for t in ("weight", "bias")
    }
    assert set(tensors) == expected
    assert tuple(tensors["conv2d_1.weight"].shape) == (64, 32, 3, 3)
    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["netspec"])["classes"] == meta["classes"]
    best = load_file(str(run / "checkpoint" / "best.safetensors"))
    last = load_file(str(run / "checkpoint" / "last.safetensors"))
    assert all(torch.equal(best[k], tensors[k]) for k in expected)  # restore_best: true
    assert {f"model/{k}" for k in expected} <= set(last)

    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) == {"loss", "accuracy", "f1"}
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "epoch"} <= set(metrics["best"])
    assert 1 <= metrics["best"]["epoch"] <= metrics["epochs"] <= 30
    with (run / "metrics.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames or []
    assert {"epoch", "loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1", "lr"} <= set(
        header
    )
    assert [int(r["epoch"]) for r in rows] == list(range(1, metrics["epochs"] + 1))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])

    png = run / "history.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as img:
        img.verify()
    assert [p for p in run.rglob("*") if p.name.endswith(".tmp")] == []


@pytest.mark.slow  # the quickstart fixture trains 30 epochs (~15 s)
def test_evaluate_reproduces_the_test_metrics_exactly(quickstart: tuple[Path, dict]) -> None:
    run, _ = quickstart
    result = invoke("evaluate", run)
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert (got["split"], got["samples"]) == ("test", 359)
    assert {k: got[k] for k in test} == test


def test_evaluate_something_that_is_not_a_run(tmp_path: Path) -> None:
    fails(invoke("evaluate", tmp_path), "not a run directory", str(tmp_path))


# --- small specs ---------------------------------------------------------------------------------

TINY = tiny_spec(
    (CONV[0], "dropout: {rate: 0.25}", *LINEAR),
    val=0.2,
    batch_size=None,
    epochs=3,
    seed=4,
    augment="{shift: 0.1}",
    schedule="{name: step, step_size: 1, gamma: 0.5}",
)


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished run of TINY with `--set train.epochs=1`, and what it printed (stdout)."""
    tmp = tmp_path_factory.mktemp("tiny")
    with pytest.MonkeyPatch.context() as mp:
        import netspec.backends.training.plots

        mp.setattr(netspec.backends.training.plots, "plot_history", lambda *a, **k: None)
        report_pictures_off(mp)
        result = invoke("train", write(tmp, TINY), "--out", tmp / "run", "--set", "train.epochs=1")
    assert result.exit_code == 0, result.output
    return tmp / "run", result.stdout


@pytest.fixture(scope="module")
def tiny_run(tiny_trained: tuple[Path, str]) -> Path:
    """The finished one-epoch run of TINY (shared: read only)."""
    return tiny_trained[0]


def test_evaluate_refuses_data_for_a_builtin_dataset(tiny_run: Path, tmp_path: Path) -> None:
    fails(invoke("evaluate", tiny_run, "--data", tmp_path), "built-in dataset")


def test_evaluate_a_corrupt_model_file(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    model = run / "model.safetensors"
    model.write_bytes(model.read_bytes()[:1000])
    fails(invoke("evaluate", run), str(model), "cannot read weights")


@pytest.mark.slow  # trains, interrupts and resumes a run (~3 s)
def test_ctrl_c_exits_130_and_resume_finishes_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_plots: None
) -> None:
    spec = write(tmp_path, TINY)
    full = invoke("train", spec, "--out", tmp_path / "full")
    assert full.exit_code == 0, full.output

    monkeypatch.chdir(tmp_path)  # no --out: runs/<name>/<timestamp>, and --resume finds it
    calls = 0
    train_epoch = Trainer.train_epoch

    def boom(self: Trainer) -> dict[str, float]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return train_epoch(self)

    monkeypatch.setattr(Trainer, "train_epoch", boom)
    cut = invoke("train", spec)
    assert cut.exit_code == 130, cut.output
    assert "interrupted during epoch 3; epoch 2 is saved in runs/tiny/" in cut.output
    assert "--resume" in cut.output
    (run,) = (tmp_path / "runs" / "tiny").iterdir()

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
    resumed = invoke("train", spec, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"resumed runs/tiny/{run.name} after epoch 2" in resumed.output
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(resumed.stdout)["epochs"] == 3
    assert [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")] == []


def test_set_overrides_the_spec(tiny_trained: tuple[Path, str]) -> None:
    run, printed = tiny_trained  # TINY says 3 epochs; the run was started with --set epochs=1
    assert "epochs: 3" in TINY
    assert json.loads(printed)["epochs"] == 1
    assert yaml.safe_load((run / "spec.yaml").read_text())["train"]["epochs"] == 1


def test_transfer_shape_mismatch_exits_2(tiny_run: Path, tmp_path: Path, no_plots: None) -> None:
    wider = write(tmp_path, TINY.replace("filters: 4", "filters: 5"), "wider.yaml")
    result = invoke(
        "train",
        wider,
        "--out",
        tmp_path / "dst",
        "--set",
        f'train.init={{from: "{tiny_run}", layers: ["conv2d"]}}',
    )
    fails(
        result,
        "'conv2d.weight' has shape (4, 1, 3, 3)",
        "but (5, 1, 3, 3) in this network",
        "'conv2d.bias' has shape (4,)",
        problems=2,  # one per tensor
    )
    assert not (tmp_path / "dst" / "model.safetensors").exists()


# --- errors: exit 2, one message, no traceback -------------------------------------------------


def test_spec_without_a_train_section(tmp_path: Path) -> None:
    spec = write(tmp_path, "name: n\ninput: [4]\nlayers:\n  - dense: {units: 2}\n")
    fails(invoke("train", spec), "the spec has no `train:` section")


def test_set_with_a_bad_value_names_the_set(tmp_path: Path) -> None:
    fails(
        invoke("train", QUICKSTART, "--out", tmp_path / "r", "--set", "train.epochs=abc"),
        "--set train.epochs=abc: error: train.epochs",
    )
    assert not (tmp_path / "r").exists()


def test_set_with_a_misspelt_optimizer_suggests_the_name(tmp_path: Path) -> None:
    fails(
        invoke("train", QUICKSTART, "--out", tmp_path / "r", "--set", "train.optimizer.name=adm"),
        "--set train.optimizer.name=adm",
        "did you mean 'adam'?",
    )


def test_a_missing_data_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    spec = write(
        tmp_path,
        TINY.replace(
            "{source: builtin, limit: 200, val: 0.2}", f"{{source: folder, path: {missing}}}"
        ).replace("[1, 8, 8]", "[3, 8, 8]"),
    )
    fails(invoke("train", spec, "--out", tmp_path / "r"), str(missing), "image folder not found")
    assert not (tmp_path / "r").exists()


def test_more_classes_in_the_data_than_network_outputs(tmp_path: Path) -> None:
    spec = write(tmp_path, TINY.replace("units: 10", "units: 5"))
    fails(invoke("train", spec, "--out", tmp_path / "r"), "10 classes", "output is (5,)")


def test_resume_without_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write(tmp_path, TINY)
    (tmp_path / "empty").mkdir()
    fails(
        invoke("train", spec, "--out", tmp_path / "empty", "--resume"),
        f"--resume: no checkpoint in {tmp_path / 'empty'}",
    )
    monkeypatch.chdir(tmp_path)
    fails(invoke("train", spec, "--resume"), "--resume: no run of 'tiny' under runs/tiny")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_device_cuda_without_cuda(tmp_path: Path) -> None:
    spec = write(tmp_path, TINY)
    fails(
        invoke("train", spec, "--out", tmp_path / "r", "--device", "cuda"),
        "--device cuda: no CUDA device is available",
    )
