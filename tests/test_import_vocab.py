"""Vocabulary from other tools: `prelu` from Keras' PReLU (slopes per channel, per feature,
shared), torch's nn.PReLU through torch.onnx and an ONNX PRelu as another producer writes it,
with the source's counts and outputs (a slope per element refused; netspec's export imports
back); ONNX Pad variants. (Cropping, 1-D padding and upsampling, ELU: test_import_edges.py.)"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import yaml  # noqa: E402
from helpers import random_weights, runner  # noqa: E402
from import_parity import close, onnx_out, torch_out  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

import netspec  # noqa: E402
from netspec.backends.export.model import export_onnx  # noqa: E402
from netspec.backends.importing.onnx_import import read_onnx  # noqa: E402
from netspec.backends.importing.write import write_import  # noqa: E402
from netspec.cli import app  # noqa: E402
from netspec.errors import DataError  # noqa: E402
from netspec.runs import read_run  # noqa: E402
from netspec.summary import rows, totals  # noqa: E402

RNG = np.random.default_rng(0)


def test_keras_prelu_per_channel_per_feature_and_shared(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("Keras runs on another backend here")
    L = keras.layers
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, name="c")(inp)
    x = L.PReLU(shared_axes=[1, 2], name="per_channel")(x)
    x = L.Conv1D(3, 2, name="c1")(L.Reshape((16, 4), name="seq")(x))  # (15, 3)
    x = L.PReLU(shared_axes=[1], name="per_channel_1d")(x)
    x = L.PReLU(shared_axes=[1, 2], name="shared")(x)
    x = L.Dense(5, name="d")(L.Flatten(name="flat")(x))
    out = L.PReLU(name="per_feature")(x)
    model = keras.Model(inp, out)
    for w in model.weights:
        w.assign(RNG.uniform(-0.5, 0.5, w.shape).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model.save(tmp_path / "m.keras")
    from netspec.backends.importing.keras_import import read_keras

    imported = read_keras(tmp_path / "m.keras")
    kinds = {i["name"]: i for i in imported.spec["layers"]}
    assert kinds["per_channel"]["prelu"] is None and kinds["shared"]["prelu"] == {"shared": True}
    run = write_import(imported, tmp_path / "run")
    assert totals(rows(read_run(run).graph)).total_params == model.count_params()
    x = RNG.standard_normal((3, 6, 6, 3)).astype(np.float32)
    want = model(x, training=False).detach().cpu().numpy()
    close(torch_out(run, x.transpose(0, 3, 1, 2)), want)
    assert runner.invoke(app, ["export", str(run)]).exit_code == 0
    close(onnx_out(run / "model.onnx", x.transpose(0, 3, 1, 2)), want)


class PNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.PReLU(4)
        self.fc = nn.Linear(64, 3)
        self.shared = nn.PReLU()

    def forward(self, x):
        return self.shared(self.fc(torch.flatten(self.act(self.conv(x)), 1)))


def test_torch_prelu_through_onnx(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = PNet().eval()
    with torch.no_grad():
        model.act.weight.uniform_(-1, 1)
        model.shared.weight.fill_(-0.3)
    path = tmp_path / "p.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, 3, 6, 6),),
            str(path),
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )
    run = write_import(read_onnx(path), tmp_path / "run")
    graph = read_run(run).graph
    assert [n.kind for n in graph.nodes] == ["conv2d", "prelu", "flatten", "dense", "prelu"]
    assert totals(rows(graph)).total_params == sum(p.numel() for p in model.parameters())
    x = RNG.standard_normal((3, 3, 6, 6)).astype(np.float32)
    close(torch_out(run, x), onnx_out(path, x))


def _prelu_graph(tmp_path: Path, slope: np.ndarray) -> Path:
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["x", "s"], ["y"], name="act")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(slope.astype(np.float32), "s")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("shape", [(2, 1, 1), (1,), ()])
def test_onnx_prelu_slopes(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = _prelu_graph(tmp_path, RNG.uniform(-1, 1, shape))
    imported = read_onnx(path)
    run = write_import(imported, tmp_path / "run")
    x = RNG.standard_normal((2, 2, 3, 3)).astype(np.float32)
    close(torch_out(run, x), onnx_out(path, x))


def test_onnx_prelu_slope_per_element_is_refused(tmp_path: Path) -> None:
    path = _prelu_graph(tmp_path, RNG.uniform(-1, 1, (2, 3, 3)))
    with pytest.raises(DataError) as err:
        read_onnx(path)
    text = str(err.value)
    assert "PRelu (1 node: act)" in text
    assert "a slope of shape [2, 3, 3] for an input of [2, 3, 3]" in text


def test_round_trip_of_prelu(tmp_path: Path) -> None:
    graph = netspec.compile_text(
        "name: p\ninput: [3, 5, 5]\nlayers:\n  - prelu\n  - conv2d: {filters: 2, kernel: 3}\n"
        "  - prelu: {shared: true}\n  - flatten\n  - prelu\n"
    )
    weights = random_weights(graph)
    path = tmp_path / "p.onnx"
    onnx.save(export_onnx(graph, weights, fold_batchnorm=False), str(path))
    imported = read_onnx(path)
    back = netspec.compile_text(yaml.safe_dump(imported.spec, sort_keys=False))
    assert [(n.kind, n.layer.model_dump()) for n in back.nodes] == [
        (n.kind, n.layer.model_dump()) for n in graph.nodes
    ]
    assert set(imported.weights) == set(weights)
    for key, value in weights.items():
        assert imported.weights[key].tobytes() == value.tobytes(), key


@pytest.mark.parametrize("opset", [10, 13])
@pytest.mark.parametrize("pads", [[0, 0, 1, 2, 0, 0, 0, 1], [0, 0, 1, 1, 0, 0, 1, 1]])
def test_onnx_pad_of_height_and_width(tmp_path: Path, opset: int, pads: list[int]) -> None:
    """Pad as an attribute (opset < 11) and as an input, symmetric or not: a zeropad2d."""
    if opset < 11:
        nodes, inits = [helper.make_node("Pad", ["x"], ["y"], name="pad", pads=pads)], []
    else:
        nodes = [helper.make_node("Pad", ["x", "p"], ["y"], name="pad", mode="constant")]
        inits = [numpy_helper.from_array(np.array(pads, np.int64), "p")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset >= 11 else 5
    path = tmp_path / "pad.onnx"
    onnx.save(model, str(path))
    imported = read_onnx(path)
    assert [next(iter(i)) for i in imported.spec["layers"]] == ["zeropad2d"]
    run = write_import(imported, tmp_path / "run")
    x = RNG.standard_normal((2, 2, 3, 3)).astype(np.float32)
    close(torch_out(run, x), onnx_out(path, x))


@pytest.mark.parametrize(
    ("attrs", "value", "words"),
    [
        ({"mode": "reflect"}, None, "Pad (1 node: pad): reflect padding (netspec pads with zeros)"),
        ({"mode": "edge"}, None, "edge padding"),
        ({}, 1.5, "a pad value other than zero"),
    ],
)
def test_onnx_pad_refusals(tmp_path: Path, attrs: dict, value, words: str) -> None:
    ins = ["x", "p"] + (["v"] if value is not None else [])
    inits = [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "p")]
    if value is not None:
        inits.append(numpy_helper.from_array(np.array(value, np.float32), "v"))
    graph = helper.make_graph(
        [helper.make_node("Pad", ins, ["y"], name="pad", **attrs)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "pad.onnx"))
    with pytest.raises(DataError) as err:
        read_onnx(tmp_path / "pad.onnx")
    assert words in err.value.format()
