"""ONNX files from producers the other import tests do not use: skl2onnx's MLPClassifier (a
label output beside the probabilities, ZipMap or not) imports with parity and its class names;
the models shipped in onnxruntime's wheel import or are refused with everything they lack."""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from helpers import SHARED_DATA, invoke, needs_data  # noqa: E402

from netspec.backends.importing.onnx_import import read_onnx  # noqa: E402
from netspec.backends.importing.write import write_import  # noqa: E402
from netspec.backends.weights import load_module  # noqa: E402
from netspec.errors import DataError  # noqa: E402
from netspec.runs import read_run  # noqa: E402

DATASETS = Path(os.path.dirname(ort.__file__)) / "datasets"


def _iris() -> tuple[np.ndarray, np.ndarray]:
    with (SHARED_DATA / "iris" / "iris.csv").open() as f:
        rows = list(csv.DictReader(f))
    x = np.array([[float(r[k]) for k in list(r)[:4]] for r in rows], np.float32)
    return x, np.array([r["species"] for r in rows])


def _torch(run: Path, x: np.ndarray) -> np.ndarray:
    import torch

    loaded = read_run(run)
    with torch.no_grad():
        return load_module(loaded.graph, loaded.weights)(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def iris_mlp() -> tuple[np.ndarray, Any]:
    """Iris and a scikit-learn MLP fitted on it (seeded), once for both ZipMap flavours."""
    pytest.importorskip("skl2onnx")
    from sklearn.neural_network import MLPClassifier

    x, y = _iris()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=500, random_state=0).fit(x, y)
    return x, clf


@needs_data
@pytest.mark.parametrize("zipmap", [True, False])
def test_skl2onnx_mlp_classifier_imports_with_its_probabilities_and_classes(
    tmp_path: Path, zipmap: bool, iris_mlp: tuple[np.ndarray, Any]
) -> None:
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx

    x, clf = iris_mlp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = to_onnx(clf, x[:1], options={"zipmap": zipmap})
    path = tmp_path / "mlp.onnx"
    path.write_bytes(model.SerializeToString())
    imported = read_onnx(path)
    assert imported.producer.startswith("onnx: skl2onnx")
    assert imported.classes == ("setosa", "versicolor", "virginica")
    assert [next(iter(item)) for item in imported.spec["layers"]] == ["dense", "dense"]
    run = write_import(imported, tmp_path / "run")
    assert read_run(run).meta.task == "multiclass"
    want = clf.predict_proba(x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = session.run(None, {session.get_inputs()[0].name: x})[1]
    if zipmap:  # a list of {class: probability}
        probs = np.array([[row[c] for c in clf.classes_] for row in probs])
    np.testing.assert_allclose(probs, want, atol=1e-5)
    np.testing.assert_allclose(_torch(run, x), want, atol=1e-4)
    # the exported run answers with the class names, as the source model's label output did
    assert invoke("export", run).exit_code == 0
    from netspec.predictor import Predictor

    answers = Predictor(run / "model.onnx").predict(x[:20])
    assert [a["predictions"][0]["label"] for a in answers] == list(clf.predict(x[:20]))


def test_onnxruntime_sigmoid_imports_with_parity(tmp_path: Path) -> None:
    path = DATASETS / "sigmoid.onnx"
    if not path.is_file():
        pytest.skip("onnxruntime ships no sigmoid.onnx here")
    imported = read_onnx(path)  # a fixed batch of 3: the batch becomes free
    assert [next(iter(i)) for i in imported.spec["layers"]] == ["sigmoid"]
    assert imported.spec["input"] == [4, 5]
    run = write_import(imported, tmp_path / "run")
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(_torch(run, x), want, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        (
            "logreg_iris.onnx",
            [
                "cannot import ai.onnx.ml.LinearClassifier (1 node: LinearClassifier)",
                "cannot import ai.onnx.ml.Normalizer (1 node: Normalizer)",
                "cannot import ai.onnx.ml.ZipMap (1 node: ZipMap)",
                "the model has 2 outputs",
            ],
        ),
        ("mul_1.onnx", ["Mul (1 node: mul_1): a product with a constant that is not one factor"]),
    ],
)
def test_onnxruntime_models_netspec_cannot_express_are_refused_whole(
    name: str, words: list[str]
) -> None:
    path = DATASETS / name
    if not path.is_file():
        pytest.skip(f"onnxruntime ships no {name} here")
    with pytest.raises(DataError) as err:
        read_onnx(path)
    text = err.value.format()
    for w in words:
        assert w in text, text


def test_several_onnx_inputs_or_outputs_are_refused_with_one_message(tmp_path: Path) -> None:
    """Several inputs, or several outputs that are not a classifier's label and probabilities:
    one located message, exit 2, nothing written."""
    import onnx
    from onnx import TensorProto, helper

    def save(name: str, inputs: list[str], outputs: list[str], nodes) -> Path:
        graph = helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info(i, TensorProto.FLOAT, ["N", 4]) for i in inputs],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.save(model, str(tmp_path / name))
        return tmp_path / name

    two_in = save("in.onnx", ["a", "b"], ["y"], [helper.make_node("Add", ["a", "b"], ["y"])])
    relu, sig = helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["x"], ["s"])
    two_out = save("out.onnx", ["x"], ["r", "s"], [relu, sig])
    for path, words in (
        (two_in, "the model has 2 inputs (a, b)"),
        (two_out, "the model has 2 outputs; a netspec network has one"),
    ):
        result = invoke("import", path, "-o", tmp_path / "never")
        assert result.exit_code == 2 and words in result.output, result.output
        assert result.output.startswith(str(path))
        assert result.output.count("error:") == 1
        assert not (tmp_path / "never").exists()
