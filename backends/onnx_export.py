"""Export a compiled netspec graph and its weights to ONNX, straight from the IR.

The IR already knows every op, shape and padding, so the ONNX graph is written node by node with
the onnx helper API (no tracing, no torch.onnx): padding is the IR's resolved (begin, end) pads,
tensor names are the spec's layer names, and the same graph and weights always give the same bytes.

Conventions (the same as the PyTorch lowering, backends/lowering/):
- The input is called `input`, the output is named after the spec's last layer; the batch axis is
  a dimension called `batch` unless a fixed batch size is asked for.
- Initializers are named like the weights, `<layer>.<tensor>`; a dense layer on a rank > 1 input
  stores its kernel transposed for MatMul, as `<layer>.weight_t`.
- Dropout (and `activation: linear`) disappear. A batchnorm is folded into the convolution or
  dense layer before it when that layer has no activation and feeds only the batchnorm
  (W' = W*g, b' = (b - mean)*g + beta with g = gamma/sqrt(var + eps), per output channel), else
  into the dense layer or unpadded convolution after it when it feeds only that one (W' = W*g per
  input channel, b' = b + W.(beta - mean*g)); otherwise it stays a BatchNormalization.
- Below opset 20, GELU is written out as 0.5*x*(1 + erf(x/sqrt(2))) (or its tanh form).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netspec import __version__
from netspec.data.pipeline import apply_values
from netspec.errors import NetspecError
from netspec.fileio import atomic_path
from netspec.ir import Graph, Node
from netspec.layers import (
    GELU,
    Activation,
    Add,
    AvgPool1D,
    AvgPool2D,
    BatchNorm,
    Concat,
    Conv1D,
    Conv2D,
    ConvTranspose2D,
    Crop2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    Layer,
    LayerNorm,
    LeakyReLU,
    MaxPool1D,
    MaxPool2D,
    ReLU,
    ReLU6,
    Reshape,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    Upsample2D,
    ZeroPad2D,
)
from netspec.layers.activations import LEAKY_RELU_SLOPE
from netspec.layers.conv import windows
from netspec.runs import Run, check_weights, load_run
from netspec.shapes import Window
from netspec.spec import INPUT

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise NetspecError("ONNX export needs the onnx package: pip install onnx onnxruntime") from exc

DEFAULT_OPSET = 17
MIN_OPSET = 17  # LayerNormalization is an ONNX op from opset 17
INPUT_NAME = "input"
BATCH_PARAM = "batch"
WEIGHTED = (Dense, Conv1D, Conv2D, ConvTranspose2D)


class ExportError(NetspecError):
    """The model cannot be exported, or the exported model fails a check."""


# --- weights and batchnorm folding ---------------------------------------------------------------


def _is_identity(node: Node) -> bool:
    """Nodes that compute nothing at inference time."""
    return isinstance(node.layer, Dropout) or (
        isinstance(node.layer, Activation) and node.layer.fn == "linear"
    )


@dataclass
class FoldPlan:
    """Effective (folded) weights per weighted node, in float64, and what was folded where."""

    tensors: dict[str, dict[str, np.ndarray | None]]
    folded: dict[str, str]  # batchnorm name -> the layer it was folded into


def plan_folding(graph: Graph, weights: dict[str, np.ndarray], fold: bool = True) -> FoldPlan:
    """Decide which batchnorms fold into which layer and compute the folded weights."""
    tensors: dict[str, dict[str, np.ndarray | None]] = {}
    for node in graph.nodes:
        if isinstance(node.layer, WEIGHTED):
            bias = weights.get(f"{node.name}.bias") if node.layer.bias else None
            tensors[node.name] = {
                "weight": np.asarray(weights[f"{node.name}.weight"], dtype=np.float64),
                "bias": None if bias is None else np.asarray(bias, dtype=np.float64),
            }
    plan = FoldPlan(tensors, {})
    if not fold:
        return plan
    by_name = {n.name: n for n in graph.nodes}
    consumers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    output = graph.output.name

    def uses(name: str) -> tuple[list[Node], bool]:
        """Non-identity readers of a value (through dropouts), and whether it is the output."""
        found, is_output, stack = [], name == output, [name]
        while stack:
            for c in consumers.get(stack.pop(), []):
                if _is_identity(c):
                    is_output |= c.name == output
                    stack.append(c.name)
                else:
                    found.append(c)
        return found, is_output

    def source(name: str) -> str:
        while name != INPUT and _is_identity(by_name[name]):
            name = by_name[name].inputs[0]
        return name

    for bn in graph.nodes:
        if not isinstance(bn.layer, BatchNorm):
            continue
        gamma, beta, mean, var = (
            np.asarray(weights[f"{bn.name}.{t}"], dtype=np.float64)
            for t in ("weight", "bias", "running_mean", "running_var")
        )
        g = gamma / np.sqrt(var + bn.layer.eps)
        shift = beta - mean * g
        src = source(bn.inputs[0])
        producer = by_name.get(src) if src != INPUT else None
        if producer is not None and _folds_back(producer, bn, uses):
            t = tensors[producer.name]
            axis = 1 if isinstance(producer.layer, ConvTranspose2D) else 0
            view = [1] * t["weight"].ndim  # type: ignore[union-attr]
            view[axis] = -1
            t["weight"] = t["weight"] * g.reshape(view)  # type: ignore[operator]
            t["bias"] = (0.0 if t["bias"] is None else t["bias"]) * g + shift
            plan.folded[bn.name] = producer.name
            continue
        readers, is_output = uses(bn.name)
        if len(readers) == 1 and not is_output and _folds_forward(readers[0], bn):
            reader = readers[0]
            t = tensors[reader.name]
            w: np.ndarray = t["weight"]  # type: ignore[assignment]
            groups = getattr(reader.layer, "groups", 1)
            per_group = w.shape[1]
            # The input channel each (output channel, kernel input channel) pair reads.
            channel = (np.arange(w.shape[0]) // (w.shape[0] // groups))[:, None] * per_group
            channel = channel + np.arange(per_group)[None, :]
            view = (*channel.shape, *(1,) * (w.ndim - 2))
            t["weight"] = w * g[channel].reshape(view)
            extra = (w * shift[channel].reshape(view)).reshape(w.shape[0], -1).sum(axis=1)
            t["bias"] = extra if t["bias"] is None else t["bias"] + extra
            plan.folded[bn.name] = reader.name
    return plan


def _folds_back(producer: Node, bn: Node, uses: Callable[[str], tuple[list[Node], bool]]) -> bool:
    layer = producer.layer
    if not isinstance(layer, WEIGHTED) or layer.activation != "linear":
        return False
    if isinstance(layer, Dense) and len(producer.shape) != 1:
        return False  # batchnorm normalizes axis 0, dense's units are the last axis
    readers, is_output = uses(producer.name)
    return not is_output and len(readers) == 1 and readers[0] is bn


def _folds_forward(reader: Node, bn: Node) -> bool:
    layer = reader.layer
    if isinstance(layer, Dense):
        return len(reader.input_shapes[0]) == 1
    if isinstance(layer, (Conv1D, Conv2D)):
        # Padding cells would be zeros, not the batchnorm's shift: only unpadded windows fold.
        return all(
            w.pad_begin == 0 and w.pad_end == 0 for w in windows(layer, reader.input_shapes[0][1:])
        )
    return False


# --- the emitter ---------------------------------------------------------------------------------


class _Emitter:
    """Collects ONNX nodes and initializers with unique names."""

    def __init__(
        self, graph: Graph, plan: FoldPlan, weights: dict[str, np.ndarray], opset: int, fp16: bool
    ) -> None:
        self.graph = graph
        self.plan = plan
        self.weights = weights
        self.opset = opset
        self.fp16 = fp16
        self.float = np.float16 if fp16 else np.float32
        self.elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.taken: set[str] = {INPUT_NAME, *(n.name for n in graph.nodes)}
        self.node_names: set[str] = set()
        self.values: dict[str, str] = {INPUT: INPUT_NAME}  # layer name -> its tensor
        self.consts: dict[tuple[float, str], str] = {}

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            name = f"{base}_{k}"
            k += 1
        self.taken.add(name)
        return name

    def init(self, base: str, array: np.ndarray, dtype: Any = None) -> str:
        """An initializer, floats in the model's precision unless `dtype` says otherwise."""
        array = np.asarray(array)
        if dtype is None:
            dtype = self.float if array.dtype.kind == "f" else array.dtype
        name = base if base not in self.taken else self.fresh(base)
        self.taken.add(name)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def ints(self, base: str, values: Sequence[int]) -> str:
        return self.init(base, np.asarray(values, dtype=np.int64))

    def const(self, value: float) -> str:
        """A shared scalar constant in the model's float type."""
        key = (float(value), "f")
        if key not in self.consts:
            self.consts[key] = self.init(f"const/{value:g}", np.asarray(value))
        return self.consts[key]

    def op(self, op_type: str, inputs: Sequence[str], out: str, layer: str, **attrs: Any) -> str:
        name, k = f"{layer}/{op_type}", 1
        while name in self.node_names:
            name = f"{layer}/{op_type}_{k}"
            k += 1
        self.node_names.add(name)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=name, **attrs))
        return out

    def tensor(self, node: Node, name: str) -> np.ndarray:
        return np.asarray(self.weights[f"{node.name}.{name}"])

    def activation(
        self,
        fn: str,
        x: str,
        out: str,
        layer: str,
        *,
        axis: int = 1,
        slope: float = LEAKY_RELU_SLOPE,
        approximate: str = "none",
    ) -> str:
        """Write activation `fn` of tensor x into `out` ('linear' must be handled by the caller)."""
        simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
        if fn in simple:
            return self.op(simple[fn], [x], out, layer)
        if fn == "leaky_relu":
            return self.op("LeakyRelu", [x], out, layer, alpha=float(slope))
        if fn == "softmax":
            return self.op("Softmax", [x], out, layer, axis=axis)
        if fn == "silu":
            s = self.op("Sigmoid", [x], self.fresh(f"{layer}/sigmoid"), layer)
            return self.op("Mul", [x, s], out, layer)
        if fn == "relu6":
            return self.op("Clip", [x, self.const(0.0), self.const(6.0)], out, layer)
        if fn == "gelu":
            return self.gelu(x, out, layer, approximate)
        raise AssertionError(f"unknown activation {fn!r}")  # ACTIVATIONS lists every name

    def gelu(self, x: str, out: str, layer: str, approximate: str) -> str:
        if self.opset >= 20:
            return self.op("Gelu", [x], out, layer, approximate=approximate)

        def tmp(what: str) -> str:
            return self.fresh(f"{layer}/gelu_{what}")

        if approximate == "tanh":  # 0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3)))
            sq = self.op("Mul", [x, x], tmp("x2"), layer)
            cube = self.op("Mul", [sq, x], tmp("x3"), layer)
            scaled = self.op("Mul", [cube, self.const(0.044715)], tmp("c"), layer)
            inner = self.op("Add", [x, scaled], tmp("inner"), layer)
            arg = self.op("Mul", [inner, self.const(math.sqrt(2.0 / math.pi))], tmp("arg"), layer)
            t = self.op("Tanh", [arg], tmp("tanh"), layer)
        else:  # 0.5*x*(1 + erf(x/sqrt(2)))
            arg = self.op("Mul", [x, self.const(1.0 / math.sqrt(2.0))], tmp("arg"), layer)
            t = self.op("Erf", [arg], tmp("erf"), layer)
        one = self.op("Add", [t, self.const(1.0)], tmp("1p"), layer)
        half = self.op("Mul", [x, self.const(0.5)], tmp("half"), layer)
        return self.op("Mul", [half, one], out, layer)

    def fused(self, node: Node, op_type: str, inputs: list[str], *, axis: int, **attrs: Any) -> str:
        """A weighted op followed by the layer's `activation:` (if any); output named like the layer."""
        act = node.layer.activation  # type: ignore[attr-defined]
        if act == "linear":
            return self.op(op_type, inputs, node.name, node.name, **attrs)
        y = self.op(op_type, inputs, self.fresh(f"{node.name}/linear"), node.name, **attrs)
        return self.activation(act, y, node.name, node.name, axis=axis)

    def weight_inputs(
        self, node: Node, weight: np.ndarray | None = None, name: str = "weight"
    ) -> list[str]:
        t = self.plan.tensors[node.name]
        w = t["weight"] if weight is None else weight
        inputs = [self.init(f"{node.name}.{name}", w)]  # type: ignore[arg-type]
        if t["bias"] is not None:
            inputs.append(self.init(f"{node.name}.bias", t["bias"]))
        return inputs


