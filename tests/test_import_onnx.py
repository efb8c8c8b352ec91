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
    if graph.nodes[0].kind == "embedding":  # token ids
        x = RNG.integers(0, graph.nodes[0].layer.input_dim, x.shape).astype(np.float32)
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
    floats = [t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT]
    elements = sum(int(np.prod(t.dims)) for t in floats)  # not the int64 shapes and pads
    assert sum(n.params for n in graph.nodes) == elements - folded


def save(
    tmp_path: Path,
    nodes,
    inits,
    shape,
    opset: int = 13,
    name: str = "g.onnx",
    elem=TensorProto.FLOAT,
) -> Path:
    """A model of `nodes` from input x [N, *shape] to output y, as another producer writes it."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", elem, ["N", *shape])],
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
    "attention": """
name: att
input: [6, 8]
layers:
  - dense: {units: 8}
    name: emb
  - multi_head_attention: {num_heads: 2, key_dim: 4, value_dim: 3, causal: true}
  - add:
    inputs: [emb, multi_head_attention]
  - layernorm
  - multi_head_attention: {num_heads: 1, key_dim: 5}
    inputs: [layernorm, emb]
  - seq_pool: {op: mean}
  - dense: {units: 3, activation: softmax}
""",
    "tokens": """
name: tok
input: [10]
layers:
  - embedding: {input_dim: 20, output_dim: 6}
  - lstm: {units: 5}
  - dense: {units: 2, activation: softmax}
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
        # and 1/16 of its filters (4 to 64, the logits' 2 kept): the same layers, crops and
        # weights to read back, without the 31M parameters' seconds of forward passes
        text = re.sub(r"\bfilters: (\d{2,})", lambda m: f"filters: {int(m[1]) // 16}", text)
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


def test_a_fixed_batch_size_becomes_free(tmp_path):
    graph = netspec.compile_text(spec_text("mnist_lstm"))
    path = tmp_path / "model.onnx"
    onnx.save(export_onnx(graph, random_weights(graph), batch=1), str(path))
    imported = read_onnx(path)
    assert [n.kind for n in compiled(imported).nodes] == ["reshape", "lstm", "dense"]
    assert any("fixed batch size 1" in note for note in imported.notes)


def test_a_batchnorm_written_as_mul_and_add_is_a_batchnorm(tmp_path):
    """netspec's export writes a batchnorm after a sigmoid as Mul and Add (OpenCV misfuses
    the op there); tf2onnx writes folded batch normalizations the same way."""
    text = (
        "name: s\ninput: [6]\nlayers:\n  - dense: {units: 4, activation: sigmoid}\n  - batchnorm\n"
    )
    graph = netspec.compile_text(text)
    path = tmp_path / "model.onnx"
    onnx.save(export_onnx(graph, random_weights(graph)), str(path))
    assert "Mul" in {n.op_type for n in onnx.load(str(path)).graph.node}
    imported = read_onnx(path)
    assert [n.kind for n in compiled(imported).nodes] == ["dense", "batchnorm"]
    check_parity(path, imported, folded=None)
    inits = {"w": f32(3, 2, 3, 3), "g": f32(1, 3, 1, 1), "b": f32(3, 1, 1)}
    nodes = [
        node("Conv", ["x", "w"], "conv", kernel_shape=[3, 3]),
        node("Mul", ["conv", "g"], "scaled"),
        node("Add", ["scaled", "b"], "shifted"),
        node("Relu", ["shifted"], "y"),
    ]
    path = save(tmp_path, nodes, inits, [2, 5, 5], name="tf.onnx")
    imported = read_onnx(path)
    assert [n.kind for n in compiled(imported).nodes] == ["conv2d", "batchnorm", "relu"]
    check_parity(path, imported, folded=-6)  # the running mean and variance the import adds
    shift_only = [node("Relu", ["x"], "act"), node("Add", ["act", "b"], "y")]
    path = save(tmp_path, shift_only, {"b": f32(2, 1, 1)}, [2, 5, 5], name="shift.onnx")
    imported = read_onnx(path)
    assert [n.kind for n in compiled(imported).nodes] == ["relu", "batchnorm"]
    check_parity(path, imported, folded=-6)


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


class BiGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.fc = nn.GRU(5, 4, batch_first=True, bidirectional=True), nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.rnn(x)  # [B, T, 2 * 4]: torch reshapes ONNX's [T, 2, B, 4] to it
        return self.fc(out.mean(1))


class Mixed(nn.Module):
    """Activations torch writes as several ops (GELU with Erf, SiLU as x * sigmoid(x), ReLU6 as
    Clip), upsampling, a concat of two branches, a transposed convolution, a dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.branch = nn.Conv2d(2, 4, 1)
        self.up = nn.ConvTranspose2d(8, 3, 2, stride=2)
        self.head = nn.Linear(3 * 16 * 16, 4)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        a = nn.functional.gelu(self.conv(x))
        b = nn.functional.silu(self.branch(x))
        y = torch.cat([nn.functional.relu6(a), nn.functional.leaky_relu(b, 0.2)], dim=1)
        y = self.up(nn.functional.max_pool2d(y, 2))
        y = nn.functional.interpolate(y, scale_factor=2, mode="nearest")
        return self.head(self.drop(torch.tanh(y)).flatten(1))


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
    "bigru": (BiGRU, (6, 5), ["gru", "seq_pool", "dense"], 0),
    "mixed": (
        Mixed,
        (2, 8, 8),
        # gelu and silu fused into the convolutions before them
        [
            "conv2d",
            "conv2d",
            "relu6",
            "leaky_relu",
            "concat",
            "maxpool2d",
            "conv_transpose2d",
            "upsample2d",
            "tanh",
            "flatten",
            "dense",
        ],
        0,
    ),
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
            do_constant_folding=name != "convnet_bn",
        )
    imported = read_onnx(path)
    assert [n.kind for n in compiled(imported).nodes] == kinds
    assert imported.producer.startswith("onnx: pytorch")
    check_parity(path, imported, folded)


# --- graphs as other producers write them ------------------------------------------------------


def node(op: str, ins: list[str], out: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, ins, [out], name=out, **attrs)


def test_matmul_and_add_become_dense_layers(tmp_path):
    inits = {"w1": f32(6, 4), "b1": f32(4), "w2": f32(4, 3), "b2": f32(1, 3)}
    nodes = [
        node("MatMul", ["x", "w1"], "fc1"),
        node("Add", ["fc1", "b1"], "fc1_bias"),
        node("Relu", ["fc1_bias"], "act"),
        node("MatMul", ["act", "w2"], "fc2"),
        node("Add", ["b2", "fc2"], "y"),
    ]
    path = save(tmp_path, nodes, inits, [6])
    imported = read_onnx(path)
    layers = imported.spec["layers"]
    assert [next(iter(item)) for item in layers] == ["dense", "dense"]
    assert layers[0]["dense"] == {"units": 4, "activation": "relu"}
    check_parity(path, imported)


def test_pads_before_a_convolution(tmp_path):
    """A symmetric Pad becomes the convolution's padding; an asymmetric one a zeropad2d."""
    inits = {
        "p1": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
        "w1": f32(4, 2, 3, 3),
        "b1": f32(4),
        "p2": np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64),
        "w2": f32(3, 4, 3, 3),
    }
    nodes = [
        node("Pad", ["x", "p1"], "pad1", mode="constant"),
        node("Conv", ["pad1", "w1", "b1"], "conv1", kernel_shape=[3, 3]),
        node("Pad", ["conv1", "p2"], "pad2"),
        node("Conv", ["pad2", "w2"], "y", kernel_shape=[3, 3], strides=[2, 2]),
    ]
    path = save(tmp_path, nodes, inits, [2, 8, 8])
    imported = read_onnx(path)
    kinds = [next(iter(item)) for item in imported.spec["layers"]]
    assert kinds == ["conv2d", "zeropad2d", "conv2d"]
    assert imported.spec["layers"][0]["conv2d"]["padding"] == 1
    assert imported.spec["layers"][1]["zeropad2d"] == {"padding": [0, 1, 0, 1]}
    check_parity(path, imported)


