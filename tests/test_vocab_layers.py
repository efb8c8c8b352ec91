"""The convnet vocabulary (separable_conv2d, clip, hard_sigmoid, hard_swish): Keras' counts by
formula and against Keras 3 itself, torch against Keras with Keras' weights, and the ONNX export
in onnxruntime and OpenCV (HardSwish from opset 14, x * HardSigmoid(x) below)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import netspec
from netspec.errors import SpecError
from netspec.summary import rows, totals

torch = pytest.importorskip("torch")

from helpers import random_weights  # noqa: E402

from netspec.backends.lowering import build_module  # noqa: E402
from netspec.backends.weights import load_module  # noqa: E402


def spec(input_shape: str, *items: str) -> str:
    lines = "\n".join(f"  - {item}" for item in items)
    return f"name: vocab\ninput: {input_shape}\nlayers:\n{lines}\n"


# --- counts by formula ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c", "filters", "kernel", "dm", "bias"),
    [(3, 8, (3, 3), 1, True), (4, 5, (3, 2), 3, False), (1, 2, (1, 1), 2, True)],
)
def test_separable_counts_are_keras_formula(c, filters, kernel, dm, bias) -> None:
    kh, kw = kernel
    args = f"filters: {filters}, kernel: [{kh}, {kw}], depth_multiplier: {dm}, bias: {str(bias).lower()}"
    graph = netspec.compile_text(spec(f"[{c}, 9, 8]", f"separable_conv2d: {{{args}}}"), "<s>")
    (node,) = graph.nodes
    assert node.trainable_params == kh * kw * c * dm + c * dm * filters + (filters if bias else 0)
    assert node.shape == (filters, 9 - kh + 1, 8 - kw + 1)
    spatial = node.shape[1] * node.shape[2]
    assert node.macs == spatial * c * dm * (kh * kw + filters)
    assert set(node.weights) == {"depthwise_weight", "pointwise_weight"} | (
        {"bias"} if bias else set()
    )


def test_parameter_free_kinds_and_same_padding_shape() -> None:
    graph = netspec.compile_text(
        spec(
            "[3, 9, 9]",
            "separable_conv2d: {filters: 4, kernel: 3, stride: 2, padding: same, activation: hard_swish}",
            "clip: {min: -1, max: 1.5}",
            "hard_sigmoid",
            "hard_swish",
            "activation: {fn: hard_sigmoid}",
        ),
        "<s>",
    )
    assert [n.shape for n in graph.nodes] == [(4, 5, 5)] * 5
    assert [n.trainable_params for n in graph.nodes][1:] == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("clip: {min: 2, max: 1}", "min (2) is above max (1)"),
        ("clip: {min: 0}", "max"),
        ("separable_conv2d: {filters: 4, kernel: 3, groups: 2}", "groups"),
        ("separable_conv2d: {filters: 4, kernel: 3, depth_multiplier: 0}", "depth_multiplier"),
        ("activation: {fn: hard_swsh}", "hard_swish"),
    ],
)
def test_bad_arguments_are_one_located_error(item: str, needle: str) -> None:
    with pytest.raises(SpecError) as err:
        netspec.compile_text(spec("[3, 6, 6]", item), "s.yaml")
    assert needle in str(err.value)
    assert "s.yaml:4" in str(err.value)


# --- torch ------------------------------------------------------------------------------------


def test_hard_activations_are_keras3_definitions() -> None:
    """hard_sigmoid = relu6(x + 3) / 6 and hard_swish = x * hard_sigmoid(x), bare and fused."""
    x = torch.linspace(-5, 5, 101).reshape(1, 101)
    graph = netspec.compile_text(
        spec(
            "[101]",
            "hard_sigmoid: {}\n    name: hs",
            "hard_swish: {}\n    inputs: [input]\n    name: hw",
            "clip: {min: -0.5, max: 2}\n    inputs: [input]\n    name: c",
            "concat:\n    inputs: [hs, hw, c]",
        ),
        "<s>",
    )
    got = build_module(graph).eval()(x)
    gate = torch.clamp(x + 3, 0, 6) / 6
    torch.testing.assert_close(got, torch.cat([gate, x * gate, x.clamp(-0.5, 2)], 1))


# --- against Keras 3 (torch backend) ------------------------------------------------------------


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("Keras runs on another backend here")
    return keras


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def test_activations_equal_keras() -> None:
    keras = _keras()
    x = np.linspace(-6, 6, 241, dtype=np.float32).reshape(1, -1)
    graph = netspec.compile_text(
        spec(
            "[241]",
            "hard_sigmoid: {}\n    name: a",
            "hard_swish: {}\n    inputs: [input]\n    name: b",
            "concat:\n    inputs: [a, b]",
        ),
        "<s>",
    )
    got = build_module(graph).eval()(torch.from_numpy(x)).detach().numpy()
    acts = keras.activations
    want = np.concatenate(
        [
            _numpy(acts.hard_sigmoid(x)),
            _numpy(acts.get("hard_swish")(x)),
        ],
        1,
    )
    np.testing.assert_allclose(got, want, atol=1e-7)
    np.testing.assert_allclose(_numpy(acts.hard_silu(x)), want[:, 241:], atol=0)


SEPARABLE = [
    # filters, kernel, stride, padding, dilation, depth_multiplier, bias, activation
    (8, 3, 1, "same", 1, 1, True, "relu6"),
    (5, (3, 2), 2, "same", 1, 2, False, "hard_swish"),
    (4, 3, 2, "valid", 1, 3, True, "hard_sigmoid"),
    (6, 3, 1, "same", 2, 1, True, "linear"),
    (3, 4, 2, "same", 1, 1, True, "relu"),  # even kernel, stride 2: asymmetric SAME pads
]


@pytest.mark.parametrize(
    "case", SEPARABLE, ids=lambda c: f"f{c[0]}k{c[1]}s{c[2]}{c[3]}d{c[4]}m{c[5]}"
)
def test_separable_equals_keras(case) -> None:
    """The count is Keras'; with Keras' weights (the importer's conversion) the output is Keras'."""
    keras = _keras()
    from netspec.backends.importing.keras_weights import keras_tensors

    filters, kernel, stride, padding, dilation, dm, bias, act = case
    keras_act = "hard_silu" if act == "hard_swish" else act
    layer = keras.layers.SeparableConv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        dilation_rate=dilation,
        depth_multiplier=dm,
        use_bias=bias,
        activation=keras_act,
        name="sep",
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((11, 10, 3)), layer])
    rng = np.random.default_rng(1)
    for w in model.weights:
        w.assign(rng.uniform(-0.5, 0.5, w.shape).astype(np.float32))
    k = kernel if isinstance(kernel, int) else list(kernel)
    args = (
        f"filters: {filters}, kernel: {k}, stride: {stride}, padding: {padding}, "
        f"dilation: {dilation}, depth_multiplier: {dm}, bias: {str(bias).lower()}, activation: {act}"
    )
    graph = netspec.compile_text(
        spec("[3, 11, 10]", f"separable_conv2d: {{{args}}}\n    name: sep"), "<s>"
    )
    assert totals(rows(graph)).total_params == model.count_params()
    w = [_numpy(v.value) for v in layer.weights]
    tensors = keras_tensors("SeparableConv2D", layer.get_config(), w)
    module = load_module(graph, {f"sep.{n}": np.ascontiguousarray(a) for n, a in tensors.items()})
    x = rng.normal(0, 1, (2, 11, 10, 3)).astype(np.float32)
    want = _numpy(model(x, training=False)).transpose(0, 3, 1, 2)
    with torch.no_grad():
        got = module(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5)


# --- ONNX: onnxruntime and OpenCV ---------------------------------------------------------------

VOCAB_NET = spec(
    "[3, 12, 12]",
    "separable_conv2d: {filters: 8, kernel: 3, stride: 2, padding: same, depth_multiplier: 2, activation: hard_swish}",
    "batchnorm",
    "hard_swish",
    "batchnorm",
    "separable_conv2d: {filters: 6, kernel: [3, 2], padding: same, bias: false}\n    name: sep2",
    "clip: {min: -0.5, max: 1.25}",
    "batchnorm",
    "global_avgpool2d: {keepdims: true}\n    name: squeeze",
    "conv2d: {filters: 6, kernel: 1, activation: hard_sigmoid}",
    "multiply:\n    inputs: [sep2, conv2d]",
    "separable_conv2d: {filters: 4, kernel: 1, padding: 1}",
    "hard_sigmoid",
    "global_avgpool2d",
    "dense: {units: 3, activation: softmax}",
)


def _randomized(graph):
    weights = random_weights(graph)
    rng = np.random.default_rng(3)
    for key in weights:  # batchnorm statistics far from (0, 1), so a mis-fusion shows
        if key.endswith("running_mean"):
            weights[key] = rng.normal(0, 2, weights[key].shape).astype(np.float32)
    return weights


@pytest.mark.parametrize("opset", [None, 14])
def test_onnx_parity_and_opsets(opset: int | None) -> None:
    pytest.importorskip("onnxruntime")
    from onnx import helper

    from netspec.backends.export.model import check_model, export_onnx
    from netspec.backends.export.parity import check_parity, random_inputs

    graph = netspec.compile_text(VOCAB_NET, "vocab.yaml")
    torch.manual_seed(0)
    weights = _randomized(graph)
    module = load_module(graph, weights)
    model = export_onnx(graph, weights, opset=opset)
    check_model(model, graph)
    ops = [n.op_type for n in model.graph.node]
    assert model.opset_import[0].version == (opset or 13)
    assert ("HardSwish" in ops) == (opset == 14)
    assert ops.count("Clip") == 1 and ops.count("Conv") == 7  # each separable: two Convs
    for node in model.graph.node:
        if node.op_type == "HardSigmoid":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            assert attrs == pytest.approx({"alpha": 1 / 6, "beta": 0.5})
    diffs = check_parity(graph, weights, model, random_inputs(graph), module=module)
    assert max(diffs.values()) < 1e-5


def test_export_refuses_hard_swish_as_one_op_below_14() -> None:
    pytest.importorskip("onnxruntime")
    from netspec.backends.export.opsets import needed_opset

    assert needed_opset(["Conv", "HardSwish"]) == (14, "HardSwish")
    assert needed_opset(["Conv", "HardSigmoid", "Clip"]) == (13, None)


@pytest.mark.parametrize("opset", [None, 14])
def test_opencv_computes_what_onnxruntime_does(opset: int | None) -> None:
    cv2 = pytest.importorskip("cv2")
    ort = pytest.importorskip("onnxruntime")
    from netspec.backends.export.model import export_onnx

    graph = netspec.compile_text(VOCAB_NET, "vocab.yaml")
    data = export_onnx(graph, _randomized(graph), opset=opset).SerializeToString()
    x = np.random.default_rng(2).standard_normal((3, *graph.input_shape)).astype(np.float32) * 3
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": x})[0]
    net = cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8))
    net.setInput(x)
    actual = np.asarray(net.forward()).reshape(expected.shape)
    assert float(np.abs(expected - actual).max()) <= 1e-4
    np.testing.assert_array_equal(actual.argmax(1), expected.argmax(1))


# OpenCV DNN 5.1 rewrites HardSigmoid -> Mul as a HardSwish of the HardSigmoid's input, whatever
# the Mul's other operand: the exporter puts an Identity between them (not in x * HardSigmoid(x)).
HARD_SIGMOID_THEN_MUL = {
    "squeeze_excite": (
        "conv2d: {filters: 4, kernel: 3}\n    name: a",
        "global_avgpool2d: {keepdims: true}",
        "conv2d: {filters: 4, kernel: 1, activation: hard_sigmoid}\n    name: g",
        "multiply:\n    inputs: [a, g]",
    ),
    "batchnorm": ("conv2d: {filters: 4, kernel: 3, activation: hard_sigmoid}", "batchnorm"),
    "gelu": ("hard_sigmoid", "gelu"),
    "silu": ("hard_sigmoid", "silu"),
    "hard_swish": ("hard_sigmoid", "hard_swish"),
}


@pytest.mark.parametrize("name", sorted(HARD_SIGMOID_THEN_MUL))
def test_opencv_hard_sigmoid_mul_fusion_is_written_around(name: str) -> None:
    cv2 = pytest.importorskip("cv2")
    ort = pytest.importorskip("onnxruntime")
    from netspec.backends.export.model import export_onnx

    graph = netspec.compile_text(spec("[3, 6, 6]", *HARD_SIGMOID_THEN_MUL[name], "flatten"), "s")
    model = export_onnx(graph, _randomized(graph))
    ops = [n.op_type for n in model.graph.node]
    assert "Identity" in ops
    data = model.SerializeToString()
    x = np.random.default_rng(2).standard_normal((3, *graph.input_shape)).astype(np.float32) * 3
    expected = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )[0]
    net = cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8))
    net.setInput(x)
    actual = np.asarray(net.forward())
    assert actual.shape == expected.shape
    assert float(np.abs(expected - actual).max()) <= 1e-4


def test_hard_swish_below_14_keeps_its_pattern() -> None:
    """x * HardSigmoid(x) is left as it is: OpenCV and onnx importers read it as a HardSwish."""
    from netspec.backends.export.model import export_onnx

    graph = netspec.compile_text(spec("[3, 6, 6]", "hard_swish"), "s")
    model = export_onnx(graph, {})
    assert [n.op_type for n in model.graph.node] == ["HardSigmoid", "Mul"]


def test_regularize_covers_both_separable_kernels() -> None:
    """`train.regularize` on a separable_conv2d penalises its depthwise and pointwise kernels
    (Keras' depthwise_ and pointwise_regularizer), never its bias."""
    from types import SimpleNamespace

    from netspec.backends.training.objective import regularizers

    graph = netspec.compile_text(
        spec("[3, 6, 6]", "separable_conv2d: {filters: 4, kernel: 3}\n    name: sep"), "s"
    )
    module = build_module(graph)
    rule = SimpleNamespace(layers=["sep"], l1=0.0, l2=0.5)
    found = regularizers(module, [rule])
    sep = module.layer("sep")
    assert {id(p) for p, _, _ in found} == {id(sep.depthwise_weight), id(sep.pointwise_weight)}
