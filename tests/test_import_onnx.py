"""ONNX import (`read_onnx`): netspec's own exports come back as the same spec and bit-identical
weights; torch exports and graphs written the way other producers write them import with
onnxruntime's outputs and the initializers' parameter count; what cannot be imported is
refused whole, one problem per op type; bad files get one located message."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import yaml  # noqa: E402
from helpers import random_weights  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import netspec  # noqa: E402
from netspec.backends.export.model import export_onnx  # noqa: E402
from netspec.backends.importing.onnx_import import read_onnx  # noqa: E402
from netspec.backends.weights import load_module  # noqa: E402
from netspec.errors import DataError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def compiled(imported) -> netspec.Graph:
    return netspec.compile_text(yaml.safe_dump(imported.spec, sort_keys=False))


def check_parity(path: Path, imported, folded: int | None = 0) -> None:
    """netspec's torch lowering with the imported weights equals onnxruntime on the source
    file (atol 1e-4 x output scale), and the parameters are the initializers' elements less
    `folded` (constants the import combined, like an LSTM's two biases; None: not counted)."""
    graph = compiled(imported)
    module = load_module(graph, imported.weights)
    x = RNG.standard_normal((3, *graph.input_shape)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= 1e-4 * scale
    if folded is None:
        return
    model = onnx.load(str(path))
    elements = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert sum(n.params for n in graph.nodes) == elements - folded


def save(tmp_path: Path, nodes, inits, shape, opset: int = 13, name: str = "g.onnx") -> Path:
    """A model of `nodes` from input x [N, *shape] to output y, as another producer writes it."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def f32(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) / np.sqrt(max(1, np.prod(shape[1:])))).astype(np.float32)


# --- round trips: netspec's export imported back -----------------------------------------------

SPECS = ["mnist_cnn", "lenet5", "cifar_cnn", "resnet_cifar", "unet", "mnist_lstm", "ucr_fcn"]

# One small network per group of layer kinds the export writes and the import must read back.
SMALL = {
    "conv1d_pools": """
name: c1
input: [3, 20]
layers:
  - conv1d: {filters: 4, kernel: 3, stride: 2, padding: same, dilation: 1, activation: tanh}
  - maxpool1d: {size: 2}
  - conv1d: {filters: 6, kernel: 3, padding: 1, dilation: 2}
  - leaky_relu: {negative_slope: 0.2}
  - avgpool1d: {size: 3, stride: 1, padding: same}
  - global_maxpool1d
  - dense: {units: 3, activation: sigmoid}
""",
    "decoder": """
name: dec
input: [4, 6, 6]
layers:
  - conv2d: {filters: 8, kernel: 3, padding: same, groups: 2, activation: gelu}
  - conv_transpose2d: {filters: 4, kernel: 3, stride: 2, padding: same, activation: silu}
  - conv_transpose2d: {filters: 4, kernel: 3, stride: 2, padding: 1, output_padding: 1}
  - upsample2d: {scale: 2}
  - upsample2d: {scale: 2, mode: bilinear}
  - zeropad2d: {padding: [1, 0, 2, 1]}
  - conv2d: {filters: 2, kernel: 1, padding: 1, activation: relu6}
  - softmax
""",
    "branches": """
name: br
input: [4, 8, 8]
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same, bias: false}
    name: a
  - global_avgpool2d: {keepdims: true}
  - conv2d: {filters: 4, kernel: 1, activation: sigmoid}
    name: gate
  - multiply:
    inputs: [a, gate]
    name: scaled
  - maxpool2d: {size: 3, stride: 2, padding: same}
    inputs: [input]
    name: pooled
  - avgpool2d: {size: 2}
    inputs: [scaled]
  - concat:
    inputs: [avgpool2d, pooled]
  - batchnorm: {eps: 0.0001}
  - flatten
  - dropout: {rate: 0.3}
  - dense: {units: 5, bias: false, activation: softmax}
""",
    "sequences": """
name: seq
input: [12, 6]
layers:
  - lstm: {units: 5, return_sequences: true, bidirectional: true}
  - gru: {units: 4, return_sequences: true}
  - simple_rnn: {units: 3, return_sequences: true}
  - layernorm: {eps: 0.0001}
  - dense: {units: 4, activation: relu}
  - permute: {dims: [1, 0]}
  - reshape: {shape: [48]}
  - dense: {units: 2}
""",
    "bidirectional_last": """
name: bi
input: [7, 3]
layers:
  - gru: {units: 4, bidirectional: true}
  - dense: {units: 2, activation: softmax}
""",
}


def spec_text(name: str) -> str:
    if name in SMALL:
        return SMALL[name]
    text = (REPO / "specs" / f"{name}.yaml").read_text()
    if name == "unet":  # the smallest tile at which every skip crop works out
        text = re.sub(r"^input: \[[0-9, ]+\]", "input: [1, 188, 188]", text, flags=re.M)
    return text


def layer_view(graph: netspec.Graph) -> list[tuple]:
    """Each computing layer with its inputs and references, names as the import spells them."""

    def nm(name: str) -> str:
        return name.replace("/", ".")

    out = []
    for n in graph.nodes:
        if n.kind == "dropout":
            continue
        args = n.layer.model_dump()
        args = {k: nm(v) if k in n.layer.ref_fields else v for k, v in args.items()}
        out.append((n.kind, args, [nm(i) for i in n.inputs], nm(n.name)))
    return out


@pytest.mark.parametrize("name", SPECS + list(SMALL))
def test_round_trip_gives_the_same_spec_and_bit_identical_weights(tmp_path, name):
    graph = netspec.compile_text(spec_text(name))
    weights = random_weights(graph)
    path = tmp_path / "model.onnx"
    onnx.save(export_onnx(graph, weights, fold_batchnorm=False), str(path))
    imported = read_onnx(path)
    back = compiled(imported)
    ours = layer_view(graph)
    dropouts = {n.name: n.inputs[0] for n in graph.nodes if n.kind == "dropout"}
    for _kind, _args, inputs, _name in ours:  # a dropout's reader reads what the dropout read
        inputs[:] = [dropouts.get(i.replace(".", "/"), i).replace("/", ".") for i in inputs]
    assert layer_view(back) == ours
    assert imported.producer.startswith("onnx: netspec")
    kept = {k.replace("/", "."): v for k, v in weights.items()}
    assert set(imported.weights) == set(kept)
    for key, value in kept.items():
        assert imported.weights[key].dtype == np.float32
        assert imported.weights[key].tobytes() == value.tobytes(), key
    # netspec's export adds index constants (gate orders, shapes): only the outputs compared
    check_parity(path, imported, folded=None)


def test_round_trip_of_a_folded_export_computes_the_same(tmp_path):
    """With batchnorms folded (the default export), each is part of its convolution's weights."""
    graph = netspec.compile_text(spec_text("resnet_cifar"))
    path = tmp_path / "model.onnx"
    onnx.save(export_onnx(graph, random_weights(graph)), str(path))
    imported = read_onnx(path)
    kinds = [n.kind for n in compiled(imported).nodes]
    assert "batchnorm" not in kinds and kinds.count("conv2d") == 21
    check_parity(path, imported, folded=None)


# --- torch exports -----------------------------------------------------------------------------

nn = torch.nn


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 5),
        )

    def forward(self, x):
        return self.features(x)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(72, 16), nn.Linear(16, 3)

    def forward(self, x):
        return torch.softmax(self.fc2(torch.relu(self.fc1(x.view(x.size(0), -1)))), dim=1)


class LSTMClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm, self.fc = nn.LSTM(5, 7, batch_first=True), nn.Linear(7, 3)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])


TORCH = {
    # name: (module, per-sample input, kinds expected, initializer elements the import combines)
    "convnet": (
        ConvNet,
        (3, 16, 16),
        ["conv2d", "maxpool2d", "conv2d", "global_avgpool2d", "dense"],
        0,
    ),
    "residual": (Residual, (4, 8, 8), ["conv2d", "conv2d", "add", "relu"], 0),
    "mlp": (MLP, (2, 6, 6), ["flatten", "dense", "dense"], 0),
    "lstm": (LSTMClassifier, (9, 5), ["lstm", "dense"], 4 * 7),  # two biases -> one
}


@pytest.mark.parametrize("name", list(TORCH))
def test_torch_export_imports_with_onnxruntime_outputs(tmp_path, name):
    cls, shape, kinds, folded = TORCH[name]
    torch.manual_seed(0)
    model = cls().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, *shape),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    imported = read_onnx(path)
    assert [n.kind for n in compiled(imported).nodes] == kinds
    assert imported.producer.startswith("onnx: pytorch")
    check_parity(path, imported, folded)
