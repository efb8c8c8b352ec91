"""`netspec import` of Keras files: models built with Keras 3 here (saved as .keras and legacy
.h5) and a Keras 2 file written by hand with h5py; the imported run has Keras' parameter count
and outputs (torch, the exported ONNX model, predict), and every refusal is one located error."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from helpers import runner  # noqa: E402

from netspec.backends.importing.keras_import import read_keras  # noqa: E402
from netspec.backends.importing.write import write_import  # noqa: E402
from netspec.backends.weights import load_module  # noqa: E402
from netspec.cli import app  # noqa: E402
from netspec.errors import NetspecError  # noqa: E402
from netspec.runs import read_run  # noqa: E402
from netspec.summary import rows, totals  # noqa: E402

# Keras and its layers, set by `_keras` when this file's first test runs (not at collection:
# conftest.py's keras_module says why); the model builders below read them.
keras: Any = None
L: Any = None


@pytest.fixture(scope="module", autouse=True)
def _keras(keras_module: Any) -> None:
    global keras, L
    keras, L = keras_module, keras_module.layers


def _randomize(model, seed: int) -> None:
    """Non-trivial weights everywhere (biases and batchnorm statistics too), variances > 0."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.uniform(-0.5, 0.5, w.shape)
        if "variance" in w.path:
            value = np.abs(value) + 0.5
        if w.path.endswith("count"):
            continue
        w.assign(value.astype(np.float32))


def image_model():
    """Every image layer: channels-last convolutions (same/valid, strides, dilation, groups,
    no bias), batchnorm, padding, pooling, resizing, transposed convolution, merges, a
    squeeze-excite multiply, activations, and a Flatten of NHWC features into a dense."""
    inp = keras.Input((10, 10, 3))
    x = L.Rescaling(1 / 255, offset=-0.5, name="scale")(inp)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="c1")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(x)
    x = L.Conv2D(6, 4, strides=2, padding="same", use_bias=False, name="c2")(x)  # 6x6
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = L.SeparableConv2D(6, 3, padding="same", activation="relu6", name="sep")(x)
    g = L.Conv2D(6, 3, padding="same", groups=3, name="grouped")(x)
    d = L.Conv2D(6, 3, padding="same", dilation_rate=2, name="dilated")(x)
    x = L.LeakyReLU(0.1, name="leaky")(L.Add(name="add")([g, d]))
    se = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    se = L.Conv2D(6, 1, activation="sigmoid", name="excite")(se)
    x = L.Multiply(name="scale_channels")([x, se])
    u = L.UpSampling2D(2, interpolation="bilinear", name="up")(x)  # 12x12
    m = L.MaxPooling2D(2, name="maxpool")(u)  # 6x6
    a = L.AveragePooling2D(3, strides=1, padding="same", name="avgpool")(x)
    x = L.Concatenate(name="cat")([m, a])
    x = L.Softmax(name="channel_softmax")(x)
    x = L.ReLU(max_value=6, name="relu6")(L.Activation("tanh", name="tanh")(x))
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same", name="upconv")(x)  # 12x12
    x = L.UpSampling2D(1, name="same_size")(x)
    x = L.AveragePooling2D(4, name="down")(x)  # 3x3
    x = L.Flatten(name="flat")(x)
    x = L.Dropout(0.3, name="drop")(x)
    x = L.Dense(5, activation="gelu", name="fc")(x)
    out = L.Dense(3, name="out")(x)
    return keras.Model(inp, out, name="image_model")


def sequence_model():
    """Conv1D and 1-D pooling over (time, features), a bidirectional GRU, layernorm, global
    pooling of a sequence and of conv features, concatenation."""
    inp = keras.Input((12, 4))
    c = L.Conv1D(5, 3, padding="same", activation="relu", name="conv")(inp)
    c = L.MaxPooling1D(2, name="pool")(c)
    c = L.AveragePooling1D(2, padding="same", strides=1, name="avg")(c)
    r = L.Bidirectional(L.GRU(3, return_sequences=True), name="bigru")(c)
    r = L.LayerNormalization(name="ln")(r)
    p1 = L.GlobalMaxPooling1D(name="seqmax")(r)
    p2 = L.GlobalAveragePooling1D(name="convmean")(c)
    out = L.Dense(2, name="out")(L.Concatenate(name="cat")([p1, p2]))
    return keras.Model(inp, out, name="sequence_model")