# --- one function per layer kind -----------------------------------------------------------------

Emit = Callable[[_Emitter, Node, list[str]], str]


def _pads(wins: Sequence[Window]) -> list[int]:
    return [w.pad_begin for w in wins] + [w.pad_end for w in wins]


def emit_dense(em: _Emitter, node: Node, xs: list[str]) -> str:
    if len(node.input_shapes[0]) == 1:
        return em.fused(node, "Gemm", [xs[0], *em.weight_inputs(node)], axis=-1, transB=1)
    t = em.plan.tensors[node.name]
    w = em.init(f"{node.name}.weight_t", t["weight"].T)  # type: ignore[union-attr]
    if t["bias"] is None:
        return em.fused(node, "MatMul", [xs[0], w], axis=-1)
    y = em.op("MatMul", [xs[0], w], em.fresh(f"{node.name}/matmul"), node.name)
    return em.fused(node, "Add", [y, em.init(f"{node.name}.bias", t["bias"])], axis=-1)


def emit_conv(em: _Emitter, node: Node, xs: list[str]) -> str:
    layer: Conv1D | Conv2D = node.layer  # type: ignore[assignment]
    wins = windows(layer, node.input_shapes[0][1:])
    return em.fused(
        node,
        "Conv",
        [xs[0], *em.weight_inputs(node)],
        axis=1,
        kernel_shape=list(layer.kernel),
        strides=list(layer.stride),
        dilations=list(layer.dilation),
        pads=_pads(wins),
        group=layer.groups,
    )


