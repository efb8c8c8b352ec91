"""The edge kinds from other tools: Keras' Cropping1D/2D (trim1d, trim2d), ZeroPadding1D
(zeropad1d), UpSampling1D (upsample1d) and ELU (elu, also a layer's `activation="elu"`), and
their torch.onnx forms (Slice, Pad, Resize, Elu), import with the source's counts and outputs;
netspec's own export of them imports back."""

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

from helpers import runner  # noqa: E402
from import_parity import close, onnx_out, torch_out  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

from netspec.backends.importing.onnx_import import read_onnx  # noqa: E402
from netspec.backends.importing.write import write_import  # noqa: E402
from netspec.cli import app  # noqa: E402
from netspec.runs import read_run  # noqa: E402
from netspec.summary import rows, totals  # noqa: E402

RNG = np.random.default_rng(0)


def _keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("Keras runs on another backend here")
    return keras


def _save(model, path: Path) -> None:
    for w in model.weights:
        w.assign(RNG.uniform(-0.5, 0.5, w.shape).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model.save(path)


def _check_keras(model, path: Path, tmp_path: Path, x: np.ndarray, perm: tuple[int, ...]) -> dict:
    """Imported with Keras' count and outputs, in torch and in netspec's export; the spec's items
    by name."""
    from netspec.backends.importing.keras_import import read_keras

    imported = read_keras(path)
    run = write_import(imported, tmp_path / "run")
    assert totals(rows(read_run(run).graph)).total_params == model.count_params()
    want = model(x, training=False).detach().cpu().numpy()
    close(torch_out(run, x.transpose(perm)), want)
    assert runner.invoke(app, ["export", str(run)]).exit_code == 0
    close(onnx_out(run / "model.onnx", x.transpose(perm)), want)
    return {i["name"]: i for i in imported.spec["layers"]}


def test_keras_1d_trim_pad_upsample_and_elu(tmp_path: Path) -> None:
    keras = _keras()
    L = keras.layers
    inp = keras.Input((12, 3))
    x = L.Cropping1D((2, 1), name="crop")(inp)  # 9 steps
    x = L.ZeroPadding1D((1, 3), name="pad")(x)  # 13
    x = L.UpSampling1D(3, name="up")(x)  # 39
    x = L.Conv1D(4, 3, activation="elu", name="conv")(x)  # 37
    x = L.ELU(alpha=0.5, name="elu")(x)
    x = L.Cropping1D(1, name="crop_b")(x)  # 35
    out = L.Dense(2, name="head")(L.Flatten(name="flat")(x))
    model = keras.Model(inp, out)
    _save(model, tmp_path / "m.keras")
    x = (RNG.standard_normal((3, 12, 3)) * 2).astype(np.float32)
    items = _check_keras(model, tmp_path / "m.keras", tmp_path, x, (0, 1, 2))
    assert items["crop"]["trim1d"] == {"trim": [2, 1]}
    assert items["pad"]["zeropad1d"] == {"padding": [1, 3]}
    assert items["up"]["upsample1d"] == {"scale": 3}
    assert items["conv"]["conv1d"]["activation"] == "elu"
    assert items["elu"]["elu"] == {"alpha": 0.5}
    assert items["crop_b"]["trim1d"] == {"trim": 1}


def test_keras_2d_trim_and_elu_from_h5(tmp_path: Path) -> None:
    keras = _keras()
    L = keras.layers
    model = keras.Sequential(
        [
            keras.Input((9, 10, 2)),
            L.Cropping2D(((1, 2), (0, 3)), name="crop"),  # 6 x 7
            L.Conv2D(3, 3, padding="same", activation="elu", name="conv"),
            L.ELU(name="elu"),
            L.Cropping2D((1, 2), name="crop_b"),  # 4 x 3
            L.Cropping2D(1, name="crop_c"),  # 2 x 1
            L.Flatten(name="flat"),
            L.Dense(2, name="head"),
        ]
    )
    _save(model, tmp_path / "m.h5")
    x = (RNG.standard_normal((2, 9, 10, 2)) * 2).astype(np.float32)
    items = _check_keras(model, tmp_path / "m.h5", tmp_path, x, (0, 3, 1, 2))
    assert items["crop"]["trim2d"] == {"trim": [1, 2, 0, 3]}
    assert items["crop_b"]["trim2d"] == {"trim": [1, 1, 2, 2]}
    assert items["crop_c"]["trim2d"] == {"trim": 1}
    assert items["elu"]["elu"] is None


class Edges1D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ConstantPad1d((1, 3), 0.0)
        self.up = nn.Upsample(scale_factor=3, mode="nearest")
        self.conv = nn.Conv1d(3, 4, 3)
        self.act = nn.ELU()
        self.elu = nn.ELU(alpha=0.5)
        self.fc = nn.Linear(4 * 33, 2)

    def forward(self, x):
        x = x[:, :, 2:-1]  # 9 steps
        x = self.up(self.pad(x))  # 39
        x = self.elu(self.act(self.conv(x)))[:, :, 1:-3]  # 37, 33
        return self.fc(torch.flatten(x, 1))


class Edges2D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.act = nn.ELU(alpha=1.5)
        self.fc = nn.Linear(3 * 6 * 4, 2)

    def forward(self, x):
        x = self.act(self.conv(x[:, :, 1:-2, 3:]))  # 9 x 10 to 6 x 7
        return self.fc(torch.flatten(x[:, :, :, 1:5], 1))  # 6 x 4


@pytest.mark.parametrize(
    ("model", "shape", "kinds"),
    [
        (
            Edges1D,
            (3, 12),
            ["trim1d", "zeropad1d", "upsample1d", "conv1d", "elu", "trim1d", "flatten", "dense"],
        ),
        (Edges2D, (2, 9, 10), ["trim2d", "conv2d", "elu", "trim2d", "flatten", "dense"]),
    ],
)
def test_torch_edges_through_onnx(tmp_path: Path, model, shape, kinds) -> None:
    """torch.onnx's Slice (negative and open ends), Pad, Resize and Elu: the kinds, the counts
    and the outputs; the default ELU fused into the convolution before it."""
    torch.manual_seed(0)
    net = model().eval()
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.randn(2, *shape),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )
    run = write_import(read_onnx(path), tmp_path / "run")
    graph = read_run(run).graph
    assert [n.kind for n in graph.nodes] == kinds
    assert totals(rows(graph)).total_params == sum(p.numel() for p in net.parameters())
    x = (RNG.standard_normal((3, *shape)) * 2).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    close(torch_out(run, x), want)
    assert runner.invoke(app, ["export", str(run)]).exit_code == 0
    close(onnx_out(run / "model.onnx", x), want)
    back = read_onnx(run / "model.onnx")  # netspec's own export imports back
    assert [next(k for k in i if k not in ("name", "inputs")) for i in back.spec["layers"]] == kinds


