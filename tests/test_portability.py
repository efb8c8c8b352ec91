"""A second, independent consumer of the exported models: OpenCV's DNN module reads them and
computes what onnxruntime computes (within 1e-4, the same argmax labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from helpers import BIG_SPECS, needs_digits, plain_specs, random_weights  # noqa: E402

import netspec  # noqa: E402
from netspec.backends.export.model import export_onnx  # noqa: E402
from netspec.backends.export.parity import random_inputs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4
# Every op the exporter emits, beyond those of specs/: padding, strided/grouped/dilated convs,
# unfolded batchnorm, avg pooling with same padding, transposed convs, both resize modes, crop
# (Slice), concat, add, reshape + dense on a rank-2 value (MatMul), layernorm, and the
# activations (SiLU, ReLU6 = Clip, GELU = Erf below opset 20, Gelu from 20, leaky ReLU).
ZOO = {
    "zoo2d": """
name: zoo2d
input: [3, 16, 16]
layers:
  - zeropad2d: {padding: [1, 0, 2, 1]}
  - conv2d: {filters: 8, kernel: 3, stride: 2, padding: same, activation: leaky_relu}
  - batchnorm
  - avgpool2d: {size: 3, stride: 1, padding: same}
  - conv2d: {filters: 8, kernel: 3, groups: 2, dilation: 2, padding: same, activation: silu}
    name: a
  - conv_transpose2d: {filters: 4, kernel: 2, stride: 2, activation: relu6}
    name: up
  - upsample2d: {scale: 2, mode: bilinear}
    inputs: [a]
  - conv2d: {filters: 4, kernel: 1, activation: gelu}
    name: bil
  - concat:
    inputs: [up, bil]
  - crop2d: {to: a}
  - add:
    inputs: [crop2d, a]
  - upsample2d: {scale: 2}
  - maxpool2d: {size: 3, stride: 2, padding: same}
  - reshape: {shape: [8, -1]}
  - dense: {units: 5, activation: tanh}
  - flatten
  - layernorm
  - dense: {units: 4, activation: softmax}
""",
    "zoo1d": """
name: zoo1d
input: [4, 32]
layers:
  - conv1d: {filters: 8, kernel: 5, padding: same, activation: relu}
  - batchnorm
  - maxpool1d: {size: 2}
  - conv1d: {filters: 8, kernel: 3, stride: 2, activation: tanh}
  - avgpool1d: {size: 2}
    name: feat
  - global_avgpool1d:
    name: gap
  - global_maxpool1d:
    inputs: [feat]
    name: gmp
  - concat:
    inputs: [gap, gmp]
  - dense: {units: 6}
  - sigmoid
""",
}
# The full-size U-Net takes seconds in OpenCV, AlexNet (BIG_SPECS) a minute; their ops are all in
# zoo2d and the other specs.
SPECS = [p for p in plain_specs() if p.name != "unet.yaml" and p.stem not in BIG_SPECS]


def both(model: bytes | Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(onnxruntime's output, OpenCV's output) for the batch x."""
    data = model if isinstance(model, bytes) else model.read_bytes()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": x})[0]
    net = cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8))
    assert list(net.getUnconnectedOutLayersNames()) == [session.get_outputs()[0].name]
    net.setInput(x)
    return expected, np.asarray(net.forward()).reshape(expected.shape)


def agree(expected: np.ndarray, actual: np.ndarray) -> float:
    diff = float(np.abs(expected.astype(np.float64) - actual).max())
    assert diff <= TOLERANCE, f"OpenCV differs from onnxruntime by {diff:.2e}"
    return diff


def test_opencv_runs_the_trained_quickstart(quickstart_onnx: Path) -> None:
    needs_digits()
    from netspec.data.builtin import load_builtin

    data = load_builtin("digits")
    x = np.ascontiguousarray(data.x[:64] * np.float32(0.0625))  # the recorded rescale
    expected, actual = both(quickstart_onnx, x)
    agree(expected, actual)
    labels = expected.argmax(1)
    np.testing.assert_array_equal(actual.argmax(1), labels)
    assert len(set(labels)) >= 5  # a trained model: the labels are not all one class
    # Fed as in training: the one-epoch quickstart gets 0.78-0.86 of these 64 right over seeds
    # 0-2 (chance: 0.1), so 0.5 leaves a wide margin for another machine or torch build.
    assert (labels == data.y[:64]).mean() > 0.5