def emit_conv_transpose(em: _Emitter, node: Node, xs: list[str]) -> str:
    layer: ConvTranspose2D = node.layer  # type: ignore[assignment]
    begins, ends, extra = [], [], []
    for b, e in layer.pads():
        begins.append(b)
        ends.append(max(e, 0))
        extra.append(max(-e, 0))  # a negative end grows the output: output padding
    given = layer.output_padding or (0, 0)
    return em.fused(
        node,
        "ConvTranspose",
        [xs[0], *em.weight_inputs(node)],
        axis=1,
        kernel_shape=list(layer.kernel),
        strides=list(layer.stride),
        dilations=list(layer.dilation),
        pads=begins + ends,
        output_padding=[g + x for g, x in zip(given, extra)],
    )


def _window_counts(w: Window, n: int) -> np.ndarray:
    """Per output position along one axis: how many window cells fall inside the input."""
    starts = np.arange(w.out(n)) * w.stride - w.pad_begin
    return np.minimum(starts + w.size, n) - np.maximum(starts, 0)


def emit_pool(em: _Emitter, node: Node, xs: list[str]) -> str:
    layer = node.layer
    spatial = node.input_shapes[0][1:]
    wins = windows(layer, spatial)
    is_max = isinstance(layer, (MaxPool1D, MaxPool2D))
    attrs: dict[str, Any] = {
        "kernel_shape": [w.size for w in wins],
        "strides": [w.stride for w in wins],
    }
    if all(w.pad_begin < w.size and w.pad_end < w.size for w in wins):
        if is_max:
            return em.op("MaxPool", xs, node.name, node.name, pads=_pads(wins), **attrs)
        return em.op(
            "AveragePool", xs, node.name, node.name, pads=_pads(wins), count_include_pad=0, **attrs
        )
    # A pad as large as the window (an explicit integer padding): ONNX pools refuse it, so pad
    # first (-inf for max), pool unpadded, and rescale averages by the real cells per window.
    zeros = [0, 0]
    pads = em.ints(
        f"{node.name}/pads", zeros + [w.pad_begin for w in wins] + zeros + [w.pad_end for w in wins]
    )
    fill = em.const(-math.inf if is_max else 0.0)
    padded = em.op("Pad", [xs[0], pads, fill], em.fresh(f"{node.name}/padded"), node.name)
    if is_max:
        return em.op("MaxPool", [padded], node.name, node.name, **attrs)
    pooled = em.op("AveragePool", [padded], em.fresh(f"{node.name}/pooled"), node.name, **attrs)
    scale = np.ones(())
    with np.errstate(divide="ignore"):  # a window of padding only: inf, as in PyTorch
        for w, n in zip(wins, spatial):
            scale = scale[..., None] * (w.size / _window_counts(w, n))
    return em.op("Mul", [pooled, em.init(f"{node.name}/divisor", scale)], node.name, node.name)