def _one_node(tmp_path: Path, op: str, inputs: dict[str, np.ndarray], **attrs) -> Path:
    """x [N, 2, 8] through one node of `op` (its other inputs constants), as other producers
    write it."""
    names = ["x", *inputs]
    graph = helper.make_graph(
        [helper.make_node(op, names, ["y"], name="n", **attrs)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inputs.items() if v.size],
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_written_graphs_of_the_edge_ops(tmp_path: Path) -> None:
    """A Pad of the length and a Slice with a clamped end import; a linear 1-D Resize and a
    slice that leaves nothing are refused with the reason."""
    i64 = np.int64
    path = _one_node(tmp_path, "Pad", {"p": np.array([0, 0, 2, 0, 0, 1], i64)})
    assert read_onnx(path).spec["layers"][0]["zeropad1d"] == {"padding": [2, 1]}
    ends = np.array([2**62], i64)
    path = _one_node(
        tmp_path, "Slice", {"s": np.array([3], i64), "e": ends, "a": np.array([2], i64)}
    )
    run = write_import(read_onnx(path), tmp_path / "run")
    x = RNG.standard_normal((2, 2, 8)).astype(np.float32)
    close(torch_out(run, x), onnx_out(path, x))
    scales = np.array([1, 1, 2], np.float32)
    path = _one_node(tmp_path, "Resize", {"r": np.zeros(0, np.float32), "s": scales}, mode="linear")
    result = runner.invoke(app, ["import", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "mode linear" in result.output, result.output
    cut = {"s": np.array([5], i64), "e": np.array([-3], i64), "a": np.array([-1], i64)}
    path = _one_node(tmp_path, "Slice", cut)
    result = runner.invoke(app, ["import", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "leaves nothing" in result.output, result.output
