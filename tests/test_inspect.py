"""`netspec inspect`: inputs, outputs, dynamic axes, opsets, size, parameters, operators and the
netspec metadata of an export, and the same for any ONNX file (one without metadata says so)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from helpers import invoke, preprocessing_record  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import netspec  # noqa: E402
from netspec.backends.export.inspection import InspectError, inspect_model  # noqa: E402
from netspec.backends.export.model import export_onnx  # noqa: E402
from netspec.summary import rows, totals  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PRE = preprocessing_record((1, 28, 28), scale=1 / 255, mean=[0.1307], std=[0.3081])
META = {
    "name": "mnist_cnn",
    "netspec_version": "0.1.0",
    "spec_sha256": "ab" * 32,
    "task": "multiclass",
    "classes": [f"digit {i}" for i in range(10)],
    "preprocessing": PRE,
}


def zeros(graph: netspec.Graph) -> dict[str, np.ndarray]:
    return {
        f"{n.name}.{t}": np.full(shape, 0.5, np.float32)
        for n in graph.nodes
        for t, shape in ((t, w.shape) for t, w in n.weights.items())
    }


@pytest.fixture(scope="module")
def mnist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, netspec.Graph]:
    """specs/mnist_cnn.yaml exported with metadata (dynamic batch) and without (batch 4)."""
    graph = netspec.compile_file(REPO / "specs" / "mnist_cnn.yaml")
    folder = tmp_path_factory.mktemp("inspect")
    dynamic, fixed = folder / "mnist.onnx", folder / "mnist_b4.onnx"
    onnx.save(export_onnx(graph, zeros(graph), meta=META), dynamic)
    onnx.save(export_onnx(graph, zeros(graph), batch=4), fixed)
    return dynamic, fixed, graph


def test_inspect_an_export_as_json(mnist) -> None:
    path, _, graph = mnist
    result = invoke("inspect", path, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    model = onnx.load(str(path))
    assert info["file"] == str(path) and info["size_bytes"] == path.stat().st_size
    assert info["ir_version"] == model.ir_version and info["opsets"] == {"ai.onnx": 13}
    assert info["producer"] == f"netspec {netspec.__version__}"
    assert info["inputs"] == [
        {
            "name": "input",
            "type": "float32",
            "shape": ["batch", 1, 28, 28],
            "dynamic_axes": {"0": "batch"},
        }
    ]
    assert info["outputs"] == [
        {
            "name": "dense_1",
            "type": "float32",
            "shape": ["batch", 10],
            "dynamic_axes": {"0": "batch"},
        }
    ]
    assert info["parameters"] == totals(rows(graph)).total_params == 93_322
    ops = Counter(n.op_type for n in model.graph.node)
    assert info["operators"] == dict(ops) and info["nodes"] == len(model.graph.node)
    assert info["operators"]["Conv"] == 3 and next(iter(info["operators"])) == "Relu"  # most first
    meta = info["netspec"]
    assert meta["name"] == "mnist_cnn" and meta["spec_sha256"] == "ab" * 32
    assert meta["task"] == "multiclass" and meta["head"] == "softmax"
    assert meta["classes"] == META["classes"]
    steps = meta["preprocessing"].pop("steps")
    assert {k: meta["preprocessing"][k] for k in PRE} == PRE
    assert meta["preprocessing"]["layout"] == "NCHW" and meta["preprocessing"]["raw_range"] is None
    assert [s["step"] for s in steps] == [
        "decode", "resize_to_input", "to_float32", "scale", "normalize", "reshape"
    ]  # fmt: skip
    assert meta["input_shape"] == [1, 28, 28] and meta["output_shape"] == [10]
    assert info["metadata"] == {}


def test_inspect_text(mnist) -> None:
    path, fixed, _ = mnist
    result = invoke("inspect", path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"file:       {path}" in lines
    assert "format:     ONNX IR version 7, opset ai.onnx 13" in lines
    assert "  input: float32 (batch, 1, 28, 28)  dynamic: axis 0 'batch'" in lines
    assert "  dense_1: float32 (batch, 10)  dynamic: axis 0 'batch'" in lines
    assert "parameters: 93,322 in 10 initializers (13 nodes)" in lines
    assert (
        "  classes: 10: digit 0, digit 1, digit 2, digit 3, digit 4, digit 5, digit 6, digit 7, digit 8, digit 9"
        in lines
    )
    assert (
        "  preprocessing: raw sample (1, 28, 28): L image, x * 0.00392157, "
        "(x - [0.1307]) / [0.3081] per channel, layout NCHW" in lines
    )
    # A fixed batch has no dynamic axis; an export without a run's model.json has less metadata.
    result = invoke("inspect", fixed)
    assert result.exit_code == 0, result.output
    assert "  input: float32 (4, 1, 28, 28)" in result.output.splitlines()
    assert "classes" not in result.output and "  head: softmax" in result.output


def test_inspect_any_onnx_file(tmp_path: Path) -> None:
    """A model built with onnx.helper: weights listed among the inputs (old style), no metadata."""
    w = numpy_helper.from_array(np.ones((3, 4), np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y0"]),
            helper.make_node("Relu", ["y0"], ["y"]),
            helper.make_node("Cast", ["y"], ["z"], to=TensorProto.INT64),
        ],
        "plain",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", None, 3]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [4]),
        ],
        [helper.make_tensor_value_info("z", TensorProto.INT64, ["n", None, 4])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    helper.set_model_props(model, {"author": "someone"})
    onnx.save(model, tmp_path / "plain.onnx")
    info = inspect_model(tmp_path / "plain.onnx")
    assert [v["name"] for v in info["inputs"]] == ["x"]  # w and b are weights
    assert info["inputs"][0]["shape"] == ["n", None, 3]
    assert info["inputs"][0]["dynamic_axes"] == {"0": "n", "1": None}
    assert info["outputs"][0]["type"] == "int64"
    assert info["parameters"] == 16 and info["initializers"] == 2
    assert info["operators"] == {"Add": 1, "Cast": 1, "MatMul": 1, "Relu": 1}
    assert info["opsets"] == {"ai.onnx": 13} and info["ir_version"] == 7
    assert info["producer"] is None and info["netspec"] is None
    assert info["metadata"] == {"author": "someone"}
    result = invoke("inspect", tmp_path / "plain.onnx")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "  x: float32 (n, ?, 3)  dynamic: axis 0 'n', axis 1" in lines
    assert "netspec:    no netspec metadata (not exported by `netspec export`)" in lines
    assert "  author: someone" in lines and "producer:   unknown" in lines


def test_inspect_errors(tmp_path: Path) -> None:
    def fails(path: Path, needle: str) -> None:
        result = invoke("inspect", path)
        assert result.exit_code == 2, result.output
        assert isinstance(result.exception, SystemExit)
        assert result.output.count("error:") == 1
        assert f"{path}: error: {needle}" in result.output, result.output

    fails(tmp_path / "none.onnx", "no such model file")
    fails(tmp_path, "not a file")
    (tmp_path / "random.onnx").write_bytes(np.random.default_rng(0).bytes(3000))
    fails(tmp_path / "random.onnx", "cannot read the model")
    (tmp_path / "empty.onnx").write_bytes(b"")
    fails(tmp_path / "empty.onnx", "not an ONNX model")
    with pytest.raises(InspectError, match=r"random\.onnx: error: cannot read the model"):
        inspect_model(tmp_path / "random.onnx")