def test_shape_gather_reshape_chain_is_a_flatten(tmp_path):
    inits = {"w": f32(3, 2, 3, 3), "i0": np.array(0, np.int64), "ax": np.array([0], np.int64)}
    inits |= {"minus1": np.array([-1], np.int64), "fw": f32(5, 12), "fb": f32(5)}
    nodes = [
        node("Conv", ["x", "w"], "conv", kernel_shape=[3, 3]),
        node("Shape", ["conv"], "shape"),
        node("Gather", ["shape", "i0"], "batch", axis=0),
        node("Unsqueeze", ["batch", "ax"], "batch1"),
        node("Concat", ["batch1", "minus1"], "target", axis=0),
        node("Reshape", ["conv", "target"], "flat"),
        node("Gemm", ["flat", "fw", "fb"], "y", transB=1),
    ]
    path = save(tmp_path, nodes, inits, [2, 4, 4])
    imported = read_onnx(path)
    assert [next(iter(item)) for item in imported.spec["layers"]] == ["conv2d", "flatten", "dense"]
    check_parity(path, imported)


def test_a_channels_last_flatten_is_a_permute_then_a_reshape(tmp_path):
    """Keras flattens [H, W, C]: tf2onnx transposes back to channels-last before the Reshape."""
    inits = {"w": f32(2, 3, 3, 3), "shape": np.array([-1, 2 * 4 * 4], np.int64), "fw": f32(32, 3)}
    nodes = [
        node("Conv", ["x", "w"], "conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        node("Transpose", ["conv"], "nhwc", perm=[0, 2, 3, 1]),
        node("Reshape", ["nhwc", "shape"], "flat"),
        node("MatMul", ["flat", "fw"], "y"),
    ]
    path = save(tmp_path, nodes, inits, [3, 4, 4])
    imported = read_onnx(path)
    kinds = [n.kind for n in compiled(imported).nodes]
    assert kinds == ["conv2d", "permute", "reshape", "dense"]  # explicit sizes: a reshape
    assert imported.spec["layers"][1]["permute"] == {"dims": [1, 2, 0]}
    check_parity(path, imported)


def squeeze_excite(gate: str) -> tuple[list, dict]:
    inits = {"w1": f32(2, 8, 1, 1), "b1": f32(2), "w2": f32(8, 2, 1, 1), "b2": f32(8)}
    nodes = [
        node("GlobalAveragePool", ["x"], "squeeze"),
        node("Conv", ["squeeze", "w1", "b1"], "reduce", kernel_shape=[1, 1]),
        node("Relu", ["reduce"], "reduce_act"),
        node("Conv", ["reduce_act", "w2", "b2"], "expand", kernel_shape=[1, 1]),
        node(gate, ["expand"], "gate"),
        node("Mul", ["x", "gate"], "y"),
    ]
    return nodes, inits


def test_squeeze_excite_with_a_sigmoid_gate_is_a_multiply(tmp_path):
    path = save(tmp_path, *squeeze_excite("Sigmoid"), [8, 5, 5])
    imported = read_onnx(path)
    layers = imported.spec["layers"]
    assert [next(iter(item)) for item in layers] == [
        "global_avgpool2d",
        "conv2d",
        "conv2d",
        "multiply",
    ]
    assert layers[0]["global_avgpool2d"] == {"keepdims": True}
    assert layers[2]["conv2d"]["activation"] == "sigmoid"
    assert layers[3]["inputs"] == ["input", "expand"]
    check_parity(path, imported)


def test_squeeze_excite_with_a_hard_sigmoid_gate_imports(tmp_path):
    """MobileNetV3's gate: HardSigmoid(alpha=1/6, beta=0.5), netspec's hard_sigmoid."""
    nodes, inits = squeeze_excite("HardSigmoid")
    nodes[4] = node("HardSigmoid", ["expand"], "gate", alpha=1 / 6, beta=0.5)
    path = save(tmp_path, nodes, inits, [8, 5, 5])
    imported = read_onnx(path)
    kinds = [next(iter(item)) for item in imported.spec["layers"]]
    assert "multiply" in kinds and "hard_sigmoid" in str(imported.spec["layers"])
    check_parity(path, imported)


def test_hard_sigmoid_of_another_slope_is_refused_by_name(tmp_path):
    """ONNX's default HardSigmoid (alpha 0.2, Keras 2's) is not netspec's relu6(x + 3) / 6."""
    path = save(tmp_path, *squeeze_excite("HardSigmoid"), [8, 5, 5])
    with pytest.raises(DataError) as err:
        read_onnx(path)
    (problem,) = err.value.problems
    assert "HardSigmoid (1 node: gate)" in problem.message
    assert "alpha=0.2" in problem.message


def test_hard_swish_written_out_and_as_one_op_import(tmp_path):
    """x * Clip(x + 3, 0, 6) / 6 (tf2onnx, paddle2onnx) and HardSwish (opset 14) become
    hard_swish; a Clip with other bounds becomes clip."""
    inits = {"w": f32(4, 2, 3, 3), "three": np.array(3.0, np.float32)}
    inits |= {"zero": np.array(0.0, np.float32), "six": np.array(6.0, np.float32)}
    inits |= {"lo": np.array(-1.0, np.float32), "hi": np.array(2.0, np.float32)}
    nodes = [
        node("Conv", ["x", "w"], "conv", kernel_shape=[3, 3]),
        node("Add", ["conv", "three"], "hs_add"),
        node("Clip", ["hs_add", "zero", "six"], "hs_clip"),
        node("Mul", ["conv", "hs_clip"], "hs_mul"),
        node("Div", ["hs_mul", "six"], "hs_div"),
        node("HardSwish", ["hs_div"], "hs_op"),
        node("Clip", ["hs_op", "lo", "hi"], "y"),
    ]
    path = save(tmp_path, nodes, inits, [2, 6, 6], opset=14)
    imported = read_onnx(path)
    text = str(imported.spec["layers"])
    assert text.count("hard_swish") == 2 and "'clip': {'min': -1.0, 'max': 2.0}" in text
    check_parity(path, imported, folded=5)  # the scalars 3, 0, 6, -1 and 2 are the ops' own


def test_a_channels_last_input_becomes_channels_first_with_its_layout_recorded(tmp_path):
    """tf2onnx's Keras models take NHWC and transpose it first: netspec's input is [C, H, W]."""
    inits = {"w": f32(4, 3, 3, 3), "b": f32(4), "fw": f32(2, 4), "fb": f32(2)}
    nodes = [
        node("Transpose", ["x"], "nchw", perm=[0, 3, 1, 2]),
        node("Conv", ["nchw", "w", "b"], "conv", kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
        node("Relu", ["conv"], "act"),
        node("ReduceMean", ["act"], "pooled", axes=[2, 3], keepdims=0),
        node("Gemm", ["pooled", "fw", "fb"], "y", transB=1),
    ]
    path = save(tmp_path, nodes, inits, [6, 5, 3])
    imported = read_onnx(path)
    assert imported.spec["input"] == [3, 6, 5]
    assert imported.input_layout == "NHWC"
    assert [next(iter(item)) for item in imported.spec["layers"]] == [
        "conv2d",
        "global_avgpool2d",
        "dense",
    ]
    assert imported.spec["layers"][0]["conv2d"]["padding"] == "same"
    graph = compiled(imported)
    module = load_module(graph, imported.weights)
    x = RNG.standard_normal((2, 6, 5, 3)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    with torch.no_grad():
        got = module(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_scaling_and_normalization_at_the_input_become_the_preprocessing_record(tmp_path):
    mean = np.array([0.4, 0.5, 0.6], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.2, 0.25, 0.3], np.float32).reshape(3, 1, 1)
    inits = {"k": np.array(255.0, np.float32), "mean": mean, "std": std, "w": f32(2, 3, 1, 1)}
    nodes = [
        node("Div", ["x", "k"], "scaled"),
        node("Sub", ["scaled", "mean"], "centred"),
        node("Div", ["centred", "std"], "normed"),
        node("Conv", ["normed", "w"], "y", kernel_shape=[1, 1]),
    ]
    path = save(tmp_path, nodes, inits, [3, 4, 4])
    imported = read_onnx(path)
    pre = imported.preprocessing
    assert pre is not None and pre["scale"] == pytest.approx(1 / 255)
    assert pre["mean"] == pytest.approx([0.4, 0.5, 0.6]) and pre["std"] == pytest.approx(
        [0.2, 0.25, 0.3]
    )
    assert [next(iter(item)) for item in imported.spec["layers"]] == ["conv2d"]
    module = load_module(compiled(imported), imported.weights)
    x = RNG.uniform(0, 255, (2, 3, 4, 4)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    ready = (x * pre["scale"] - mean) / std
    with torch.no_grad():
        got = module(torch.from_numpy(ready.astype(np.float32))).numpy()
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_integer_token_ids_and_a_table_lookup_are_an_embedding(tmp_path):
    inits = {"table": f32(12, 4), "fw": f32(3, 4), "fb": f32(3)}
    nodes = [
        node("Gather", ["table", "x"], "emb", axis=0),
        node("ReduceMean", ["emb"], "mean", axes=[1], keepdims=0),
        node("Gemm", ["mean", "fw", "fb"], "y", transB=1),
    ]
    path = save(tmp_path, nodes, inits, [5], elem=TensorProto.INT64)
    imported = read_onnx(path)
    graph = compiled(imported)
    assert [n.kind for n in graph.nodes] == ["embedding", "seq_pool", "dense"]
    ids = RNG.integers(0, 12, (3, 5))
    want = ort.InferenceSession(str(path)).run(None, {"x": ids})[0]
    with torch.no_grad():
        got = load_module(graph, imported.weights)(torch.from_numpy(ids.astype(np.float32)))
    assert np.abs(got.numpy() - want).max() <= 1e-5


@pytest.mark.parametrize("output", ["Y", "Y_h"])
def test_a_batch_major_lstm_layout_1(tmp_path, output):
    """layout=1 (X [B, T, F]); onnxruntime refuses it, so onnx's reference evaluator is the
    source's outputs here."""
    from onnx.reference import ReferenceEvaluator

    inits = {"W": f32(1, 16, 3), "R": f32(1, 16, 4), "B": f32(1, 32), "ax": np.array([2])}
    if output == "Y":  # Y [B, T, 1, 4] -> [B, T, 4] -> max over time
        nodes = [
            helper.make_node(
                "LSTM", ["x", "W", "R", "B"], ["ys"], name="l", hidden_size=4, layout=1
            ),
            node("Squeeze", ["ys", "ax"], "seq"),
            node("ReduceMax", ["seq"], "y", axes=[1], keepdims=0),
        ]
    else:  # Y_h [B, 1, 4] -> [B, 4]
        nodes = [
            helper.make_node(
                "LSTM", ["x", "W", "R", "B"], ["", "yh"], name="l", hidden_size=4, layout=1
            ),
            node("Flatten", ["yh"], "y", axis=1),
        ]
    path = save(tmp_path, nodes, inits, [5, 3], opset=14)
    imported = read_onnx(path)
    graph = compiled(imported)
    assert [n.kind for n in graph.nodes] == (["lstm", "seq_pool"] if output == "Y" else ["lstm"])
    x = RNG.standard_normal((2, 5, 3)).astype(np.float32)
    want = ReferenceEvaluator(onnx.load(str(path))).run(None, {"x": x})[0]
    with torch.no_grad():
        got = load_module(graph, imported.weights)(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-5


# --- refusals ----------------------------------------------------------------------------------


def test_every_unsupported_op_type_is_listed_once_with_its_nodes_and_count(tmp_path):
    nodes = [
        node("Sin", ["x"], "sin1"),
        node("Relu", ["sin1"], "after"),  # downstream of a refusal: not listed
        node("Sin", ["after"], "sin2"),
        node("Sub", ["sin2", "x"], "diff"),
        node("Mul", ["diff", "k"], "y"),
    ]
    path = save(tmp_path, nodes, {"k": np.array(2.0, np.float32)}, [4])
    with pytest.raises(DataError) as err:
        read_onnx(path)
    messages = [p.message for p in err.value.problems]
    assert len(messages) == 2
    assert messages[0].startswith("cannot import Sin (2 nodes: sin1, sin2)")
    assert messages[1].startswith("cannot import Sub (1 node: diff)")
    assert all(p.file == str(path) for p in err.value.problems)


REFUSED = {
    "add_broadcast": (
        [node("Conv", ["x", "w"], "c", kernel_shape=[1, 1]), node("Add", ["c", "x"], "y")],
        {"w": f32(3, 1, 1, 1)},
        [1, 4, 4],
        "Add (1 node: y): as add: inputs c (3, 4, 4) and input (1, 4, 4) must have equal shapes",
    ),
    "output_is_input": (
        [node("Identity", ["x"], "y")],
        {},
        [4],
        "the output 'y' is the input",
    ),
    # op: (nodes, initializers, input shape, words of the message)
    "conv3d": (
        [node("Conv", ["x", "w"], "y", kernel_shape=[1, 1, 1])],
        {"w": f32(2, 1, 1, 1, 1)},
        [1, 2, 2, 2],
        "input 'x' has rank 5",  # volumes: refused at the input, before any node
    ),
    "clip": (
        [node("Clip", ["x", "lo"], "y")],
        {"lo": np.array(-1.0, np.float32)},
        [4],
        "Clip (1 node: y): Clip(-1, inf): a one-sided bound",
    ),
    "resize_cubic": (
        [node("Resize", ["x", "", "s"], "y", mode="cubic")],
        {"s": np.array([1, 1, 2, 2], np.float32)},
        [1, 2, 2],
        "Resize (1 node: y): mode cubic",
    ),
    "gru_reset_before": (
        [node("GRU", ["xt", "w", "r"], "yg", hidden_size=2), node("Relu", ["yg"], "y")],
        {"w": f32(1, 6, 3), "r": f32(1, 6, 2)},
        [4, 3],
        "GRU (1 node: yg): linear_before_reset=0",
    ),
    "avgpool_include_pad": (
        [
            node(
                "AveragePool",
                ["x"],
                "y",
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
                count_include_pad=1,
            )
        ],
        {},
        [1, 4, 4],
        "count_include_pad=1",
    ),
    "matmul_of_two_tensors": (
        [node("MatMul", ["x", "x"], "y")],
        {},
        [3, 3],
        "MatMul (1 node: y): a product of two computed tensors",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refusals_name_the_node_and_the_reason(tmp_path, case):
    nodes, inits, shape, words = REFUSED[case]
    if case == "gru_reset_before":  # the sequence time-major, as recurrent ops take it
        nodes = [node("Transpose", ["x"], "xt", perm=[1, 0, 2]), *nodes]
    path = save(tmp_path, nodes, inits, shape)
    with pytest.raises(DataError) as err:
        read_onnx(path)
    assert words in err.value.format()


def test_dynamic_dimensions_need_an_input_shape(tmp_path):
    inits = {"w": f32(3, 2, 3, 3)}
    graph = helper.make_graph(
        [node("Conv", ["x", "w"], "conv", kernel_shape=[3, 3]), node("Relu", ["conv"], "y")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, str(path))
    with pytest.raises(DataError) as err:
        read_onnx(path)
    assert "dynamic dimensions [?, 2, ?, ?]" in err.value.format()
    assert "--input-shape" in err.value.format()
    with pytest.raises(DataError, match="does not fit"):
        read_onnx(path, (3, 8, 8))
    imported = read_onnx(path, (2, 8, 8))
    assert imported.spec["input"] == [2, 8, 8]
    assert imported.spec["layers"][0]["conv2d"]["activation"] == "relu"


# --- bad files ---------------------------------------------------------------------------------


def test_a_file_that_is_not_onnx_and_a_truncated_one(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("hello, this is not a model\n")
    with pytest.raises(DataError, match="not an ONNX model") as err:
        read_onnx(text)
    assert err.value.problems[0].file == str(text)
    path = save(tmp_path, [node("Relu", ["x"], "y")], {}, [4])
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(path.read_bytes()[:-9])
    with pytest.raises(DataError, match="not an ONNX model, or a truncated one"):
        read_onnx(cut)
    with pytest.raises(DataError, match="no such ONNX file"):
        read_onnx(tmp_path / "missing.onnx")


def external(tmp_path: Path, location: str) -> Path:
    """A dense model whose weight lives in an external data file at `location`."""
    w = f32(4, 3)
    tensor = numpy_helper.from_array(w, "w")
    data = (tmp_path / location).resolve()
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(w.tobytes())
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(w.nbytes)}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [node("MatMul", ["x", "w"], "y")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "model" / "ext.onnx"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def test_external_data_inside_the_folder_is_read_and_outside_it_refused(tmp_path):
    inside = external(tmp_path, "model/weights.bin")
    # the location is relative to the model's folder: rewrite it as the model sees it
    model = onnx.load(str(inside), load_external_data=False)
    model.graph.initializer[0].external_data[0].value = "weights.bin"
    inside.write_bytes(model.SerializeToString())
    imported = read_onnx(inside)
    assert imported.weights["y.weight"].shape == (3, 4)
    outside = external(tmp_path, "secret.bin")
    model = onnx.load(str(outside), load_external_data=False)
    model.graph.initializer[0].external_data[0].value = "../secret.bin"
    outside.write_bytes(model.SerializeToString())
    with pytest.raises(DataError, match="outside the model's folder") as err:
        read_onnx(outside)
    assert err.value.problems[0].file == str(outside)


def test_netspec_import_of_an_onnx_file_makes_a_run_every_command_takes(tmp_path):
    """`netspec import model.onnx -o RUN`, then summary, export and predict of the run: the
    re-exported model answers as the source file does in onnxruntime."""
    import json

    import onnxruntime as ort
    from helpers import invoke

    graph = netspec.compile_text(spec_text("tokens"))
    path = tmp_path / "source.onnx"
    onnx.save(export_onnx(graph, random_weights(graph)), str(path))
    run = tmp_path / "run"
    done = invoke("import", path, "-o", run, "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["producer"].startswith("onnx: netspec") and report["source"] == str(path)
    assert all(Path(f).is_file() for f in report["files"])
    summary = invoke("summary", run / "spec.yaml")
    assert summary.exit_code == 0 and "lstm" in summary.output
    assert invoke("export", run, "-o", tmp_path / "again.onnx").exit_code == 0
    ids = np.random.default_rng(0).integers(0, 20, (3, 10)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"input": ids})[0]
    got = ort.InferenceSession(str(tmp_path / "again.onnx")).run(None, {"input": ids})[0]
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.save(tmp_path / "ids.npy", ids)
    predicted = invoke("predict", tmp_path / "again.onnx", tmp_path / "ids.npy", "--json")
    assert predicted.exit_code == 0, predicted.output
    assert "predictions" in predicted.output