def text_model():
    """Embedding, self-attention with a residual and layernorm, SimpleRNN, LSTM, reshape."""
    inp = keras.Input((9,))
    e = L.Embedding(30, 8, name="emb")(inp)
    a = L.MultiHeadAttention(2, 4, name="att")(e, e)
    h = L.LayerNormalization(epsilon=1e-5, name="ln")(L.Add(name="res")([e, a]))
    h = L.SimpleRNN(5, return_sequences=True, name="rnn")(h)
    h = L.LSTM(4, name="lstm")(h)
    h = L.Dense(6, activation="silu", name="fc")(h)
    h = L.Flatten(name="flat")(L.Reshape((2, 3), name="shape")(h))
    out = L.Dense(2, activation="softmax", name="out")(h)
    return keras.Model(inp, out, name="text_model")


def masked_model():
    """Padding masks (mask_zero) through causal attention with its own value_dim, a residual,
    layernorm, a bidirectional LSTM and a masked mean."""
    inp = keras.Input((8,))
    e = L.Embedding(20, 6, mask_zero=True, name="emb")(inp)
    a = L.MultiHeadAttention(2, 3, value_dim=4, name="att")(e, e, use_causal_mask=True)
    h = L.LayerNormalization(name="ln")(L.Add(name="res")([e, a]))
    h = L.Bidirectional(L.LSTM(3, return_sequences=True), name="bi")(h)
    h = L.GlobalAveragePooling1D(name="mean")(h)
    return keras.Model(inp, L.Dense(3, activation="softmax", name="out")(h), name="masked")


def table_model():
    """A Sequential regression model with a Normalization at its input."""
    norm = L.Normalization(name="norm")
    norm.adapt(np.random.default_rng(5).normal(3, 2, (64, 4)).astype(np.float32))
    model = keras.Sequential(
        [keras.Input((4,)), norm, L.Dense(8, activation="relu"), L.Dense(1)], name="table"
    )
    return model


def _save(model, path: Path, weights_only: bool = False) -> None:
    """model.save (or save_weights); Keras' writers trip numpy 2's __array__ deprecation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        (model.save_weights if weights_only else model.save)(path)


def mobile_model():
    """The MobileNet vocabulary: separable convolutions (depth_multiplier, no bias, strides,
    a non-square kernel), hard_sigmoid and hard_silu (fused and as layers), a squeeze-excite
    gate, and a ReLU capped at 4 (clip)."""
    inp = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="hard_silu", name="stem")(inp)
    x = L.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, use_bias=False, name="sep_dm")(
        x
    )
    x = L.BatchNormalization(name="bn")(x)
    x = L.Activation("hard_swish", name="hswish")(x)
    se = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    se = L.Conv2D(4, 1, activation="relu", name="reduce")(se)
    se = L.Conv2D(8, 1, activation="hard_sigmoid", name="gate")(se)
    x = L.Multiply(name="excite")([x, se])
    x = L.SeparableConv2D(6, (3, 2), strides=2, activation="relu6", name="sep_s2")(x)
    x = L.ReLU(max_value=4.0, name="cap")(x)
    x = L.Activation("hard_sigmoid", name="hsig")(x)
    out = L.Dense(3, name="out")(L.GlobalAveragePooling2D(name="pool")(x))
    return keras.Model(inp, out, name="mobile")


MODELS = {
    "image": image_model,
    "mobile": mobile_model,
    "sequence": sequence_model,
    "text": text_model,
    "masked": masked_model,
    "table": table_model,
}


def _inputs(name: str, rng: np.random.Generator) -> np.ndarray:
    if name == "image":
        return rng.uniform(0, 255, (4, 10, 10, 3)).astype(np.float32)
    if name == "mobile":
        return rng.normal(0, 2, (4, 12, 12, 3)).astype(np.float32)
    if name == "text":
        return rng.integers(0, 30, (4, 9)).astype(np.float32)
    if name == "masked":  # padded with zeros after 8, 5, 3 and 1 tokens
        ids = rng.integers(1, 20, (4, 8)).astype(np.float32)
        for row, n in zip(ids, (8, 5, 3, 1)):
            row[n:] = 0
        return ids
    if name == "sequence":
        return rng.normal(0, 1, (4, 12, 4)).astype(np.float32)
    return rng.normal(3, 2, (4, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each model once: the Keras model, its .keras and .h5 files, inputs and Keras' outputs."""
    folder = tmp_path_factory.mktemp("keras_models")
    out = {}
    for i, (name, make) in enumerate(MODELS.items()):
        keras.utils.set_random_seed(i)
        model = make()
        _randomize(model, i)
        x = _inputs(name, np.random.default_rng(i))
        want = model(x, training=False).detach().cpu().numpy()
        _save(model, folder / f"{name}.keras")
        _save(model, folder / f"{name}.h5")
        pre = sum(int(np.prod(w.shape)) for w in model.weights if "norm/" in w.path)
        out[name] = (model.count_params() - pre, x, want, folder, model)
    return out


