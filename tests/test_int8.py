"""int8 exports that every runtime runs: the form (standard operators at opset 19, which the onnx
reference evaluator runs), the per-runtime table and its gate, and the real runtimes installed
here (OpenCV, onnxruntime-node and -web), each skipped with its reason when absent."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from helpers import fails, invoke, random_weights  # noqa: E402

import netspec  # noqa: E402
from netspec.backends.export import int8_check, runtimes  # noqa: E402
from netspec.backends.export.int8_check import (  # noqa: E402
    FAILED,
    MISSING,
    NOT_COUNTED,
    RAN,
    check_runtimes,
)
from netspec.backends.export.model import export_onnx  # noqa: E402
from netspec.backends.export.quantize import INT8_OPSET, _quantize, matmul_form  # noqa: E402
from netspec.backends.export.runtimes import Runtime, RuntimeFailed, Unavailable  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
JS_MODULES = REPO / "docs" / "js" / "node_modules"
TINY = """
name: tiny
input: [1, 8, 8]
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same, activation: relu}
  - maxpool2d: {size: 2}
  - flatten
  - dense: {units: 8, activation: relu}
  - dense: {units: 3, activation: softmax}
"""


@pytest.fixture(scope="module")
def tiny() -> tuple[object, object, np.ndarray]:
    """A tiny convnet with random weights, its opset-19 float32 export and its int8 model."""
    graph = netspec.compile_text(TINY, "tiny.yaml")
    model = export_onnx(graph, random_weights(graph), opset=INT8_OPSET)
    x = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32)
    return model, _quantize(model, x), x


def test_dense_layers_become_matmul_and_add_computing_the_same(tiny) -> None:
    model, _, x = tiny
    rewritten = matmul_form(model)
    ops = [n.op_type for n in rewritten.graph.node]
    assert "Gemm" not in ops and ops.count("MatMul") == 2 and ops.count("Add") == 2
    run = [
        ort.InferenceSession(m.SerializeToString()).run(None, {"input": x})[0]
        for m in (model, rewritten)
    ]
    np.testing.assert_allclose(run[1], run[0], atol=1e-6)


def test_the_int8_form_is_standard_onnx_that_the_reference_evaluator_runs(tiny) -> None:
    from onnx.reference import ReferenceEvaluator

    model, quantized, x = tiny
    ops = {n.op_type for n in quantized.graph.node}
    assert {"QLinearConv", "QLinearMatMul", "QuantizeLinear", "DequantizeLinear"} <= ops
    assert all(n.domain in ("", "ai.onnx") for n in quantized.graph.node)  # no com.microsoft
    assert quantized.opset_import[0].version == INT8_OPSET
    got = ReferenceEvaluator(quantized).run(None, {"input": x})[0]
    expected = ort.InferenceSession(quantized.SerializeToString()).run(None, {"input": x})[0]
    # The same integer arithmetic: onnxruntime's kernels and the evaluator's numpy agree to
    # float rounding (7-bit weights: no 16-bit saturation in onnxruntime's x86 kernels).
    np.testing.assert_allclose(got, expected, atol=1e-5)
    floats = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    assert np.abs(got - floats).max() < 0.1  # int8 rounding, not another model


CONCAT_POOL = """
name: concat_pool
input: [3, 16, 16]
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same, activation: relu}
    name: a
  - conv2d: {filters: 4, kernel: 3, padding: same, activation: relu}
    inputs: [input]
    name: b
  - concat:
    inputs: [a, b]
  - maxpool2d: {size: 2}
  - flatten
  - dense: {units: 4, activation: softmax}