def emit_global_pool(em: _Emitter, node: Node, xs: list[str]) -> str:
    layer = node.layer
    op = (
        "GlobalAveragePool"
        if isinstance(layer, (GlobalAvgPool1D, GlobalAvgPool2D))
        else "GlobalMaxPool"
    )
    if layer.keepdims:  # type: ignore[attr-defined]
        return em.op(op, xs, node.name, node.name)
    y = em.op(op, xs, em.fresh(f"{node.name}/pooled"), node.name)
    return em.op("Flatten", [y], node.name, node.name, axis=1)


def emit_reshape(em: _Emitter, node: Node, xs: list[str]) -> str:
    shape = em.ints(f"{node.name}/shape", [0, *node.shape])  # 0: keep the batch size
    return em.op("Reshape", [xs[0], shape], node.name, node.name)


def emit_batchnorm(em: _Emitter, node: Node, xs: list[str]) -> str:
    if node.name in em.plan.folded:
        return xs[0]
    layer: BatchNorm = node.layer  # type: ignore[assignment]
    inputs = [xs[0]] + [
        em.init(f"{node.name}.{t}", em.tensor(node, t))
        for t in ("weight", "bias", "running_mean", "running_var")
    ]
    return em.op("BatchNormalization", inputs, node.name, node.name, epsilon=float(layer.eps))