@pytest.mark.parametrize("fp16", [False, True])
def test_opencv_runs_mnist_cnn(fp16: bool) -> None:
    graph = netspec.compile_file(REPO / "specs" / "mnist_cnn.yaml")
    data = export_onnx(graph, random_weights(graph), fp16=fp16).SerializeToString()
    x = np.random.default_rng(1).standard_normal((8, 1, 28, 28)).astype(np.float32)
    expected, actual = both(data, x)  # float16 inside, float32 in and out: both runtimes
    agree(expected, actual)
    np.testing.assert_array_equal(actual.argmax(1), expected.argmax(1))
    assert len(set(expected.argmax(1))) > 1


@pytest.mark.parametrize(
    ("name", "opset"),
    [*((p.stem, None) for p in SPECS), ("zoo2d", None), ("zoo2d", 20), ("zoo1d", None)],
)
def test_opencv_reads_every_op(name: str, opset: int | None) -> None:
    if name in ZOO:
        graph = netspec.compile_text(ZOO[name], f"{name}.yaml")
    else:
        graph = netspec.compile_file(REPO / "specs" / f"{name}.yaml")
    model = export_onnx(graph, random_weights(graph), opset=opset)
    if name == "zoo2d":
        ops = {n.op_type for n in model.graph.node}
        assert {"Resize", "Slice", "ConvTranspose", "LayerNormalization", "MatMul", "Pad"} <= ops
        assert ("Gelu" in ops) == (opset == 20) and "BatchNormalization" in ops
    # Normal draws, or valid token ids where an embedding reads the input.
    x = next(iter(random_inputs(graph, 3, seed=2).values()))
    expected, actual = both(model.SerializeToString(), x)
    agree(expected, actual)
    assert np.isfinite(expected).all()
    if expected.ndim == 2 and expected.shape[1] > 1:  # classifiers: the same labels
        np.testing.assert_array_equal(actual.argmax(1), expected.argmax(1))


# Two patterns OpenCV DNN 5.0 computes wrongly, which the exporter writes around: a 1x1 Conv
# with pads (garbage, ~1e10), and a BatchNormalization after Sigmoid/Tanh/SiLU (errors ~1-3).
PITFALLS = {
    "pad1x1": """
name: pad1x1
input: [3, 6, 6]
layers:
  - conv2d: {filters: 4, kernel: 1, padding: 1, activation: relu}
  - conv2d: {filters: 4, kernel: [1, 3], padding: same}
  - flatten
""",
    "pad1x1_1d": """
name: pad1x1_1d
input: [3, 10]
layers:
  - conv1d: {filters: 4, kernel: 1, padding: 2}
  - flatten
""",
    **{
        f"{act}_bn": f"""
name: {act}_bn
input: [3, 8, 8]
layers:
  - conv2d: {{filters: 4, kernel: 3, activation: {act}}}
  - batchnorm
  - conv2d: {{filters: 4, kernel: 3}}
  - {act}
  - batchnorm
  - flatten
"""
        for act in ("sigmoid", "tanh", "silu")
    },
}


@pytest.mark.parametrize("name", sorted(PITFALLS))
def test_opencv_pitfalls_are_written_around(name: str) -> None:
    graph = netspec.compile_text(PITFALLS[name], f"{name}.yaml")
    weights = random_weights(graph)
    rng = np.random.default_rng(3)
    for key in weights:  # batchnorm statistics far from (0, 1), so a mis-fusion shows
        if key.endswith("running_mean"):
            weights[key] = rng.normal(0, 2, weights[key].shape).astype(np.float32)
    model = export_onnx(graph, weights)
    ops = [n.op_type for n in model.graph.node]
    if name.startswith("pad1x1"):
        assert ops[:2] == ["Pad", "Conv"] and ops.count("Pad") == 1  # only the 1x1 one
    else:
        assert "BatchNormalization" not in ops
    x = rng.standard_normal((3, *graph.input_shape)).astype(np.float32)
    expected, actual = both(model.SerializeToString(), x)
    agree(expected, actual)
