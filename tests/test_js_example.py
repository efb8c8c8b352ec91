"""docs/js/predict.mjs, the README's Node.js example: onnxruntime-node and the JSON sidecar give
what `netspec predict --json` gives. Runs when node and onnxruntime-node are installed."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke, needs_digits

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "js" / "predict.mjs"


def _node_with_ort() -> str:
    """The node binary when it can load onnxruntime-node from docs/js (or NODE_PATH), else skip."""
    node, missing = _probe()
    if node is None:
        pytest.skip(missing)
    return node


@functools.cache
def _probe() -> tuple[str | None, str]:
    """(node, "") or (None, what is missing): asked once for the file (a node process)."""
    node = shutil.which("node")
    if node is None:
        return None, "node is not installed"
    probe = subprocess.run(
        [node, "-e", "require.resolve('onnxruntime-node')"],
        cwd=EXAMPLE.parent,
        capture_output=True,
        env=os.environ,
    )
    if probe.returncode != 0:
        return None, "onnxruntime-node is not installed: cd docs/js && npm install"
    return node, ""


def test_js_example_predicts_what_netspec_predicts(quickstart_onnx: Path, tmp_path: Path) -> None:
    node = _node_with_ort()
    needs_digits()
    from netspec.data.builtin import load_builtin

    digits = load_builtin("digits")
    np.save(tmp_path / "one.npy", digits.x[0])  # one raw sample (1, 8, 8), values 0..16
    np.save(tmp_path / "batch.npy", digits.x[1:6].astype(np.float64))  # a batch, another dtype
    inputs = [str(tmp_path / "one.npy"), str(tmp_path / "batch.npy")]
    done = subprocess.run(
        [node, str(EXAMPLE), str(quickstart_onnx), *inputs, "--top-k", "3"],
        cwd=EXAMPLE.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    js = json.loads(done.stdout)
    result = invoke("predict", quickstart_onnx, *inputs, "--top-k", "3", "--json")
    assert result.exit_code == 0, result.output
    py = json.loads(result.output)
    assert [r["input"] for r in js] == [r["input"] for r in py] and len(js) == 6
    for a, b in zip(js, py):
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        np.testing.assert_allclose(
            [p["score"] for p in a["predictions"]],
            [p["score"] for p in b["predictions"]],
            atol=1e-5,
        )


def test_readme_js_block_is_the_example() -> None:
    """docs/export.md's excerpt is predict.mjs's own lines, so it cannot drift from the tested file."""
    readme = (REPO / "docs" / "export.md").read_text()
    block = readme.split("```js\n", 1)[1].split("```", 1)[0]
    source = {line.strip() for line in EXAMPLE.read_text().splitlines()}
    missing = [line for line in block.splitlines() if line.strip() not in source]
    assert block.strip() and not missing, missing


@pytest.mark.parametrize(
    "flags, atol",
    [
        (("--fp16",), 1e-5),
        (("--fp16", "--fp16-io"), 1e-3),  # float16 out: netspec predict reads the same halves
        (("--int8", "--max-drop", "100"), 1e-5),
        (("--batch-dim", "4"), 1e-5),
    ],
    ids=["fp16", "fp16-io", "int8", "batch4"],
)
def test_js_example_runs_every_precision(
    quickstart_run: Path, tmp_path: Path, flags: tuple, atol: float
) -> None:
    """predict.mjs reads `inputs[0].dtype`: a --fp16-io export takes and gives float16."""
    node = _node_with_ort()
    needs_digits()
    from netspec.data.builtin import load_builtin

    model = tmp_path / "m.onnx"
    result = invoke("export", quickstart_run, "-o", model, *flags)
    assert result.exit_code == 0, result.output
    np.save(tmp_path / "batch.npy", load_builtin("digits").x[:5])
    inputs = [str(tmp_path / "batch.npy")]
    done = subprocess.run(
        [node, str(EXAMPLE), str(model), *inputs, "--top-k", "3"],
        cwd=EXAMPLE.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = invoke("predict", model, *inputs, "--top-k", "3", "--json")
    assert result.exit_code == 0, result.output
    for a, b in zip(json.loads(done.stdout), json.loads(result.stdout), strict=True):
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        np.testing.assert_allclose(
            [p["score"] for p in a["predictions"]],
            [p["score"] for p in b["predictions"]],
            atol=atol,
        )
