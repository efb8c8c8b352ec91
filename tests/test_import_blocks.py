"""Repeated structures of an imported model written as blocks (backends/importing/blocks.py):
a Keras model and a torch ONNX export with repeats import to a spec with a block, the counts
and outputs are the source's, and netspec's export of that run imports back to the same spec
with bit-identical weights."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
yaml = pytest.importorskip("yaml")

from helpers import random_weights  # noqa: E402
from import_parity import close  # noqa: E402
from torch import nn  # noqa: E402

import netspec  # noqa: E402
from netspec.backends.export.model import export_onnx  # noqa: E402
from netspec.backends.importing.blocks import with_blocks  # noqa: E402
from netspec.backends.importing.onnx_import import read_onnx  # noqa: E402
from netspec.backends.importing.write import write_import  # noqa: E402
from netspec.backends.weights import load_module  # noqa: E402
from netspec.runs import read_run  # noqa: E402
from netspec.summary import rows, totals  # noqa: E402

RNG = np.random.default_rng(0)


def _outputs(run: Path, x: np.ndarray) -> np.ndarray:
    loaded = read_run(run)
    module = load_module(loaded.graph, loaded.weights)
    with torch.no_grad():
        return module(torch.from_numpy(x.astype(np.float32))).numpy()


class Basic(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


class ResNet(nn.Module):
    """Two stages of identical residual blocks (4 and 8 channels), a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layer1 = nn.Sequential(Basic(4), Basic(4), Basic(4))
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.layer2 = nn.Sequential(Basic(8), Basic(8))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.layer2(self.down(self.layer1(self.stem(x))))
        return self.fc(x.mean((2, 3)))


def _torch_resnet(path: Path) -> None:
    torch.manual_seed(0)
    model = ResNet().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, 3, 8, 8),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )


def test_torch_resnet_imports_with_one_block_per_structure(tmp_path: Path) -> None:
    path = tmp_path / "resnet.onnx"
    _torch_resnet(path)
    flat = read_onnx(path)
    run = write_import(flat, tmp_path / "run")
    spec = yaml.safe_load((run / "spec.yaml").read_text())
    # one block, its channels a parameter; each use named as torch named the module
    assert list(spec["blocks"]) == ["layer"]
    assert spec["blocks"]["layer"]["params"] == {"filters": None}
    assert [i["name"] for i in spec["blocks"]["layer"]["layers"]] == [
        "conv1",
        "conv2",
        "add",
        "relu",
    ]
    uses = [item["name"] for item in spec["layers"] if "layer" in item]
    assert uses == ["layer1.0", "layer1.1", "layer1.2", "layer2.0", "layer2.1"]
    assert [item["layer"] for item in spec["layers"] if "layer" in item] == [{"filters": 4}] * 3 + [
        {"filters": 8}
    ] * 2
    # the same layers and weights as the flat import, under the uses' names
    graph = read_run(run).graph
    flat_graph = netspec.compile_text(yaml.safe_dump(flat.spec, sort_keys=False))
    assert totals(rows(graph)).total_params == totals(rows(flat_graph)).total_params
    assert [n.kind for n in graph.nodes] == [n.kind for n in flat_graph.nodes]
    assert "layer2.1/conv2" in {n.name for n in graph.nodes}
    assert set(read_run(run).weights) == {
        f"{new.name}.{k.rpartition('.')[2]}"
        for old, new in zip(flat_graph.nodes, graph.nodes, strict=True)
        for k in flat.weights
        if k.rpartition(".")[0] == old.name
    }
    x = RNG.standard_normal((3, 3, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    close(_outputs(run, x), session.run(None, {"x": x})[0])


def test_round_trip_of_a_spec_with_blocks_is_exact(tmp_path: Path) -> None:
    """netspec's export of a spec with blocks imports back to that spec (blocks, parameters,
    use names) and bit-identical weights."""
    text = (Path(__file__).resolve().parents[1] / "specs" / "resnet_cifar.yaml").read_text()
    graph = netspec.compile_text(text)
    weights = random_weights(graph)
    path = tmp_path / "model.onnx"
    onnx.save(export_onnx(graph, weights, fold_batchnorm=False), str(path))
    imported = with_blocks(read_onnx(path))
    spec = imported.spec
    assert list(spec["blocks"]) == ["residual"]
    block = spec["blocks"]["residual"]
    assert block["params"] == {"filters": None}
    original = yaml.safe_load(text)["blocks"]["residual"]["layers"]
    assert [next(iter(i)) if isinstance(i, dict) else i for i in block["layers"]] == [
        next(iter(i)) if isinstance(i, dict) else i for i in original
    ]
    uses = [(item["name"], item["residual"]) for item in spec["layers"] if "residual" in item]
    assert uses == [
        ("residual", {"filters": 16}),
        ("residual_1", {"filters": 16}),
        ("residual_2", {"filters": 16}),
        ("residual_3", {"filters": 32}),
        ("residual_4", {"filters": 32}),
        ("residual_5", {"filters": 64}),
        ("residual_6", {"filters": 64}),
    ]
    back = netspec.compile_text(yaml.safe_dump(spec, sort_keys=False))

    def flat(name: str) -> str:  # the single residual_down uses come back as plain layers
        return re.sub(r"^(residual_down(_1)?)/", r"\1.", name)

    # the names netspec gave the block's layers come back, so the weights are the very same
    assert [n.name for n in back.nodes] == [flat(n.name) for n in graph.nodes]
    assert set(imported.weights) == {flat(k) for k in weights}
    for key, value in weights.items():
        assert imported.weights[flat(key)].tobytes() == value.tobytes(), key


def test_imported_blocks_export_and_import_back_exactly(tmp_path: Path) -> None:
    """An imported run with blocks, exported by netspec, imports to the same spec (the header
    aside) and the same weights."""
    from netspec.backends.export.model import export_onnx as export

    path = tmp_path / "resnet.onnx"
    _torch_resnet(path)
    first = with_blocks(read_onnx(path))
    graph = netspec.compile_text(yaml.safe_dump(first.spec, sort_keys=False))
    again_path = tmp_path / "again.onnx"
    onnx.save(export(graph, first.weights, fold_batchnorm=False), str(again_path))
    again = with_blocks(read_onnx(again_path))

    assert again.spec["blocks"] == first.spec["blocks"]
    back = netspec.compile_text(yaml.safe_dump(again.spec, sort_keys=False))
    assert [(n.name, n.kind, n.layer.model_dump(), n.inputs) for n in back.nodes] == [
        (n.name, n.kind, n.layer.model_dump(), n.inputs) for n in graph.nodes
    ]
    assert set(again.weights) == set(first.weights)
    for key, value in first.weights.items():
        assert again.weights[key].tobytes() == value.tobytes(), key


def _dense_pairs(pairs: int, read_inside: bool) -> dict:
    """`pairs` dense-relu/dense pairs, then an add of the last one and (read_inside) both layers
    of the second pair, or the input."""
    items = []
    for i in range(pairs):
        items += [f"  - dense: {{units: 6, activation: relu}}\n    name: a{i}"]
        items += [f"  - dense: {{units: 6}}\n    name: b{i}"]
    other = "a1, b1" if read_inside else "input"
    text = "name: n\ninput: [6]\nlayers:\n" + "\n".join(items)
    text += f"\n  - add:\n    inputs: [{other}, b{pairs - 1}]\n"
    graph = netspec.compile_text(text)
    return {"graph": graph, "weights": random_weights(graph)}


@pytest.mark.parametrize(
    ("pairs", "read_inside", "blocks"), [(4, False, True), (4, True, False), (2, False, False)]
)
def test_no_block_where_it_is_read_inside_or_saves_nothing(
    tmp_path: Path, pairs: int, read_inside: bool, blocks: bool
) -> None:
    """Four pairs make a block; not when the second pair's layers are read after it (no window
    holding them can be a use, and two pairs left save nothing), nor of two pairs."""
    made = _dense_pairs(pairs, read_inside)
    path = tmp_path / "m.onnx"
    onnx.save(export_onnx(made["graph"], made["weights"]), str(path))
    assert ("blocks" in with_blocks(read_onnx(path)).spec) is blocks


def test_keras_model_with_repeats_imports_with_blocks(tmp_path: Path) -> None:
    """Three named conv-bn-relu groups and three dense-dropout groups: two blocks, the uses
    named as the groups were, Keras' count and outputs."""
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("Keras runs on another backend here")
    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="stem")(inp)
    for i in range(1, 4):
        x = L.Conv2D(6, 3, padding="same", use_bias=False, name=f"g{i}_conv")(x)
        x = L.BatchNormalization(name=f"g{i}_bn")(x)
        x = L.ReLU(name=f"g{i}_relu")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    for i in range(1, 4):
        x = L.Dense(6, activation="relu", name=f"fc{i}_dense")(x)
        x = L.Dropout(0.1, name=f"fc{i}_drop")(x)
    model = keras.Model(inp, L.Dense(3, activation="softmax", name="out")(x))
    rng = np.random.default_rng(0)
    for w in model.weights:
        value = rng.uniform(-0.5, 0.5, w.shape)
        w.assign((np.abs(value) + 0.5 if "variance" in w.path else value).astype(np.float32))
    with warnings.catch_warnings():  # Keras' writers trip numpy 2's __array__ deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        model.save(tmp_path / "m.keras")
    from netspec.backends.importing.keras_import import read_keras

    run = write_import(read_keras(tmp_path / "m.keras"), tmp_path / "run")
    spec = yaml.safe_load((run / "spec.yaml").read_text())
    assert list(spec["blocks"]) == ["g", "fc"]
    assert [i["name"] for i in spec["layers"] if "g" in i] == ["g1", "g2", "g3"]
    assert [i["name"] for i in spec["layers"] if "fc" in i] == ["fc1", "fc2", "fc3"]
    assert [i["name"] for i in spec["blocks"]["g"]["layers"]] == ["conv", "bn", "relu"]
    graph = read_run(run).graph
    assert totals(rows(graph)).total_params == model.count_params()
    x = rng.standard_normal((4, 8, 8, 3)).astype(np.float32)
    want = model(x, training=False).detach().cpu().numpy()
    close(_outputs(run, x.transpose(0, 3, 1, 2)), want)