def _netspec_input(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x  # NHWC -> NCHW


def _forward(loaded, x: np.ndarray) -> np.ndarray:
    """The imported run's torch output for Keras' inputs: transposed, then preprocessed."""
    xs = _netspec_input(x)
    pre = loaded.meta.preprocessing
    if pre is not None:
        xs = xs * pre.scale
        if pre.mean is not None:
            shape = (1, -1) + (1,) * (xs.ndim - 2)
            xs = (xs - np.reshape(pre.mean, shape)) / np.reshape(pre.std, shape)
    module = load_module(loaded.graph, loaded.weights)
    with torch.no_grad():
        return module(torch.from_numpy(xs.astype(np.float32))).numpy()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("name", list(MODELS))
def test_import_matches_keras(built, tmp_path: Path, name: str, suffix: str) -> None:
    """Counts equal Keras', and the imported run's torch output equals Keras' output."""
    count, x, want, folder, _ = built[name]
    imported = read_keras(folder / f"{name}{suffix}")
    run = write_import(imported, tmp_path / "run")
    loaded = read_run(run)
    assert totals(rows(loaded.graph)).total_params == count
    assert (
        loaded.meta.imported_from.sha256
        == __import__("hashlib").sha256((folder / f"{name}{suffix}").read_bytes()).hexdigest()
    )
    assert (loaded.meta.input_layout == "NHWC") == (name in ("image", "mobile"))
    got = _forward(loaded, x)
    np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("name", ["image", "mobile", "table", "text"])
def test_export_and_predict_match_keras(built, tmp_path: Path, name: str) -> None:
    """`netspec export` of the imported run, then `netspec predict` on the raw inputs (the
    recorded preprocessing applied), gives Keras' outputs."""
    from netspec.predictor import Predictor

    _, x, want, folder, _ = built[name]
    run = tmp_path / "run"
    result = runner.invoke(app, ["import", str(folder / f"{name}.keras"), "-o", str(run)])
    assert result.exit_code == 0, result.output
    assert "Total params" in result.output
    result = runner.invoke(app, ["export", str(run)])
    assert result.exit_code == 0, result.output
    # The arrays Keras took: NHWC images too (the card's input_layout), and channels-first ones.
    answers = Predictor(run / "model.onnx").predict(x)
    if name == "image":
        again = Predictor(run / "model.onnx").predict(_netspec_input(x))
        assert [a["values"] for a in again] == [a["values"] for a in answers]
        sidecar = json.loads((run / "model.onnx.json").read_text())
        assert sidecar["input_layout"] == "NHWC"
    tol = 1e-4 * max(1.0, np.abs(want).max())
    for answer, row in zip(answers, want):
        if "values" in answer:
            np.testing.assert_allclose(np.ravel(answer["values"]), row, atol=tol)
        else:
            top = answer["predictions"][0]
            assert int(top["label"]) == int(np.argmax(row))
            assert abs(top["score"] - row.max()) < tol


def test_spec_is_readable_and_records_its_source(built, tmp_path: Path) -> None:
    folder = built["image"][3]
    result = runner.invoke(
        app, ["import", str(folder / "image.keras"), "-o", str(tmp_path / "r"), "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["input_layout"] == "NHWC"
    assert info["preprocessing"]["scale"] == pytest.approx(1 / 255)
    text = (tmp_path / "r" / "spec.yaml").read_text()
    assert text.startswith("# Imported by netspec")
    assert "# sha256 " in text
    assert "input: [3, 10, 10]" in text
    for name in ("c1", "dw", "sep", "grouped", "dilated", "upconv", "flat"):
        assert f"name: {name}\n" in text
    assert "separable_conv2d: {filters: 6, kernel: 3, padding: same, activation: relu6}" in text


# --- Keras 2 files, written by hand --------------------------------------------------------


def _keras2_file(path: Path, functional: bool) -> dict[str, np.ndarray]:
    """A Keras 2 .h5 file (model_config, model_weights/<layer>/<layer>/kernel:0)."""
    rng = np.random.default_rng(7)
    w = {
        "dense_1": [rng.normal(size=(4, 3)), rng.normal(size=3)],
        "dense_2": [rng.normal(size=(3, 2)), rng.normal(size=2)],
    }
    if functional:
        w["dense_3"] = [rng.normal(size=(4, 2)), rng.normal(size=2)]
        layers = [
            {
                "class_name": "InputLayer",
                "name": "input_1",
                "inbound_nodes": [],
                "config": {"batch_input_shape": [None, 4], "name": "input_1"},
            },
            {
                "class_name": "Dense",
                "name": "dense_1",
                "inbound_nodes": [[["input_1", 0, 0, {}]]],
                "config": {"name": "dense_1", "units": 3, "activation": "relu", "use_bias": True},
            },
            {
                "class_name": "Dense",
                "name": "dense_2",
                "inbound_nodes": [[["dense_1", 0, 0, {}]]],
                "config": {"name": "dense_2", "units": 2, "activation": "linear", "use_bias": True},
            },
            {
                "class_name": "Dense",
                "name": "dense_3",
                "inbound_nodes": [[["input_1", 0, 0, {}]]],
                "config": {"name": "dense_3", "units": 2, "activation": "linear", "use_bias": True},
            },
            {
                "class_name": "Add",
                "name": "add_1",
                "config": {"name": "add_1"},
                "inbound_nodes": [[["dense_2", 0, 0, {}], ["dense_3", 0, 0, {}]]],
            },
        ]
        config = {
            "class_name": "Functional",
            "config": {
                "name": "model",
                "layers": layers,
                "input_layers": [["input_1", 0, 0]],
                "output_layers": [["add_1", 0, 0]],
            },
        }
    else:
        layers = [
            {
                "class_name": "Dense",
                "config": {
                    "name": "dense_1",
                    "units": 3,
                    "activation": "relu",
                    "use_bias": True,
                    "batch_input_shape": [None, 4],
                },
            },
            {
                "class_name": "Dense",
                "config": {"name": "dense_2", "units": 2, "activation": "linear", "use_bias": True},
            },
        ]
        config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["keras_version"] = b"2.13.1"
        g = f.create_group("model_weights")
        for layer, (kernel, bias) in w.items():
            lg = g.create_group(layer)
            lg.attrs["weight_names"] = [f"{layer}/kernel:0".encode(), f"{layer}/bias:0".encode()]
            lg[f"{layer}/kernel:0"] = kernel.astype(np.float32)
            lg[f"{layer}/bias:0"] = bias.astype(np.float32)
    return w


def _keras2_node(node: dict) -> list:
    """A Keras 3 call ({args, kwargs}) as Keras 2 wrote it: [[name, 0, 0, kwargs], ...]."""
    name = lambda t: t["config"]["keras_history"][0]  # noqa: E731
    args = [a for a in node["args"] if isinstance(a, (dict, list))]
    if args and isinstance(args[0], list):  # a merge: one list of tensors
        return [[name(t), 0, 0, {}] for t in args[0]]
    kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if k != "mask"}  # implicit
    if len(args) > 1:  # attention: Keras 2 passed the value as a keyword
        kwargs["value"] = [name(args[1]), 0, 0]
    return [[name(args[0]), 0, 0, kwargs]]


def _as_keras2(model, path: Path) -> None:
    """A Keras 3 model written by hand in Keras 2's .h5 layout: `batch_input_shape`, inbound
    nodes as lists, weights under model_weights/<layer>/<layer>/<var>:0 in `weight_names`."""
    cfg = json.loads(json.dumps(model.get_config()))
    for layer in cfg["layers"]:
        if "batch_shape" in layer["config"]:
            layer["config"]["batch_input_shape"] = layer["config"].pop("batch_shape")
        layer["inbound_nodes"] = [_keras2_node(n) for n in layer.get("inbound_nodes", [])]
    cls = "Sequential" if isinstance(model, keras.Sequential) else "Functional"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": cls, "config": cfg}).encode()
        f.attrs["keras_version"] = b"2.15.0"
        root = f.create_group("model_weights")
        for layer in model.layers:
            group = root.create_group(layer.name)
            names = [f"{layer.name}/{layer.name}/w{i}:0" for i in range(len(layer.weights))]
            group.attrs["weight_names"] = [n.split("/", 1)[1].encode() for n in names]
            for n, v in zip(names, layer.weights):
                group[n.split("/", 1)[1]] = v.value.detach().cpu().numpy()


@pytest.mark.parametrize("name", [m for m in MODELS if m != "mobile"])
def test_keras2_layout_matches_keras(built, tmp_path: Path, name: str) -> None:
    """Each model in Keras 2's .h5 layout imports to the same outputs."""
    _, x, want, _, model = built[name]
    _as_keras2(model, tmp_path / "k2.h5")
    imported = read_keras(tmp_path / "k2.h5")
    assert imported.producer == "keras 2.15.0 (.h5)"
    loaded = read_run(write_import(imported, tmp_path / "run"))
    got = _forward(loaded, x)
    np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("functional", [False, True], ids=["sequential", "functional"])
def test_keras2_h5(tmp_path: Path, functional: bool) -> None:
    w = _keras2_file(tmp_path / "old.h5", functional)
    imported = read_keras(tmp_path / "old.h5")
    assert imported.producer == "keras 2.13.1 (.h5)"
    loaded = read_run(write_import(imported, tmp_path / "run"))
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    want = np.maximum(x @ w["dense_1"][0] + w["dense_1"][1], 0) @ w["dense_2"][0] + w["dense_2"][1]
    if functional:
        want = want + x @ w["dense_3"][0] + w["dense_3"][1]
    with torch.no_grad():
        got = load_module(loaded.graph, loaded.weights)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_mobile_vocabulary_is_imported_as_netspec_kinds(built) -> None:
    """SeparableConv2D is one separable_conv2d, hard_silu and hard_sigmoid are netspec's
    activations (fused where Keras fuses them), a ReLU capped at 4 is a clip."""
    imported = read_keras(built["mobile"][3] / "mobile.keras")
    items = {item["name"]: item for item in imported.spec["layers"]}
    assert items["sep_dm"]["separable_conv2d"] == {
        "filters": 8,
        "kernel": 3,
        "padding": "same",
        "depth_multiplier": 2,
        "bias": False,
    }
    assert items["sep_s2"]["separable_conv2d"]["activation"] == "relu6"
    assert imported.weights["sep_dm.depthwise_weight"].shape == (16, 1, 3, 3)
    assert imported.weights["sep_dm.pointwise_weight"].shape == (8, 16, 1, 1)
    assert "sep_dm.bias" not in imported.weights
    assert items["stem"]["conv2d"]["activation"] == "hard_swish"
    assert items["gate"]["conv2d"]["activation"] == "hard_sigmoid"
    assert items["hswish"]["activation"] == {"fn": "hard_swish"}
    assert items["hsig"]["activation"] == {"fn": "hard_sigmoid"}
    assert items["cap"]["clip"] == {"min": 0.0, "max": 4.0}


def test_keras2_hard_sigmoid_refused(built, tmp_path: Path) -> None:
    """Keras 2's hard_sigmoid is clip(0.2x + 0.5, 0, 1), not netspec's (Keras 3's): refused."""
    _as_keras2(built["mobile"][4], tmp_path / "k2.h5")
    _refused(
        tmp_path / "k2.h5",
        tmp_path,
        "layer 'gate' (Conv2D): activation 'hard_sigmoid' of Keras 2",
        "layer 'hsig' (Activation): activation 'hard_sigmoid' of Keras 2",
    )


def test_keras_mobilenet_v3_imports_with_parity(tmp_path: Path) -> None:
    """keras.applications' MobileNetV3Small: hard_silu activations, and its hard_sigmoid written
    as ops, ReLU(6)(x + 3.0) * (1/6), which becomes netspec's hard_sigmoid; Keras' count and
    logits."""
    keras.utils.set_random_seed(3)
    model = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3),
        alpha=0.75,
        weights=None,
        classes=4,
        include_preprocessing=False,
        classifier_activation=None,
    )
    _randomize(model, 3)
    _save(model, tmp_path / "mnv3.keras")
    x = np.random.default_rng(3).normal(0, 1, (2, 32, 32, 3)).astype(np.float32)
    want = model(x, training=False).detach().cpu().numpy()
    imported = read_keras(tmp_path / "mnv3.keras")
    kinds = [next(iter(item)) for item in imported.spec["layers"]]
    assert kinds.count("hard_sigmoid") == 9  # one per squeeze-excite gate
    loaded = read_run(write_import(imported, tmp_path / "run"))
    assert totals(rows(loaded.graph)).total_params == model.count_params()
    np.testing.assert_allclose(_forward(loaded, x), want, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_other_keras_ops_refused(tmp_path: Path) -> None:
    """An op on a number other than the hard_sigmoid pattern is refused (it used to pass for the
    Add layer of the same class name)."""
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(3, 1, name="c")(inp)
    y = L.ReLU(6.0, name="r")(x + 1.0)
    _save(keras.Model(inp, L.Flatten()(y)), tmp_path / "m.keras")
    _refused(tmp_path / "m.keras", tmp_path, "(ops.Add): the op Add with constants [1.0]")


# --- refusals -------------------------------------------------------------------------------


def _refused(path: Path, tmp_path: Path, *needles: str) -> str:
    """`netspec import` exits 2 with one located message, and writes nothing."""
    out = tmp_path / "never"
    result = runner.invoke(app, ["import", str(path), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
    assert not out.exists()
    return result.output


def test_unsupported_layers_refused_whole(tmp_path: Path) -> None:
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="c")(inp)
    x = L.GaussianNoise(0.1, name="noise_a")(x)
    x = L.GaussianNoise(0.1, name="noise_b")(x)
    x = L.PReLU(name="prelu")(x)
    x = L.Conv2D(4, 1, activation="selu", name="selu_conv")(x)
    out = L.Dense(2)(L.Flatten()(x))
    _save(keras.Model(inp, out), tmp_path / "m.keras")
    text = _refused(
        tmp_path / "m.keras",
        tmp_path,
        "GaussianNoise x2 (noise_a, noise_b)",
        "layer 'prelu' (PReLU): a slope per element (alpha of shape (6, 6, 4))",
        "layer 'selu_conv' (Conv2D): activation 'selu'",
    )
    assert text.startswith(str(tmp_path / "m.keras"))


def test_recurrent_option_refused(tmp_path: Path) -> None:
    inp = keras.Input((5, 3))
    x = L.LSTM(4, recurrent_activation="hard_sigmoid", name="l")(inp)
    _save(keras.Model(inp, L.Dense(1)(x)), tmp_path / "m.h5")
    _refused(tmp_path / "m.h5", tmp_path, "layer 'l' (LSTM): recurrent_activation")


def test_weights_only_refused(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    _save(model, tmp_path / "w.weights.h5", weights_only=True)
    (tmp_path / "w.weights.h5").rename(tmp_path / "w.h5")
    _refused(tmp_path / "w.h5", tmp_path, "no model found in the file: it holds weights only")
    with h5py.File(tmp_path / "k2.h5", "w") as f:  # Keras 2's save_weights layout
        f.attrs["layer_names"] = [b"dense"]
        f.create_group("dense")
    _refused(tmp_path / "k2.h5", tmp_path, "it holds weights only")


def test_bad_files_refused(built, tmp_path: Path) -> None:
    folder = built["table"][3]
    data = (folder / "table.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    _refused(tmp_path / "cut.keras", tmp_path, "cut.keras", "not a readable .keras file")
    with zipfile.ZipFile(tmp_path / "foreign.keras", "w") as zf:
        zf.writestr("notes.txt", "hello")
    _refused(tmp_path / "foreign.keras", tmp_path, "not a Keras model: it has no config.json")
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.zeros(3)
    _refused(tmp_path / "data.h5", tmp_path, "not a Keras model: it has no model_config")
    (tmp_path / "text.h5").write_text("not hdf5")
    _refused(tmp_path / "text.h5", tmp_path, "not a readable HDF5 file")


def _rewrite(source: Path, target: Path, edit) -> None:
    """A copy of a .keras file with its config.json edited."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "config.json":
                data = json.dumps(edit(json.loads(data))).encode()
            zout.writestr(item, data)


def test_custom_and_subclassed_refused(built, tmp_path: Path) -> None:
    source = built["table"][3] / "table.keras"

    def custom(cfg):
        cfg["config"]["layers"][2]["class_name"] = "MyLayer"
        return cfg

    _rewrite(source, tmp_path / "custom.keras", custom)
    _refused(tmp_path / "custom.keras", tmp_path, "MyLayer x1")
    _rewrite(
        source,
        tmp_path / "sub.keras",
        lambda cfg: {"module": "__main__", "class_name": "MyModel", "config": {"name": "m"}},
    )
    _refused(tmp_path / "sub.keras", tmp_path, "a subclassed model (class MyModel)")


def test_open_input_needs_input_shape(tmp_path: Path) -> None:
    inp = keras.Input((None, None, 3))
    _save(keras.Model(inp, L.GlobalAveragePooling2D()(L.Conv2D(2, 3)(inp))), tmp_path / "m.keras")
    _refused(tmp_path / "m.keras", tmp_path, "--input-shape")
    imported = read_keras(tmp_path / "m.keras", (3, 16, 16))
    assert imported.spec["input"] == [3, 16, 16]
    with pytest.raises(NetspecError, match="does not fit"):
        read_keras(tmp_path / "m.keras", (16, 16, 3))


def test_reading_needs_neither_keras_nor_tensorflow(built) -> None:
    """The importer reads the files with h5py, zipfile and json alone."""
    import subprocess
    import sys

    folder = built["text"][3]
    code = (
        "import sys\n"
        "from netspec.backends.importing.keras_import import read_keras\n"
        f"for f in ('text.keras', 'text.h5'): read_keras({str(folder)!r} + '/' + f)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_cli_usage_errors(built, tmp_path: Path) -> None:
    """A bad --input-shape, a folder of the user's own files: one message, exit 2."""
    source = str(built["table"][3] / "table.keras")
    result = runner.invoke(app, ["import", source, "-o", str(tmp_path / "a"), "--input-shape", "x"])
    assert result.exit_code == 2 and "--input-shape 'x'" in result.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["import", source, "-o", str(tmp_path / "mine")])
    assert result.exit_code == 2 and "notes.txt" in result.output
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    # An earlier import is netspec's own: importing again replaces it.
    for _ in range(2):
        result = runner.invoke(app, ["import", source, "-o", str(tmp_path / "again")])
        assert result.exit_code == 0, result.output


def test_run_record_fields_are_checked() -> None:
    from netspec.errors import DataError
    from netspec.run_record import RunMeta, SourceModel

    meta = RunMeta(name="n", input_layout="NHWC", imported_from=SourceModel("m.h5", "ab", "k"))
    assert RunMeta.from_json(meta.to_json()) == meta
    assert "input_layout" not in RunMeta(name="n").to_dict()  # trained runs' records unchanged
    with pytest.raises(DataError, match="input_layout"):
        RunMeta.from_dict({"name": "n", "input_layout": "NCHW"})
    with pytest.raises(DataError, match="imported_from"):
        RunMeta.from_dict({"name": "n", "imported_from": {"file": 3}})


def test_no_guesswork_after_an_unsupported_layer(tmp_path: Path) -> None:
    """After a layer netspec cannot import, the axes are unknown: the layers after it are
    reported for their own options only, never for the axes they would have been given."""
    inp = keras.Input((8, 8, 3))
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(inp))
    x = L.RepeatVector(5, name="repeat")(x)  # (5, 4) in Keras
    x = L.Conv1D(2, 3, name="c1d")(x)
    x = L.Conv1D(2, 1, padding="causal", name="causal")(x)
    _save(keras.Model(inp, x), tmp_path / "m.keras")
    text = _refused(tmp_path / "m.keras", tmp_path, "RepeatVector x1 (repeat)", "'causal'")
    assert "c1d" not in text


def _forget_name(_: str, obj) -> None:
    obj.attrs.pop("name", None)  # returns None: visititems goes on


def _names(f) -> list[str]:
    found: list[str] = []
    f.visititems(lambda key, obj: found.append(key) if "name" in obj.attrs else None)
    return found


def test_keras_file_without_layer_names(built, tmp_path: Path) -> None:
    """Keras 3 versions that record no layer name in model.weights.h5 are read by Keras' own
    group names (the class in snake case and a counter)."""
    _, x, want, folder, _ = built["image"]
    with zipfile.ZipFile(folder / "image.keras") as zin:
        (tmp_path / "w.h5").write_bytes(zin.read("model.weights.h5"))
        with h5py.File(tmp_path / "w.h5", "a") as f:
            f.visititems(_forget_name)
            assert not _names(f)
        with zipfile.ZipFile(tmp_path / "old.keras", "w") as zout:
            for item in zin.namelist():
                data = zin.read(item)
                zout.writestr(
                    item, (tmp_path / "w.h5").read_bytes() if item.endswith(".h5") else data
                )
    loaded = read_run(write_import(read_keras(tmp_path / "old.keras"), tmp_path / "run"))
    np.testing.assert_allclose(_forward(loaded, x), want, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_imported_run_initialises_training(tmp_path: Path) -> None:
    """The imported run is a transfer source: its spec with a train section, the first layer
    frozen, `init: {from: RUN}` trains from Keras' weights."""
    import yaml

    model = keras.Sequential(
        [keras.Input((4,)), L.Dense(8, activation="relu", name="h"), L.Dense(1)]
    )
    _save(model, tmp_path / "reg.keras")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4))
    rows = [",".join(map(str, [*r, r @ [1, 2, 3, 4]])) for r in x]
    (tmp_path / "reg.csv").write_text("a,b,c,d,t\n" + "\n".join(rows) + "\n")
    assert (
        runner.invoke(
            app, ["import", str(tmp_path / "reg.keras"), "-o", str(tmp_path / "run")]
        ).exit_code
        == 0
    )
    spec = yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())
    spec["layers"][0]["trainable"] = False
    spec["train"] = {
        "data": {
            "source": "csv",
            "path": "reg.csv",
            "target": "t",
            "task": "regression",
            "val": 0.2,
        },
        "epochs": 1,
        "loss": "mse",
        "init": {"from": "run"},
        "log": {"pictures": False},  # history.png would take longer than the run
    }
    (tmp_path / "retrain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "retrained"
    result = runner.invoke(app, ["train", str(tmp_path / "retrain.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "init: loaded 2 layers" in result.output
    frozen = read_run(out).weights["h.weight"]
    np.testing.assert_array_equal(frozen, model.get_layer("h").kernel.value.detach().numpy().T)


def test_structures_netspec_cannot_express_are_refused(tmp_path: Path) -> None:
    """Several inputs or outputs and a shared layer: one located message each, exit 2."""
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    _save(keras.Model([a, b], L.Dense(2)(L.Add()([a, b]))), tmp_path / "in.keras")
    inp = keras.Input((4,))
    _save(keras.Model(inp, [L.Dense(2)(inp), L.Dense(3)(inp)]), tmp_path / "out.keras")
    shared = L.Dense(4, name="shared")
    _save(keras.Model(inp, L.Dense(2)(shared(shared(inp)))), tmp_path / "shared.h5")
    for name, words in (
        ("in.keras", "the model has 2 inputs: netspec networks have one input and one output"),
        ("out.keras", "the model has 2 outputs"),
        ("shared.h5", "layer 'shared' is called 2 times (a shared layer)"),
    ):
        text = _refused(tmp_path / name, tmp_path, words)
        assert text.startswith(str(tmp_path / name)) and text.count("error:") == 1


def _nested_models():
    """A functional convnet base inside a Sequential (the transfer-learning pattern), and a
    Sequential inside a functional model inside a functional model."""
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="base_conv")(i)
    x = L.ReLU(name="base_relu")(L.BatchNormalization(name="base_bn")(x))
    base = keras.Model(i, x, name="base")
    outer = keras.Sequential(
        [keras.Input((8, 8, 3)), base, L.GlobalAveragePooling2D(name="gap"), L.Dense(3, name="fc")],
        name="outer",
    )
    mlp = keras.Sequential(
        [keras.Input((4,)), L.Dense(5, activation="relu", name="m1")], name="mlp"
    )
    i2 = keras.Input((4,))
    mid = keras.Model(i2, L.Dense(3, name="mid_out")(mlp(i2)), name="mid")
    i3 = keras.Input((4,))
    top = keras.Model(i3, L.Dense(2, activation="softmax", name="top")(mid(i3)), name="top_model")
    return {"convnet": outer, "deep": top}


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_nested_models_are_inlined(tmp_path: Path, suffix: str) -> None:
    for i, (name, model) in enumerate(_nested_models().items()):
        _randomize(model, i)
        x = np.random.default_rng(i).standard_normal((3, *model.input_shape[1:])).astype("f4")
        want = model(x, training=False).detach().cpu().numpy()
        path = tmp_path / f"{name}{suffix}"
        _save(model, path)
        imported = read_keras(path)
        kinds = [
            next(k for k in item if k not in ("name", "inputs")) for item in imported.spec["layers"]
        ]
        assert "Sequential" not in str(kinds) and "Functional" not in str(kinds)
        run = write_import(imported, tmp_path / f"run_{name}{suffix[1:]}")
        loaded = read_run(run)
        assert totals(rows(loaded.graph)).total_params == model.count_params()
        got = _forward(loaded, x)
        np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max()))
