"""The README's Python section runs: its ```python blocks, in order, in one namespace, in a
temporary folder holding specs/quickstart.yaml (as the repository root does)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import REPO


def python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_python_section_has_the_four_steps():
    code = "\n".join(python_blocks())
    for call in ("load_spec(", ".summary()", ".to_torch()", ".train(", "load_run(",
                 ".export_onnx()", ".evaluate()", "Predictor(", ".predict(", ".module"):  # fmt: skip
        assert call in code, call


@pytest.mark.slow
def test_the_python_section_runs(tmp_path: Path, monkeypatch, no_plots, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("sklearn")
    (tmp_path / "specs").mkdir()
    shutil.copy(REPO / "specs" / "quickstart.yaml", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(python_blocks()):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert 'Model: "quickstart"' in out and "Total params: 151,306" in out
    assert "'input': 'inputs[0][0]'" in out
    run = namespace["run"]
    assert run.dir == Path("runs/quickstart-py") and len(run.history) == 3
    assert (tmp_path / "runs" / "quickstart-py" / "model.onnx").is_file()
    # The trained module and the exported model agree on the digits.
    predicted = [
        r["predictions"][0]["label"] for r in namespace["predictor"].predict(namespace["digits"])
    ]
    assert predicted == [str(int(k)) for k in namespace["probs"].argmax(1)]