def emit_layernorm(em: _Emitter, node: Node, xs: list[str]) -> str:
    layer: LayerNorm = node.layer  # type: ignore[assignment]
    inputs = [xs[0]] + [em.init(f"{node.name}.{t}", em.tensor(node, t)) for t in ("weight", "bias")]
    return em.op(
        "LayerNormalization", inputs, node.name, node.name, axis=-1, epsilon=float(layer.eps)
    )


def _act(fn: str, **kw: Any) -> Emit:
    def emit(em: _Emitter, node: Node, xs: list[str]) -> str:
        return em.activation(fn, xs[0], node.name, node.name, **kw)

    return emit


def emit_activation(em: _Emitter, node: Node, xs: list[str]) -> str:
    fn = node.layer.fn  # type: ignore[attr-defined]
    if fn == "linear":
        return xs[0]
    return em.activation(fn, xs[0], node.name, node.name, axis=1)


def _dim(axis: int, rank: int) -> int:
    """ONNX axis of a per-sample axis (the batch is axis 0)."""
    return axis % rank + 1


def emit_softmax(em: _Emitter, node: Node, xs: list[str]) -> str:
    axis = _dim(node.layer.axis, len(node.shape))  # type: ignore[attr-defined]
    return em.activation("softmax", xs[0], node.name, node.name, axis=axis)


def emit_upsample(em: _Emitter, node: Node, xs: list[str]) -> str:
    layer: Upsample2D = node.layer  # type: ignore[assignment]
    scales = em.init(
        f"{node.name}/scales", np.array([1, 1, *layer.scale], dtype=np.float32), np.float32
    )
    if layer.mode == "bilinear":  # torch's align_corners=False
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    else:  # torch's nearest: source index floor(i / scale)
        attrs = {
            "mode": "nearest",
            "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor",
        }
    return em.op("Resize", [xs[0], "", scales], node.name, node.name, **attrs)


def emit_zeropad(em: _Emitter, node: Node, xs: list[str]) -> str:
    top, bottom, left, right = node.layer.padding  # type: ignore[attr-defined]
    pads = em.ints(f"{node.name}/pads", [0, 0, top, left, 0, 0, bottom, right])
    return em.op("Pad", [xs[0], pads], node.name, node.name, mode="constant")


def emit_crop(em: _Emitter, node: Node, xs: list[str]) -> str:
    layer: Crop2D = node.layer  # type: ignore[assignment]
    top, left = layer.offsets(node.input_shapes[0], node.shape)
    starts = em.ints(f"{node.name}/starts", [top, left])
    ends = em.ints(f"{node.name}/ends", [top + node.shape[1], left + node.shape[2]])
    axes = em.ints(f"{node.name}/axes", [2, 3])
    return em.op("Slice", [xs[0], starts, ends, axes], node.name, node.name)


def emit_concat(em: _Emitter, node: Node, xs: list[str]) -> str:
    axis = _dim(node.layer.axis, len(node.shape))  # type: ignore[attr-defined]
    return em.op("Concat", xs, node.name, node.name, axis=axis)


def emit_add(em: _Emitter, node: Node, xs: list[str]) -> str:
    return em.op("Add" if len(xs) == 2 else "Sum", xs, node.name, node.name)


