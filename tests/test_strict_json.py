"""Every JSON document netspec prints is strict JSON: a NaN or an infinity is null, never `NaN`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import invoke

from netspec.jsonio import dumps, finite


def strict(text: str) -> Any:
    """Parse as a strict parser would: NaN, Infinity and -Infinity are refused."""

    def refuse(token: str) -> None:
        raise AssertionError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_finite_and_dumps() -> None:
    value = {"a": math.nan, "b": [1.0, math.inf, (2, -math.inf)], "c": "NaN", "d": 3}
    assert finite(value) == {"a": None, "b": [1.0, None, [2, None]], "c": "NaN", "d": 3}
    assert strict(dumps(value)) == finite(value)
    assert dumps({"x": [1, 2]}) == json.dumps({"x": [1, 2]}, indent=2)  # otherwise unchanged


def test_inspect_json_of_a_card_holding_nan(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    helper.set_model_props(model, {"netspec.raw_range": "[NaN, Infinity]"})  # a tampered card
    onnx.save(model, tmp_path / "m.onnx")
    result = invoke("inspect", tmp_path / "m.onnx", "--json")
    assert result.exit_code == 0, result.output
    assert strict(result.stdout)["netspec"]["raw_range"] == [None, None]


class _Report:
    def to_dict(self) -> dict[str, Any]:
        return {"max_diff": math.nan, "int8_drop": math.inf, "path": "m.onnx"}


def _fake(monkeypatch: pytest.MonkeyPatch, command: str) -> list[str]:
    """Replace the backend behind `command` by one whose result holds NaN; the CLI's arguments."""
    if command == "export":
        pytest.importorskip("onnx")
        import netspec.backends.export.run as run

        monkeypatch.setattr(run, "export_run", lambda *a, **k: _Report())
        return ["export", "some-run"]
    if command == "bench":
        pytest.importorskip("onnxruntime")
        import netspec.backends.bench.result as result
        import netspec.backends.bench.run as run

        monkeypatch.setattr(run, "bench", lambda *a, **k: SimpleNamespace())
        monkeypatch.setattr(result, "to_dict", lambda r: {"max_diff": math.nan})
        return ["bench", "spec.yaml"]
    pytest.importorskip("optuna")
    import netspec.backends.tune.report as report

    study = {"best": {"number": 0, "value": math.nan}, "trials": [{"value": -math.inf}]}
    monkeypatch.setattr(report, "tune_study", lambda *a, **k: (study, "text"))
    return ["tune", "spec.yaml"]


@pytest.mark.parametrize("command", ["export", "bench", "tune"])
def test_json_output_is_strict_when_a_value_is_nan(
    monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    args = _fake(monkeypatch, command)
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    doc = strict(result.stdout)
    assert None in (list(doc.values()) + [v for t in doc.get("trials", []) for v in t.values()])
