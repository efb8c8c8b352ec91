"""`netspec evaluate` and `netspec export --int8` of an imported run: refused with one message
naming the train: section to add while the run has no data, then scoring and calibrating on
the data the user names, with the source model's own preprocessing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from helpers import SHARED_DATA, fails, invoke, needs_data  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

IRIS = SHARED_DATA / "iris" / "iris.csv"


def _classifier(path: Path) -> None:
    """An iris classifier as another producer writes it: the input scaled by a constant (the
    preprocessing record), Gemm, Relu, Gemm, Softmax; weights that tell the classes apart."""
    # nearest class mean of the scaled features: z_k = 2 c_k.x - |c_k|^2
    means = 0.5 * np.array(
        [[5.0, 3.4, 1.46, 0.25], [5.94, 2.77, 4.26, 1.33], [6.59, 2.97, 5.55, 2.03]]
    )
    w1 = np.zeros((8, 4), np.float32)
    w1[:4] = np.eye(4)
    w2 = np.zeros((3, 8), np.float32)
    w2[:, :4] = 2 * means
    inits = {
        "s": np.float32(0.5),
        "w1": w1,
        "b1": np.zeros(8, np.float32),
        "w2": w2,
        "b2": -(means**2).sum(1).astype(np.float32),
    }
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["xs"], name="scale"),
        helper.make_node("Gemm", ["xs", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["z"], name="fc2", transB=1),
        helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "iris",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _source_accuracy(path: Path) -> float:
    with IRIS.open() as f:
        rows = list(csv.DictReader(f))
    x = np.array([[float(r[k]) for k in list(r)[:4]] for r in rows], np.float32)
    classes = sorted({r["species"] for r in rows})
    y = np.array([classes.index(r["species"]) for r in rows])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float((session.run(None, {"x": x})[0].argmax(1) == y).mean())


@needs_data
def test_evaluate_and_int8_of_an_imported_run(tmp_path: Path) -> None:
    source = tmp_path / "iris.onnx"
    _classifier(source)
    run = tmp_path / "run"
    assert invoke("import", source, "-o", run).exit_code == 0
    # no data yet: one message each, naming what to add
    for args in (("evaluate", run), ("export", run, "--int8")):
        message = fails(invoke(*args), "has no data of its own", "train: {data:")
        assert "spec.yaml" in message and "Traceback" not in message
    spec = run / "spec.yaml"
    spec.write_text(
        spec.read_text() + f"train:\n  data: {{source: csv, path: {IRIS}, target: species, "
        "test: 0.2, val: 0.2}\n  log: {pictures: false}\n"  # evaluate draws no report pictures
    )
    # all of --data: the source model's accuracy (its input scaling applied, once)
    result = invoke("evaluate", run, "--data", IRIS)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    want = _source_accuracy(source)
    assert want > 0.9
    assert scores["samples"] == 150
    assert scores["accuracy"] == pytest.approx(want)
    assert "training split" not in result.output  # an imported model was trained elsewhere
    # its test split, the classes named by the data
    result = invoke("evaluate", run)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["split"] == "test"
    assert "setosa" in result.output
    result = invoke("export", run, "--int8")
    assert result.exit_code == 0, result.output
    assert "int8 (static, QLinearConv/QLinearMatMul, calibrated on" in result.output
    assert "checked on 16 samples of the run's data" in result.output


@needs_data
def test_data_of_another_number_of_classes_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "iris.onnx"
    _classifier(source)
    run = tmp_path / "run"
    assert invoke("import", source, "-o", run).exit_code == 0
    table = tmp_path / "two.csv"
    lines = IRIS.read_text().splitlines()
    table.write_text("\n".join([lines[0], *[r for r in lines[1:] if "virginica" not in r]]))
    spec = run / "spec.yaml"
    spec.write_text(
        spec.read_text() + f"train:\n  data: {{source: csv, path: {table}, target: species}}\n"
    )
    fails(invoke("evaluate", run, "--data", table), "the data has 2 classes", "3 outputs")