EXPORTS: dict[type[Layer], Emit] = {
    Dense: emit_dense,
    Conv1D: emit_conv,
    Conv2D: emit_conv,
    ConvTranspose2D: emit_conv_transpose,
    MaxPool1D: emit_pool,
    MaxPool2D: emit_pool,
    AvgPool1D: emit_pool,
    AvgPool2D: emit_pool,
    GlobalAvgPool1D: emit_global_pool,
    GlobalAvgPool2D: emit_global_pool,
    GlobalMaxPool1D: emit_global_pool,
    GlobalMaxPool2D: emit_global_pool,
    Flatten: lambda em, node, xs: em.op("Flatten", xs, node.name, node.name, axis=1),
    Reshape: emit_reshape,
    Dropout: lambda em, node, xs: xs[0],
    BatchNorm: emit_batchnorm,
    LayerNorm: emit_layernorm,
    Activation: emit_activation,
    ReLU: _act("relu"),
    LeakyReLU: lambda em, node, xs: em.activation(
        "leaky_relu",
        xs[0],
        node.name,
        node.name,
        slope=node.layer.negative_slope,  # type: ignore[attr-defined]
    ),
    Sigmoid: _act("sigmoid"),
    Tanh: _act("tanh"),
    Softmax: emit_softmax,
    GELU: lambda em, node, xs: em.gelu(xs[0], node.name, node.name, node.layer.approximate),  # type: ignore[attr-defined]
    SiLU: _act("silu"),
    ReLU6: _act("relu6"),
    Upsample2D: emit_upsample,
    ZeroPad2D: emit_zeropad,
    Crop2D: emit_crop,
    Concat: emit_concat,
    Add: emit_add,
}


def _emit_fn(node: Node) -> Emit:
    for cls in type(node.layer).__mro__:
        fn = EXPORTS.get(cls)  # type: ignore[call-overload]
        if fn is not None:
            return fn
    raise ExportError(
        f"layer '{node.name}': no ONNX export for layer kind '{node.kind}' "
        "(add one to netspec.backends.onnx_export.EXPORTS)"
    )


# --- metadata ------------------------------------------------------------------------------------


def head(graph: Graph) -> str | None:
    """The output's final softmax/sigmoid, as in model.json (None for a linear output)."""
    layer = graph.output.layer
    if isinstance(layer, (Softmax, Sigmoid)):
        return layer.kind
    fn = layer.fn if isinstance(layer, Activation) else getattr(layer, "activation", None)
    return fn if fn in ("softmax", "sigmoid") else None


def layout(shape: Sequence[int]) -> str:
    """The input layout, channels first: NCHW for images, NCL for sequences, NC for features."""
    return {3: "NCHW", 2: "NCL", 1: "NC"}.get(len(shape), "N" + "?" * len(shape))


def metadata(graph: Graph, meta: dict[str, Any] | None) -> dict[str, str]:
    """model.metadata_props: the run's model.json as strings (JSON for structured values)."""
    meta = dict(meta or {})
    props = {
        "netspec.name": str(meta.get("name") or graph.name),
        "netspec.version": str(meta.get("netspec_version") or __version__),
    }
    if meta.get("spec_sha256"):
        props["netspec.spec_sha256"] = str(meta["spec_sha256"])
    if meta.get("task"):
        props["netspec.task"] = str(meta["task"])
    if meta.get("classes") is not None:
        props["netspec.classes"] = json.dumps(list(meta["classes"]))
    if meta.get("preprocessing") is not None:
        pre = dict(meta["preprocessing"])
        pre["layout"] = layout(graph.input_shape)
        props["netspec.preprocessing"] = json.dumps(pre)
    props["netspec.input_shape"] = json.dumps(list(graph.input_shape))
    props["netspec.output_shape"] = json.dumps(list(graph.output.shape))
    final = meta["head"] if "head" in meta else head(graph)
    props["netspec.head"] = final or "none"  # the output's softmax/sigmoid, or none (linear)
    return props


# --- the model -----------------------------------------------------------------------------------


@dataclass
class ExportStats:
    folded_batchnorm: int = 0
    removed_dropout: int = 0
    folded_into: dict[str, str] = field(default_factory=dict)