"""


def test_a_max_pool_of_float_values_runs_on_int8_values() -> None:
    """A concat stays float32 (its int8 form is onnxruntime's own), so the MaxPool after it
    reads float values, which OpenCV's int8 pooling refuses: it gets a QuantizeLinear and a
    DequantizeLinear of its input's calibrated range, and every runtime runs it."""
    from onnx.reference import ReferenceEvaluator

    graph = netspec.compile_text(CONCAT_POOL, "concat_pool.yaml")
    model = export_onnx(graph, random_weights(graph), opset=INT8_OPSET)
    x = np.random.default_rng(0).standard_normal((32, 3, 16, 16)).astype(np.float32)
    quantized = _quantize(model, x)
    ops = [n.op_type for n in quantized.graph.node]
    at = ops.index("MaxPool")
    assert ops[at - 2 : at + 2] == ["Concat", "QuantizeLinear", "MaxPool", "DequantizeLinear"]
    inferred = onnx.shape_inference.infer_shapes(quantized)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    pool = quantized.graph.node[at]
    assert types[pool.input[0]] == types[pool.output[0]] == onnx.TensorProto.UINT8
    expected = ort.InferenceSession(quantized.SerializeToString()).run(None, {"input": x})[0]
    floats = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    assert np.abs(expected - floats).max() < 0.1
    got = ReferenceEvaluator(quantized).run(None, {"input": x[:4]})[0]
    np.testing.assert_allclose(got, expected[:4], atol=1e-5)
    try:
        import cv2
    except ImportError:
        pytest.skip("opencv-python is not installed")
    net = cv2.dnn.readNetFromONNX(np.frombuffer(quantized.SerializeToString(), np.uint8))
    net.setInput(x)
    np.testing.assert_allclose(np.asarray(net.forward()), expected, atol=1e-5)


SEQUENCE = """
name: seq
input: [7, 8]
layers:
  - gru: {units: 6, return_sequences: true}
  - seq_pool: {op: max}
  - dense: {units: 3, activation: softmax}
"""


def test_a_sequence_network_exports_and_quantizes_at_the_int8_opset() -> None:
    """ReduceMax/Min/Mean take their axes as an input from opset 18 (an attribute before): the
    exporter writes either form, so int8's opset 19 serves sequence networks too."""
    pytest.importorskip("torch")
    from netspec.backends.export.parity import check_parity, random_inputs

    graph = netspec.compile_text(SEQUENCE, "seq.yaml")
    weights = random_weights(graph)
    for opset in (13, INT8_OPSET):
        model = export_onnx(graph, weights, opset=opset)
        (pool,) = [n for n in model.graph.node if n.op_type == "ReduceMax"]
        assert len(pool.input) == (2 if opset >= 18 else 1)
        assert max(check_parity(graph, weights, model, random_inputs(graph, None)).values()) < 1e-5
    x = np.random.default_rng(0).standard_normal((32, 7, 8)).astype(np.float32)
    quantized = _quantize(model, x)
    assert "QLinearMatMul" in {n.op_type for n in quantized.graph.node}
    floats = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    got = ort.InferenceSession(quantized.SerializeToString()).run(None, {"input": x})[0]
    assert np.abs(got - floats).max() < 0.1


# --- the table and its gate, with runtimes of known behaviour ------------------------------------


def _fake(name: str, behave: str) -> Runtime:
    """A runtime that runs models in onnxruntime, then behaves as told on the int8 model."""

    def run(model: bytes, x: np.ndarray) -> tuple[np.ndarray, str | None]:
        out, _ = runtimes.RUNTIMES[0].run(model, x)
        int8 = b"QuantizeLinear" in model
        if behave == "missing":
            raise Unavailable(f"{name} is not installed")
        if behave == "broken" or (behave == "broken8" and int8):
            raise RuntimeFailed("no kernel for QLinearConv")
        if behave == "flip" and int8:
            out = out[:, ::-1]  # other top-1 predictions for most samples
        return out, "9.9"

    return Runtime(name, run)


def run_check(tiny, **options):
    """check_runtimes on the tiny float32 and int8 models and their samples (softmax head, the
    test split, a 1-point gate); `options`: the runtimes and which are gated."""
    model, quantized, x = tiny
    return check_runtimes(
        model.SerializeToString(),
        quantized.SerializeToString(),
        x,
        head="softmax",
        split="test",
        max_drop=1.0,
        **options,
    )


def test_the_table_reports_every_runtime_and_gates_those_meant_to_run_it(tiny) -> None:
    fakes = (
        runtimes.RUNTIMES[0],
        _fake("same", "ok"),
        _fake("absent", "missing"),
        _fake("flipper", "flip"),
        _fake("no-int8", "broken8"),
        _fake("no-model", "broken"),
    )
    check = run_check(tiny, runtimes=fakes)
    rows = {r.runtime: r for r in check.rows}
    assert [r.status for r in check.rows] == [RAN, RAN, MISSING, RAN, FAILED, NOT_COUNTED]
    ort_row = rows["onnxruntime"]
    assert ort_row.samples == 64 and ort_row.version == ort.__version__
    assert rows["same"].agreement == ort_row.agreement
    assert rows["same"].max_abs_diff == pytest.approx(ort_row.max_abs_diff)
    assert rows["flipper"].agreement < ort_row.agreement - 1 and not rows["flipper"].passed
    assert "cannot run the float32 model either" in rows["no-model"].note
    assert {r.runtime for r in check.failed} == {"flipper", "no-int8"}
    text = "\n".join(check.lines())
    assert "on 64 test samples" in text and "within 1 point of onnxruntime's" in text
    assert "absent" in text and "not installed: absent is not installed" in text
    assert "FAILED" in text and "no kernel for QLinearConv" in text
    # Named runtimes only are gated; the others are reported.
    named = run_check(tiny, gated=("onnxruntime", "same"), runtimes=fakes)
    assert not named.failed
    assert "beyond the gate  (not gated)" in "\n".join(named.lines())
    # A runtime named as meant to run it, but not installed, cannot be checked: it fails.
    absent = run_check(tiny, gated=("absent",), runtimes=fakes[:3])
    assert [r.runtime for r in absent.failed] == ["absent"]
    assert json.loads(json.dumps(absent.to_dict()))["rows"][2]["status"] == MISSING


def test_a_slow_runtime_runs_the_first_samples_that_fit_its_budget(tiny, monkeypatch) -> None:
    monkeypatch.setattr(int8_check, "SLOW_SECONDS", 0.0)  # one sample, whatever its pace
    slow = Runtime("slow", runtimes.RUNTIMES[0].run, slow=True)
    check = run_check(tiny, runtimes=(runtimes.RUNTIMES[0], slow))
    assert [r.samples for r in check.rows] == [64, 1]
    assert "(on the first 1)" in check.lines()[2]


# --- the CLI on a trained run --------------------------------------------------------------------


def test_int8_options_refused_where_they_cannot_apply(quickstart_run: Path, tmp_path: Path) -> None:
    out = ["-o", tmp_path / "m.onnx"]
    fails(invoke("export", quickstart_run, *out, "--int8", "--opset", "13"), "opset 19 or later")
    fails(invoke("export", quickstart_run, *out, "--int8-runtime", "opencv"), "--int8 exports only")
    fails(
        invoke("export", quickstart_run, *out, "--int8", "--int8-runtime", "tensorrt"),
        "--int8-runtime tensorrt: expected one of onnxruntime, onnx-reference, opencv",
    )
    assert not (tmp_path / "m.onnx").exists()


def test_a_runtime_that_disagrees_fails_the_export_with_the_table(
    quickstart_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = quickstart_copy
    liar = _fake("opencv", "flip")  # as if OpenCV computed other predictions
    monkeypatch.setattr(runtimes, "RUNTIMES", (runtimes.RUNTIMES[0], liar))
    out = fails(invoke("export", run, "--int8"), "fails the runtime check in opencv")
    assert "nothing written" in out and "int8 in every runtime here" in out
    assert "onnxruntime" in out and "FAILED" in out
    assert not (run / "model.onnx").exists()
    # Meant for onnxruntime alone: OpenCV's row is reported, not gated, and the model written.
    done = invoke("export", run, "--int8", "--int8-runtime", "onnxruntime", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    rows = {r["runtime"]: r for r in report["int8_check"]["runtimes"]["rows"]}
    assert rows["opencv"]["gated"] is False and rows["opencv"]["passed"] is False
    assert rows["onnxruntime"]["passed"] is True
    card = json.loads((run / "model.onnx.json").read_text())["int8_check"]
    assert card["runtimes"]["rows"] == report["int8_check"]["runtimes"]["rows"]
    assert card["accuracy_float32"] - card["accuracy_int8"] <= card["max_drop"]
    # netspec inspect shows it in one line.
    shown = invoke("inspect", run / "model.onnx")
    assert shown.exit_code == 0, shown.output
    assert re.search(
        r"int8_check: test accuracy [\d.]+% -> [\d.]+%; top-1 agreement: onnxruntime [\d.]+%, "
        r"opencv [\d.]+%",
        shown.output,
    ), shown.output


# --- the real runtimes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_everywhere(tmp_path_factory: pytest.TempPathFactory, quickstart_run: Path) -> dict:
    """The trained quickstart's int8 export, checked in every runtime installed here (node's
    from docs/js/node_modules): its JSON report."""
    out = tmp_path_factory.mktemp("int8-everywhere") / "int8.onnx"
    with pytest.MonkeyPatch.context() as mp:
        if JS_MODULES.is_dir():
            mp.setenv("NODE_PATH", str(JS_MODULES))
        result = invoke("export", quickstart_run, "--int8", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.slow  # the trained quickstart exported to int8 and run in every runtime: ~1.6 s
@pytest.mark.parametrize("name", runtimes.RUNTIME_NAMES)
def test_every_installed_runtime_runs_the_int8_model_as_onnxruntime_does(
    exported_everywhere: dict, name: str
) -> None:
    rows = {r["runtime"]: r for r in exported_everywhere["int8_check"]["runtimes"]["rows"]}
    row = rows[name]
    if row["status"] == MISSING:
        pytest.skip(f"{name}: {row['note']}")
    assert row["status"] == RAN and row["passed"] and row["gated"], row
    reference = rows["onnxruntime"]
    # The same integer model: the same predictions as onnxruntime's int8 run, and within
    # float rounding of its distance from the float32 model.
    assert row["agreement"] == reference["agreement"]
    assert row["max_abs_diff"] == pytest.approx(reference["max_abs_diff"], abs=1e-3)
    assert row["max_abs_diff"] < 0.1


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("module", ["onnxruntime-node", "netspec-no-such-runtime"])
def test_a_javascript_runtime_runs_in_one_node_process(
    module: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One node process per run: it runs the model, or exits with its own status when node
    cannot load the module (Unavailable: the row says not installed). Before, every run started
    a probe first, another node process (~60 ms; two JS runtimes in every int8 export)."""
    import subprocess

    from onnx import TensorProto, helper

    if module == "onnxruntime-node" and not (JS_MODULES / module).is_dir():
        pytest.skip("onnxruntime-node is not installed (cd docs/js && npm install)")
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [value("x", TensorProto.FLOAT, [None, 2])],
        [value("y", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    starts: list[list[str]] = []
    real = subprocess.run

    def counting(args, *a, **k):
        starts.append(args)
        return real(args, *a, **k)

    monkeypatch.setattr(subprocess, "run", counting)
    monkeypatch.chdir(tmp_path)  # no node_modules here: only NODE_PATH's
    monkeypatch.setenv("NODE_PATH", str(JS_MODULES))
    run = runtimes._javascript(module)
    x = np.array([[-1.0, 2.0]], np.float32)
    if module == "onnxruntime-node":
        out, version = run(model.SerializeToString(), x)
        np.testing.assert_array_equal(out, [[0.0, 2.0]])
        assert version
    else:
        with pytest.raises(Unavailable, match=f"node cannot load {module}"):
            run(model.SerializeToString(), x)
    assert len(starts) == 1
