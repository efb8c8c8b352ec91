"""The ONNX graph under construction: unique names, initializers, constants, and activations by `Act`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from netspec.errors import NetspecError
from netspec.ir import Graph, Node
from netspec.items import INPUT
from netspec.layers.activations import Act
from netspec.shapes import batch_axis

from .fold import FoldPlan

INPUT_NAME = "input"


# Reductions whose axes became an input at opset 18 (ReduceSum's did at 13).
AXES_INPUT_FROM_18 = frozenset({"ReduceMax", "ReduceMin", "ReduceMean", "ReduceProd"})


class ExportError(NetspecError):
    """The model cannot be exported, or the exported model fails a check."""


class Emitter:
    """Collects ONNX nodes and initializers with unique names."""

    def __init__(self, graph: Graph, plan: FoldPlan, opset: int, fp16: bool) -> None:
        self.graph = graph
        self.plan = plan
        self.opset = opset  # what the emissions may use (GELU as one op from 20)
        self.float = np.float16 if fp16 else np.float32
        self.elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.taken: set[str] = {INPUT_NAME, *(n.name for n in graph.nodes)}
        self.node_names: set[str] = set()
        self.values: dict[str, str] = {INPUT: INPUT_NAME}  # layer name -> its tensor
        self.consts: dict[float, str] = {}

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

    def dim(self, x: str, axis: int, layer: str) -> str:
        """The size of `x` along `axis` at run time, as a 1-D int64 of one value (a dynamic
        time axis has no number to write down)."""
        shape = self.op("Shape", [x], self.fresh(f"{layer}/shape"), layer)
        start, end = self.ints(f"{layer}/axis", [axis]), self.ints(f"{layer}/axis_end", [axis + 1])
        return self.op("Slice", [shape, start, end], self.fresh(f"{layer}/dim{axis}"), layer)

    def causal_mask(self, query: str, value: str, layer: str) -> str:
        """A [T, S] mask of 0 (step t may see step s <= t) and -inf, built at run time from the
        inputs' lengths (a dynamic time axis), from opset-13 ops: Range, LessOrEqual, Where."""

        def steps(x: str, what: str) -> str:
            n = self.op("Squeeze", [self.dim(x, 1, layer)], self.fresh(f"{layer}/{what}"), layer)
            zero, one = (
                self.init(f"{layer}/{k}", np.asarray(k == "one", np.int64)) for k in ("zero", "one")
            )
            return self.op("Range", [zero, n, one], self.fresh(f"{layer}/{what}_range"), layer)

        rows, cols = steps(query, "steps"), steps(value, "keys")
        axis = self.ints(f"{layer}/column_axis", [1])
        rows = self.op("Unsqueeze", [rows, axis], self.fresh(f"{layer}/rows"), layer)
        seen = self.op("LessOrEqual", [cols, rows], self.fresh(f"{layer}/allowed"), layer)
        fill = [self.const(0.0), self.const(-np.inf)]
        return self.op("Where", [seen, *fill], self.fresh(f"{layer}/causal_mask"), layer)

    def const(self, value: float) -> str:
        """A shared scalar constant in the model's float type."""
        if float(value) not in self.consts:
            self.consts[float(value)] = self.init(f"const/{value:g}", np.asarray(value))
        return self.consts[float(value)]

    def op(self, op_type: str, inputs: Sequence[str], out: str, layer: str, **attrs: Any) -> str:
        if op_type == "Mul":
            inputs = [self._unfused(x, inputs, layer) for x in inputs]
        if op_type in AXES_INPUT_FROM_18 and self.opset >= 18 and "axes" in attrs:
            # Written in their opset-13 form; from 18 the axes are an input (int8 exports are 19+).
            inputs = [*inputs, self.ints(f"{layer}/axes", attrs.pop("axes"))]
        self.op_outputs(op_type, inputs, [out], layer, **attrs)
        return out

    def _unfused(self, x: str, inputs: Sequence[str], layer: str) -> str:
        """x, safe as a Mul operand: OpenCV DNN (5.1) rewrites any HardSigmoid -> Mul as one
        HardSwish of the HardSigmoid's input, whatever the Mul's other operand (a squeeze-excite
        gate, a batchnorm's scale); an Identity between them stops that, except in x *
        HardSigmoid(x), which is a HardSwish."""
        made = next((n for n in reversed(self.nodes) if x in n.output), None)
        if made is None or made.op_type != "HardSigmoid" or made.input[0] in inputs:
            return x
        return self.op("Identity", [x], self.fresh(f"{layer}/unfused"), layer)

    def op_outputs(
        self, op_type: str, inputs: Sequence[str], outs: Sequence[str], layer: str, **attrs: Any
    ) -> None:
        """An op with several outputs (LSTM's Y, Y_h, Y_c); "" leaves an optional one unused."""
        name, k = f"{layer}/{op_type}", 1
        while name in self.node_names:
            name = f"{layer}/{op_type}_{k}"
            k += 1
        self.node_names.add(name)
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outs), name=name, **attrs))

    def producer(self, value: str) -> str | None:
        """The op type of the node that writes `value` (None: the input or an initializer)."""
        return next((n.op_type for n in reversed(self.nodes) if value in n.output), None)

    def weight_inputs(self, node: Node) -> list[str]:
        """Initializers `<layer>.<tensor>` of the node's (folded) weights, in declared order."""
        return [self.init(f"{node.name}.{t}", a) for t, a in self.plan.tensors[node.name].items()]

    def activation(self, act: Act | None, x: str, out: str, layer: str, rank: int) -> str:
        """Write `act` of x (per-sample rank `rank`) into `out`; None (linear) writes nothing."""
        if act is None:
            return x
        return ACT_EXPORTS[act.fn](self, act, x, out, layer, rank)

    def fused(
        self, node: Node, act: Act | None, op_type: str, inputs: list[str], **attrs: Any
    ) -> str:
        """A weighted op followed by the layer's `activation:` (if any); output named like the layer."""
        if act is None:
            return self.op(op_type, inputs, node.name, node.name, **attrs)
        y = self.op(op_type, inputs, self.fresh(f"{node.name}/linear"), node.name, **attrs)
        return self.activation(act, y, node.name, node.name, len(node.shape))


