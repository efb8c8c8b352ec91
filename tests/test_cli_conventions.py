"""The command line's conventions: --version, completion, --json everywhere (errors included),
one name per idea, --set wherever a spec is read, flags without a value placeholder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import REPO, invoke
from typer.testing import CliRunner

import netspec
from netspec.cli import app

QUICKSTART = REPO / "specs" / "quickstart.yaml"
BAD_SPEC = "name: bad\ninput: [1, 8, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: 9}\n"

COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def json_error(result, kind: str) -> dict:
    """Exit 2 and one JSON error object of `kind` on stdout."""
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert list(doc) == ["error"]
    error = doc["error"]
    assert error["kind"] == kind
    assert error["message"] == error["problems"][0]["message"]
    return error


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"netspec {netspec.__version__}"


def test_shell_completion_is_offered() -> None:
    result = invoke("--help")
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout
    # What the installed shell script asks: the words so far, and which one to complete. (Not
    # `--show-completion`: without a shell it detects the parent process's, which a test cannot fix.)
    for words, cword, want in (
        ("netspec su", 1, "summary"),
        ("netspec predict --to", 2, "--top-k"),
    ):
        env = {"_NETSPEC_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        done = CliRunner().invoke(app, [], prog_name="netspec", env=env)
        assert done.exit_code == 0 and done.stdout.split() == [want], done.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_json_and_flags_show_no_placeholder(command: str) -> None:
    text = invoke(command, "--help").stdout
    assert "--json" in text
    assert "<bool>" not in text  # `--json <bool>` promised a value that `--json true` refuses
    assert re.search(r"--help\s+Show this message", text)


def test_spec_errors_as_json(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD_SPEC)
    error = json_error(invoke("summary", tmp_path / "bad.yaml", "--json"), "spec")
    assert error["file"] == str(tmp_path / "bad.yaml")
    assert error["line"] == 4 and error["stage"] == "shapes"
    assert error["path"] == "layers[0].conv2d" or error["path"].startswith("layers[0]")
    text = invoke("summary", tmp_path / "bad.yaml")  # without --json: text on stderr, as before
    assert text.exit_code == 2 and "bad.yaml:4" in text.stderr and not text.stdout


def test_usage_and_model_errors_as_json(tmp_path: Path) -> None:
    error = json_error(invoke("predict", "m.onnx", "x.npy", "--top-k", "many", "--json"), "usage")
    assert "'--top-k'" in error["message"] and error["hint"] == "see `netspec predict --help`"
    assert invoke("predict", "m.onnx", "x.npy", "--top-k", "many").exit_code == 2
    error = json_error(invoke("inspect", tmp_path / "none.onnx", "--json"), "model")
    assert error["message"] == "no such model file"
    error = json_error(invoke("evaluate", tmp_path, "--json"), "data")
    assert "not a run directory" in error["message"]
    error = json_error(invoke("train", QUICKSTART, "--set", "train.epochs", "--json"), "spec")
    assert error["hint"].startswith("write --set train.epochs=3")


def test_validate_json_reports_each_spec(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD_SPEC)
    result = invoke("validate", QUICKSTART, tmp_path / "bad.yaml", "--json")
    assert result.exit_code == 2
    good, bad = json.loads(result.stdout)
    assert good["ok"] and good["file"] == str(QUICKSTART) and "params" in good["summary"]
    assert not bad["ok"] and bad["error"]["kind"] == "spec" and bad["error"]["line"] == 4


def test_set_wherever_a_spec_is_read_and_dotted_indices(tmp_path: Path) -> None:
    doc = json.loads(
        invoke("summary", QUICKSTART, "--set", "layers.0.conv2d.filters=8", "--json").stdout
    )
    assert doc["layers"][0]["output_shape"] == [8, 8, 8]  # (filters, H, W) of the first conv
    same = invoke("summary", QUICKSTART, "--set", "layers[0].conv2d.filters=8", "--json")
    assert json.loads(same.stdout) == doc
    result = invoke("validate", QUICKSTART, "--set", "layers.0.conv2d.filters=0")
    assert result.exit_code == 2 and "--set layers.0.conv2d.filters=0" in result.stderr
    assert "--set" in invoke("tune", "--help").stdout


def test_bench_takes_set_on_a_spec(quickstart_run: Path) -> None:
    pytest.importorskip("torch")
    args = ("--set", "layers.0.conv2d.filters=0", "--json")
    error = json_error(invoke("bench", QUICKSTART, *args), "spec")
    assert error["file"] == "--set layers.0.conv2d.filters=0"
    error = json_error(invoke("bench", quickstart_run, *args), "usage")
    assert error["message"] == "--set changes a spec; this is a run or an .onnx file"


def test_one_name_per_idea() -> None:
    shown = {c: invoke(c, "--help").stdout for c in ("train", "tune", "export", "predict")}
    for command in ("train", "tune", "export", "predict"):
        assert re.search(r"--out\s+-o", shown[command]), command
    for old in ("--provider", "--batch-size", "--out-dir"):
        assert old not in shown["predict"]
    assert "--device" in shown["predict"] and "--batch " in shown["predict"]
    # --batch means samples per call; the export's batch dimension and bench's list say so.
    assert "--batch-dim" in shown["export"] and not re.search(r"--batch\s", shown["export"])
    bench = invoke("bench", "--help").stdout
    assert "--batches" in bench and not re.search(r"--batch\s", bench)


@pytest.mark.parametrize(
    "args",
    [
        ("predict", "m.onnx", "x.npy", "--provider", "cpu"),
        ("predict", "m.onnx", "x.npy", "--batch-size", "1"),
        ("predict", "m.onnx", "x.npy", "--out-dir", "masks"),
        ("export", "run", "--onnx"),
        ("export", "run", "--batch", "4"),
        ("bench", "spec.yaml", "--batch", "1,64"),
    ],
)
def test_old_option_names_are_usage_errors(args: tuple[str, ...]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2 and "No such option" in result.stderr, result.output


def test_predict_device_is_checked(quickstart_onnx: Path) -> None:
    assert "--device tpu" in invoke("predict", quickstart_onnx, "x.npy", "--device", "tpu").stderr


def test_export_needs_no_format_flag(quickstart_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    result = invoke("export", quickstart_run, "-o", tmp_path / "q.onnx", "--no-check", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["path"] == str(tmp_path / "q.onnx") and doc["opset"] == 13  # the lowest it needs
    assert doc["sidecar"] == str(tmp_path / "q.onnx.json")
    assert (tmp_path / "q.onnx").is_file()


def test_tune_takes_set(tmp_path: Path, no_plots) -> None:
    pytest.importorskip("optuna")
    from test_tune import tiny

    spec, folder = tiny(tmp_path), tmp_path / "study"
    args = ("--trials", 1, "--out", folder, "--pruner", "none", "--json")
    result = invoke(
        "tune", spec, *args, "--set", "train.epochs=1", "--set", "layers.0.conv2d.kernel=5"
    )
    assert result.exit_code == 0, result.output
    (trial,) = json.loads(result.stdout)["trials"]
    run_spec = (Path(trial["run"]) / "spec.yaml").read_text()  # what the worker trained
    assert "epochs: 1\n" in run_spec and "kernel: 5" in run_spec