def build_onnx(
    graph: Graph,
    weights: dict[str, np.ndarray],
    *,
    meta: dict[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    fp16: bool = False,
    fold_batchnorm: bool = True,
) -> tuple[onnx.ModelProto, ExportStats]:
    """export_onnx, plus what was folded and removed."""
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ExportError(
            f"opset {opset} is not supported: use {MIN_OPSET} to {newest} "
            f"(LayerNormalization needs {MIN_OPSET}; this onnx package knows up to {newest})"
        )
    if batch is not None and batch < 1:
        raise ExportError(f"batch size {batch} must be at least 1 (or dynamic)")
    check_weights(graph, weights)
    plan = plan_folding(graph, weights, fold_batchnorm)
    em = _Emitter(graph, plan, weights, opset, fp16)
    for node in graph.nodes:
        xs = [em.values[i] for i in node.inputs]
        em.values[node.name] = _emit_fn(node)(em, node, xs)

    out_name = graph.output.name
    final = em.values[out_name]
    if final == INPUT_NAME:  # the network computes nothing (dropout only): ONNX needs a node
        em.op("Identity", [final], out_name, out_name)
    elif final != out_name:  # the output is an alias (a dropout or folded batchnorm at the end)
        for n in em.nodes:
            n.input[:] = [out_name if i == final else i for i in n.input]
            n.output[:] = [out_name if o == final else o for o in n.output]

    dim: int | str = batch if batch is not None else BATCH_PARAM
    onnx_graph = helper.make_graph(
        em.nodes,
        graph.name,
        [helper.make_tensor_value_info(INPUT_NAME, em.elem, [dim, *graph.input_shape])],
        [helper.make_tensor_value_info(out_name, em.elem, [dim, *graph.output.shape])],
        initializer=em.inits,
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        onnx_graph,
        opset_imports=opsets,
        producer_name="netspec",
        producer_version=__version__,
        doc_string=_doc(graph),
    )
    model.ir_version = helper.find_min_ir_version_for(opsets)
    helper.set_model_props(model, metadata(graph, meta))
    stats = ExportStats(
        folded_batchnorm=len(plan.folded),
        removed_dropout=sum(isinstance(n.layer, Dropout) for n in graph.nodes),
        folded_into=dict(plan.folded),
    )
    return model, stats


def export_onnx(
    graph: Graph,
    weights: dict[str, np.ndarray],
    *,
    meta: dict[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    fp16: bool = False,
    fold_batchnorm: bool = True,
) -> onnx.ModelProto:
    """The ONNX model of a compiled graph with weights keyed `<layer>.<tensor>` (numpy arrays).

    `meta` is the run's model.json (stored as metadata); `batch` fixes the batch size (default:
    a dynamic `batch` dimension); `fp16` stores initializers, input and output as float16.
    """
    model, _ = build_onnx(
        graph,
        weights,
        meta=meta,
        opset=opset,
        batch=batch,
        fp16=fp16,
        fold_batchnorm=fold_batchnorm,
    )
    return model


def _doc(graph: Graph) -> str:
    shape = ", ".join(map(str, graph.input_shape))
    out = ", ".join(map(str, graph.output.shape))
    text = f"netspec network '{graph.name}': input (N, {shape}) -> output (N, {out})"
    if graph.description:
        text += f"; {' '.join(graph.description.split())}"
    return text


# --- checks --------------------------------------------------------------------------------------


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def check_model(model: onnx.ModelProto, graph: Graph, batch: int | None = None) -> None:
    """onnx.checker (full), strict shape inference, and every layer's inferred shape is the IR's."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported model fails onnx.checker: {exc}") from None
    # Infer with the declared output shape removed, so the check is of the computed one.
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output[0].type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(
            probe, check_type=True, strict_mode=True, data_prop=True
        )
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise ExportError(f"ONNX shape inference fails on the exported model: {exc}") from None
    found = {v.name: _dims(v) for v in [*inferred.graph.value_info, *inferred.graph.output]}

    def batch_ok(dim: int | str | None) -> bool:
        # Some ops (Resize) infer a fresh symbol for a symbolic batch: any symbol is dynamic.
        return dim == batch if batch is not None else not isinstance(dim, int)

    want = "dynamic" if batch is None else str(batch)
    wrong = []
    for node in graph.nodes:
        dims = found.get(node.name)
        if dims is None:
            continue  # folded or removed: its value is another layer's tensor
        if tuple(dims[1:]) != tuple(node.shape) or not dims or not batch_ok(dims[0]):
            wrong.append(
                f"'{node.name}' is {dims}, not [{', '.join([want, *map(str, node.shape)])}]"
            )
    if graph.output.name not in found:
        wrong.append(f"no shape inferred for the output '{graph.output.name}'")
    if wrong:
        raise ExportError(f"ONNX shape inference disagrees with the IR: {'; '.join(wrong[:4])}")


# --- runs ----------------------------------------------------------------------------------------


@dataclass
class ExportReport:
    """What `export_run` wrote and checked."""

    path: Path
    size: int  # bytes
    opset: int
    batch: int | None
    fp16: bool
    nodes: int
    folded_batchnorm: int
    removed_dropout: int
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # parity check -> difference
    tolerance: float | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        size = f"{self.size / 1e6:.1f} MB" if self.size >= 1e5 else f"{self.size / 1e3:.1f} kB"
        batch = "dynamic" if self.batch is None else str(self.batch)
        out = [
            f"wrote {self.path} ({size}, opset {self.opset}, batch {batch}, "
            f"{'float16' if self.fp16 else 'float32'})",
            f"{self.nodes} ONNX nodes; batchnorm folded: {self.folded_batchnorm}, "
            f"dropout removed: {self.removed_dropout}",
        ]
        if self.max_abs_diff:
            diffs = ", ".join(f"{k} {v:.1e}" for k, v in self.max_abs_diff.items())
            out.append(f"matches PyTorch (max abs diff): {diffs} (tolerance {self.tolerance:.0e})")
        out += [f"note: {n}" for n in self.notes]
        return out


def parse_batch(text: str | int | None) -> int | None:
    """`dynamic` (or None) -> None; a positive integer -> itself."""
    if text is None or text == "dynamic":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ExportError(f"--batch {text}: expected 'dynamic' or a positive integer")
    return n


def run_samples(run: Run, n: int = 16, seed: int = 0) -> tuple[np.ndarray | None, str]:
    """Up to n samples of the run's training data, preprocessed as in training (or a note why not)."""
    spec = run.graph.train
    pre = (run.meta or {}).get("preprocessing")
    if spec is None or pre is None:
        return None, "no training data recorded with the run: checked on random inputs only"
    try:
        from dataclasses import replace

        from netspec.data.pipeline import _geometry, load_source

        data = load_source(spec.data, run.graph.file)
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.permutation(len(data))[:n])
        data = _geometry(replace(data, x=data.x[idx], y=data.y[idx]), spec)
        x = data.x
        if data.y.ndim == 3 and len(run.graph.input_shape) == 3:
            # Segmentation scenes may be larger than the input: check on their top-left tiles.
            h, w = run.graph.input_shape[1:]
            x = x[:, :, :h, :w]
        x = preprocess(x, pre, run.graph.input_shape)
    except (NetspecError, OSError, ValueError, ImportError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"the run's data could not be loaded ({reason}): checked on random inputs only"
    return x, f"checked on {len(x)} samples of the run's data"


def preprocess(x: np.ndarray, pre: dict[str, Any], input_shape: Sequence[int]) -> np.ndarray:
    """The value steps of the recorded preprocessing (scale, normalize, reshape), in numpy."""
    return apply_values(x, pre, input_shape)


def export_run(
    source: Path,
    out: Path | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    fp16: bool = False,
    check: bool = True,
    samples: np.ndarray | None = None,
) -> ExportReport:
    """Export a trained run (a run directory, or its weights file) to ONNX; default <run>/model.onnx.

    Unless `check` is False the model goes through `check_model` and the PyTorch parity check
    (random batches of 1 and 7, and `samples`, default: up to 16 samples of the run's data); a
    failure raises and writes nothing. The file is written atomically.
    """
    run = load_run(Path(source))
    model, stats = build_onnx(
        run.graph, run.weights, meta=run.meta, opset=opset, batch=batch, fp16=fp16
    )
    notes: list[str] = []
    diffs: dict[str, float] = {}
    tolerance = None
    if check:
        try:
            from netspec.backends import parity
        except ImportError as exc:
            raise ExportError(
                f"the parity check needs PyTorch ({exc}): install it, or export with --no-check"
            ) from None

        check_model(model, run.graph, batch)
        if samples is None:
            samples, note = run_samples(run)
            notes.append(note)
        inputs = parity.random_inputs(run.graph, batch)
        if samples is not None:
            inputs[f"{len(samples)} samples"] = np.asarray(samples, dtype=np.float32)
        diffs = parity.check_parity(run.graph, run.weights, model, inputs, fp16=fp16)
        tolerance = parity.FP16_TOLERANCE if fp16 else parity.TOLERANCE
    else:
        notes.append("not checked (--no-check)")
    path = Path(out) if out is not None else run.directory / "model.onnx"
    data = model.SerializeToString()
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    return ExportReport(
        path=path,
        size=len(data),
        opset=opset,
        batch=batch,
        fp16=fp16,
        nodes=len(model.graph.node),
        folded_batchnorm=stats.folded_batchnorm,
        removed_dropout=stats.removed_dropout,
        max_abs_diff=diffs,
        tolerance=tolerance,
        notes=notes,
    )


__all__ = [
    "EXPORTS",
    "ExportError",
    "ExportReport",
    "ExportStats",
    "build_onnx",
    "check_model",
    "export_onnx",
    "export_run",
    "parse_batch",
    "plan_folding",
]
