"""The command line, driven in-process with Typer's CliRunner (and once as `python -m netspec`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer.testing
from helpers import built_command, invoke

from netspec import compile_file
from netspec.summary import rows, totals

REPO = Path(__file__).resolve().parents[1]
BROKEN = Path(__file__).parent / "broken"
SPEC_FILES = sorted((REPO / "specs").glob("*.yaml"))

TOP_KEYS = {
    "name",
    "input_shape",
    "output_shape",
    "total_params",
    "trainable_params",
    "non_trainable_params",
    "macs",
    "layers",
}
LAYER_KEYS = {"name", "type", "inputs", "output_shape", "params", "trainable_params", "macs"}


def test_summary_json(spec_path: Path):
    result = invoke("summary", "--json", str(spec_path))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= TOP_KEYS
    graph = compile_file(spec_path)
    t = totals(rows(graph))
    assert data["name"] == graph.name
    assert data["input_shape"] == list(graph.input_shape)
    assert data["output_shape"] == list(graph.output.shape)
    assert (
        data["total_params"],
        data["trainable_params"],
        data["non_trainable_params"],
        data["macs"],
    ) == (t.total_params, t.trainable_params, t.non_trainable_params, t.macs)
    assert len(data["layers"]) == len(graph.nodes)
    for layer, node in zip(data["layers"], graph.nodes):
        assert set(layer) >= LAYER_KEYS
        assert layer["name"] == node.name
        assert layer["type"] == node.kind
        assert layer["inputs"] == list(node.inputs)
        assert layer["output_shape"] == list(node.shape)
        assert (layer["params"], layer["trainable_params"], layer["macs"]) == (
            node.params,
            node.trainable_params,
            node.macs,
        )


def test_summary_json_numbers_of_a_known_spec():
    data = json.loads(invoke("summary", "--json", str(REPO / "specs/cifar_cnn.yaml")).stdout)
    assert (data["total_params"], data["trainable_params"], data["non_trainable_params"]) == (
        1_345_066,
        1_343_146,
        1_920,
    )
    assert data["input_shape"] == [3, 32, 32]
    assert data["output_shape"] == [10]
    want = {
        "name": "stage/conv2d",
        "type": "conv2d",
        "inputs": ["input"],
        "output_shape": [32, 32, 32],
        "params": 896,
        "trainable_params": 896,
        "macs": 32 * 32 * 32 * 27,
    }
    assert {k: data["layers"][0][k] for k in want} == want


def test_summary_table_totals():
    result = invoke("summary", str(REPO / "specs/mnist_cnn.yaml"))
    assert result.exit_code == 0
    assert result.stdout.startswith('Model: "mnist_cnn"\n')
    assert "Total params: 93,322 (364.54 KB as float32)\n" in result.stdout
    assert "Non-trainable params: 0\n" in result.stdout


def test_validate_all_good():
    result = invoke("validate", *map(str, SPEC_FILES))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(SPEC_FILES)
    for line, path in zip(lines, SPEC_FILES):
        assert line.startswith(f"ok: {path}: ")
    assert (
        "ok: "
        + str(REPO / "specs/unet.yaml")
        + ": 35 layers, 31,030,658 params, output (2, 388, 388)"
        in lines
    )
    assert result.stderr == ""


def test_validate_reports_each_file_and_exits_2_if_any_is_bad():
    good = [REPO / "specs/mnist_mlp.yaml", REPO / "specs/unet.yaml"]
    bad = [BROKEN / "argument_typo.yaml", BROKEN / "several_errors.yaml"]
    files = [good[0], bad[0], good[1], bad[1]]
    result = invoke("validate", *map(str, files))
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        line for line in result.stdout.splitlines() if line.startswith("ok: ")
    ]
    assert [line.split(": ")[1] for line in result.stdout.splitlines()] == list(map(str, good))
    assert f"{bad[0]}:5:14: error: layers[0].conv2d.filter: unknown argument 'filter'" in (
        result.stderr
    )
    assert result.stderr.count(f"{bad[1]}:") == 5  # every problem of the second bad file
    assert result.stderr.rstrip().endswith("2 of 4 specs are invalid")


def test_missing_file_exits_2():
    result = invoke("validate", str(REPO / "specs/mnist_mlp.yaml"), "no/such/spec.yaml")
    assert result.exit_code == 2
    assert "no/such/spec.yaml: error: no such file" in result.stderr
    assert "1 of 2 specs are invalid" in result.stderr


def test_the_runner_builds_the_command_once():
    """helpers.built_command replaces the name Typer's CliRunner builds its click command with;
    if Typer renames it, every invoke builds again (~14 ms each) and this says so."""
    from netspec.cli import app

    assert typer.testing._get_command is built_command
    assert built_command(app) is built_command(app)
    assert invoke("--version").exit_code == 0


# --- the module entry point ----------------------------------------------------------------------


def test_python_dash_m_help():
    proc = subprocess.run(
        [sys.executable, "-m", "netspec", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("summary", "validate", "schema"):
        assert command in proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_command_runs_with_the_processes_collector_thresholds(monkeypatch) -> None:
    """`netspec` sets gcpause.PROCESS_THRESHOLDS before its command imports anything heavy."""
    import gc

    import netspec.cli
    from netspec.gcpause import PROCESS_THRESHOLDS

    before = gc.get_threshold()
    monkeypatch.setattr(sys, "argv", ["netspec", "--version"])
    gc.set_threshold(700, 10, 10)  # Python's defaults, as a fresh process has them
    try:
        try:
            netspec.cli.main()
        except SystemExit as stop:
            assert stop.code in (0, None)
        assert gc.get_threshold() == PROCESS_THRESHOLDS
    finally:
        gc.set_threshold(*before)