# --- one function per activation name (netspec.layers.base.ACTIVATIONS) --------------------------

EmitAct = Callable[[Emitter, Act, str, str, str, int], str]


def _simple(op_type: str) -> EmitAct:
    def emit(em: Emitter, act: Act, x: str, out: str, layer: str, rank: int) -> str:
        return em.op(op_type, [x], out, layer)

    return emit


def _leaky_relu(em: Emitter, act: Act, x: str, out: str, layer: str, rank: int) -> str:
    return em.op("LeakyRelu", [x], out, layer, alpha=float(act.slope))


def _elu(em: Emitter, act: Act, x: str, out: str, layer: str, rank: int) -> str:
    return em.op("Elu", [x], out, layer, alpha=float(act.alpha))


def _softmax(em: Emitter, act: Act, x: str, out: str, layer: str, rank: int) -> str:
    return em.op("Softmax", [x], out, layer, axis=batch_axis(act.axis, rank))


def _silu(em: Emitter, act: Act, x: str, out: str, layer: str, rank: int) -> str:
    s = em.op("Sigmoid", [x], em.fresh(f"{layer}/sigmoid"), layer)
    return em.op("Mul", [x, s], out, layer)


def _relu6(em: Emitter, act: Act, x: str, out: str, layer: str, rank: int) -> str:
    return em.op("Clip", [x, em.const(0.0), em.const(6.0)], out, layer)


def _hard_sigmoid(em: Emitter, act: Act, x: str, out: str, layer: str, rank: int) -> str:
    # Keras 3's and torch's relu6(x + 3) / 6; ONNX's default alpha (0.2) is Keras 2's.
    return em.op("HardSigmoid", [x], out, layer, alpha=1.0 / 6.0, beta=0.5)


def _hard_swish(em: Emitter, act: Act, x: str, out: str, layer: str, rank: int) -> str:
    if em.opset >= 14:
        return em.op("HardSwish", [x], out, layer)
    # Below opset 14 (and for OpenCV and older runtimes) written as x * HardSigmoid(x).
    gate = _hard_sigmoid(em, act, x, em.fresh(f"{layer}/hard_sigmoid"), layer, rank)
    return em.op("Mul", [x, gate], out, layer)


def _gelu(em: Emitter, act: Act, x: str, out: str, layer: str, rank: int) -> str:
    if em.opset >= 20:
        return em.op("Gelu", [x], out, layer, approximate=act.approximate)

    # Below opset 20 GELU is no ONNX op: written out in its erf (or tanh) form.
    def tmp(what: str) -> str:
        return em.fresh(f"{layer}/gelu_{what}")

    if act.approximate == "tanh":  # 0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3)))
        sq = em.op("Mul", [x, x], tmp("x2"), layer)
        cube = em.op("Mul", [sq, x], tmp("x3"), layer)
        scaled = em.op("Mul", [cube, em.const(0.044715)], tmp("c"), layer)
        inner = em.op("Add", [x, scaled], tmp("inner"), layer)
        arg = em.op("Mul", [inner, em.const(math.sqrt(2.0 / math.pi))], tmp("arg"), layer)
        t = em.op("Tanh", [arg], tmp("tanh"), layer)
    else:  # 0.5*x*(1 + erf(x/sqrt(2)))
        arg = em.op("Mul", [x, em.const(1.0 / math.sqrt(2.0))], tmp("arg"), layer)
        t = em.op("Erf", [arg], tmp("erf"), layer)
    one = em.op("Add", [t, em.const(1.0)], tmp("1p"), layer)
    half = em.op("Mul", [x, em.const(0.5)], tmp("half"), layer)
    return em.op("Mul", [half, one], out, layer)


def _linear(em: Emitter, act: Act, x: str, out: str, layer: str, rank: int) -> str:
    return x  # nothing to compute: the value is its input's


# Keyed by Act.fn; tests/test_completeness.py checks it covers ACTIVATIONS.
ACT_EXPORTS: dict[str, EmitAct] = {
    "linear": _linear,
    "relu": _simple("Relu"),
    "leaky_relu": _leaky_relu,
    "sigmoid": _simple("Sigmoid"),
    "tanh": _simple("Tanh"),
    "softmax": _softmax,
    "gelu": _gelu,
    "silu": _silu,
    "relu6": _relu6,
    "hard_sigmoid": _hard_sigmoid,
    "hard_swish": _hard_swish,
    "elu": _elu,
}
