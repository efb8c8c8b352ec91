"""int8 export: onnxruntime's static quantization in the one form every runtime measured runs,
calibrated on the run's data, checked by accuracy and then in every runtime installed here.

Calibrated on the run's training samples, checked by accuracy on its test split (not
elementwise: int8 rounding is not a bug to catch), then run in every runtime installed
(int8_check.py): a runtime meant to run it that disagrees beyond the gate fails the export.

The form (docs/export.md has the measurements): standard ONNX operators only -- QLinearConv,
QLinearMatMul, QuantizeLinear, DequantizeLinear, and MaxPool (int8_pools.py), Flatten and
Reshape on int8 values; everything else stays float32 -- at opset 19 or later. OpenCV 5.1 runs
no QDQ model at all and the onnx reference evaluator no DequantizeLinear before 19; onnxruntime's
com.microsoft operators (QGemm, QLinearAdd...) run in onnxruntime alone, so dense layers' Gemm
is written as MatMul + Add first. Activations are uint8, weights int8 per output channel with
7-bit values (`reduce_range`): on x86 CPUs without VNNI, onnxruntime's native int8 kernels
(Python, Node) saturate 16-bit sums of u8 x s8 products of full 8-bit weights, which changed 5
of 256 MNIST predictions that its wasm kernels (web), OpenCV and the reference evaluator keep.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from netspec.errors import NetspecError, first_line
from netspec.run_data import imported_meta, no_data_error, run_splits
from netspec.run_record import RunLayout
from netspec.runs import LoadedRun

from .card import NO_HEAD, PREFIX, Card
from .emitter import ExportError
from .int8_check import CHECK_SAMPLES, RuntimeCheck, check_runtimes, top1
from .int8_pools import quantize_pools
from .runtimes import RUNTIME_NAMES

CALIBRATION_SAMPLES = 256
MAX_DROP = 1.0  # percentage points of test accuracy an int8 model may lose by default
BATCH = 64
INT8_OPSET = 19  # the onnx reference evaluator's first DequantizeLinear (onnxruntime 1.16 runs 19)
# Quantized as int8 values: Conv and MatMul (QLinearConv, QLinearMatMul); Relu and Clip fold into
# their quantization ranges; MaxPool, Flatten and Reshape run on the int8 values in every runtime.
# Other kinds (Add, Concat, pooling averages, sigmoid...) would become com.microsoft operators.
QUANTIZED_OPS = ["Conv", "MatMul", "Relu", "Clip", "MaxPool", "Flatten", "Reshape"]


@dataclass(frozen=True)
class Quantized:
    """The int8 model and what its check measured."""

    model: onnx.ModelProto
    calibration_samples: int
    test_samples: int
    split: str  # "test" (or "validation" when the run has no test split)
    accuracy_fp32: float  # percent
    accuracy_int8: float
    max_drop: float
    measure: str = "accuracy"  # "pixel accuracy" for segmentation
    runtimes: RuntimeCheck | None = None  # the int8 model in every runtime installed here

    @property
    def drop(self) -> float:
        return self.accuracy_fp32 - self.accuracy_int8

    def line(self) -> str:
        return (
            f"int8 (static, QLinearConv/QLinearMatMul, calibrated on {self.calibration_samples} "
            f"training samples): {self.split} {self.measure} {self.accuracy_fp32:.2f}% (float32) "
            f"-> {self.accuracy_int8:.2f}% (int8) on {self.test_samples} samples, drop "
            f"{self.drop:.2f} points (max {self.max_drop:g})"
        )

    def lines(self) -> list[str]:
        """The accuracy check's line, then the runtimes' table."""
        return [self.line(), *(self.runtimes.lines() if self.runtimes else ())]

    def to_dict(self) -> dict[str, Any]:
        """What the checks measured, JSON-ready: the card's `int8_check`."""
        return {
            "form": "QLinearConv/QLinearMatMul (uint8 activations, int8 weights per channel, "
            "7-bit)",
            "calibration_samples": self.calibration_samples,
            "split": self.split,
            "measure": self.measure,
            "test_samples": self.test_samples,
            "accuracy_float32": round(self.accuracy_fp32, 4),
            "accuracy_int8": round(self.accuracy_int8, 4),
            "max_drop": self.max_drop,
            "runtimes": None if self.runtimes is None else self.runtimes.to_dict(),
        }


def _splits(run: LoadedRun) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, str]:
    """(calibration inputs, evaluation inputs, their labels, split name, task) of a run."""
    graph = run.graph
    pre = run.meta.preprocessing if run.meta else None
    task = run.meta.task if run.meta else None
    if run.meta is not None and run.meta.imported_from is not None:
        if graph.train is None:  # an imported run: the user says where its data are
            problem = no_data_error(RunLayout(run.directory).spec).problems[0]
            raise ExportError.one(f"--int8: {problem.message}", problem.file, hint=problem.hint)
        pre = imported_meta(run.meta).preprocessing
    if graph.train is None or pre is None:
        raise ExportError("--int8 needs a run trained by netspec (its data and preprocessing)")
    if task not in ("multiclass", "binary", "segmentation"):
        raise ExportError(
            f"--int8 is checked by accuracy, which a {task or 'unknown'} run has not: "
            "export it as float32 or --fp16"
        )
    try:
        data = run_splits(run, ("train", "test", "val"))
    except (NetspecError, OSError, ValueError, ImportError) as exc:
        raise ExportError(
            f"--int8 needs the run's data for calibration and the accuracy check: {first_line(exc)}"
        ) from None
    held = data["test"] or data["val"]
    if held is None:
        raise ExportError("--int8: the run has no test or validation split to check accuracy on")
    train = data["train"]
    assert train is not None
    rng = np.random.default_rng(0)
    pick = np.sort(rng.permutation(len(train.data))[:CALIBRATION_SAMPLES])
    name = "test" if held.split == "test" else "validation"
    return train.inputs(pick), held.inputs(), held.data.y, name, task


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an array of model inputs."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.batches: Iterator[dict[str, np.ndarray]] = self._all()

    def _all(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.x), BATCH):
            yield {"input": self.x[i : i + BATCH]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)

    def rewind(self) -> None:
        self.batches = self._all()


def accuracy(session: Any, x: np.ndarray, y: np.ndarray, head: str) -> float:
    """Percent of labels (pixels for masks; -1 ignored) the model gets right, in batches."""
    right = total = 0
    for i in range(0, len(x), BATCH):
        (out,) = session.run(None, {"input": x[i : i + BATCH]})
        pred = top1(out, head)
        truth = np.asarray(y[i : i + BATCH]).reshape(pred.shape)
        keep = truth >= 0
        right += int((pred == truth)[keep].sum())
        total += int(keep.sum())
    return 100.0 * right / max(total, 1)


def check_runtime_names(names: tuple[str, ...] | None) -> None:
    """ExportError for a name that is not one of the runtimes the check knows."""
    for name in names or ():
        if name not in RUNTIME_NAMES:
            raise ExportError(f"--int8-runtime {name}: expected one of {', '.join(RUNTIME_NAMES)}")


def int8_opset(asked: int | None) -> int:
    """The opset of an int8 export: INT8_OPSET unless asked for a later one."""
    if asked is not None and asked < INT8_OPSET:
        raise ExportError(
            f"--int8 writes opset {INT8_OPSET} or later (the onnx reference evaluator has no "
            f"DequantizeLinear before {INT8_OPSET}): use --opset {INT8_OPSET} or auto"
        )
    return INT8_OPSET if asked is None else asked


def matmul_form(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model with every Gemm (a dense layer: y = x W^T + b) written as MatMul and
    Add, which quantize to the standard QLinearMatMul rather than onnxruntime's own QGemm."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    weights = {t.name: t for t in out.graph.initializer}
    users: dict[str, int] = {}
    for node in out.graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    nodes: list[onnx.NodeProto] = []
    for node in out.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        w = weights.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type != "Gemm" or not plain or attrs.get("transA") or w is None:
            nodes.append(node)
            continue
        if attrs.get("transB"):
            if users[w.name] > 1:  # shared: transposed under a name of its own
                w = _add_initializer(out, numpy_helper.to_array(w).T, f"{w.name}_t")
            else:
                w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w).T.copy(), w.name))
        product = f"{node.output[0]}_matmul" if len(node.input) > 2 else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], w.name], [product], node.name))
        if len(node.input) > 2:
            nodes.append(
                helper.make_node(
                    "Add", [product, node.input[2]], [node.output[0]], f"{node.name}_bias"
                )
            )
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _add_initializer(model: onnx.ModelProto, value: np.ndarray, name: str) -> onnx.TensorProto:
    tensor = numpy_helper.from_array(np.ascontiguousarray(value), name)
    model.graph.initializer.append(tensor)
    return model.graph.initializer[-1]


def _quantize(model: onnx.ModelProto, calib: np.ndarray) -> onnx.ModelProto:
    """onnxruntime's static quantization of the model, in the form the module docstring gives."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # quantize_static moves a given model's weights to external files: it gets its own copy.
    source = matmul_form(model)
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(prefix="netspec-int8-") as tmp:
        out = Path(tmp) / "model.int8.onnx"
        try:
            # Its advice to run its pre-processing goes to the root logger: netspec's graph is
            # already shape-inferred and minimal.
            root.setLevel(logging.ERROR)
            quantize_static(
                source,
                out,
                _Reader(calib),
                quant_format=QuantFormat.QOperator,
                op_types_to_quantize=QUANTIZED_OPS,
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        except Exception as exc:  # onnxruntime raises its own and plain exception types
            raise ExportError(f"onnxruntime cannot quantize the model: {first_line(exc)}") from None
        finally:
            root.setLevel(level)
        quantized = quantize_pools(onnx.load(str(out)), model, calib)
    foreign = sorted({n.op_type for n in quantized.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:  # QUANTIZED_OPS keeps to standard operators; a guard for onnxruntime's choices
        raise ExportError(
            f"the int8 model has operators of onnxruntime's own ({', '.join(foreign)}), which "
            "other runtimes cannot run: export it as float32 or --fp16"
        )
    return quantized


def quantize_run(
    run: LoadedRun,
    model: onnx.ModelProto,
    max_drop: float = MAX_DROP,
    runtimes: tuple[str, ...] | None = None,
) -> Quantized:
    """The int8 model of a run's float32 export; ExportError when it loses more than `max_drop`
    points of accuracy on the run's test split, when a runtime meant to run it (`runtimes`,
    runtimes.RUNTIME_NAMES; None: every one installed here) runs it with top-1 agreement more
    than `max_drop` points below onnxruntime's or cannot run it (the message has the table), or
    when it cannot be made."""
    check_runtime_names(runtimes)
    from .parity import onnx_session

    calib, x, y, split, task = _splits(run)
    quantized = _quantize(model, calib)
    head = Card.of(model).meta.head or NO_HEAD
    acc32 = accuracy(onnx_session(model), x, y, head)
    acc8 = accuracy(onnx_session(quantized), x, y, head)
    measure = "pixel accuracy" if task == "segmentation" else "accuracy"
    result = Quantized(quantized, len(calib), len(x), split, acc32, acc8, max_drop, measure)
    if result.drop > max_drop:
        raise ExportError(
            f"the int8 model loses {result.drop:.2f} points of {split} {measure} "
            f"({acc32:.2f}% -> {acc8:.2f}%), more than --max-drop {max_drop:g}: nothing written",
        )
    check = check_runtimes(
        model.SerializeToString(),
        quantized.SerializeToString(),
        x[:CHECK_SAMPLES],
        head=head,
        split=split,
        max_drop=max_drop,
        gated=runtimes,
    )
    if check.failed:
        names = ", ".join(r.runtime for r in check.failed)
        summary = (
            f"the int8 model fails the runtime check in {names}: nothing written (--int8-runtime "
            "names the runtimes it is meant for; the others are reported, not gated)"
        )
        raise ExportError("\n".join([summary, *check.lines()]))
    result = replace(result, runtimes=check)
    _card(quantized, model, result)
    return result


def _card(quantized: onnx.ModelProto, model: onnx.ModelProto, result: Quantized) -> None:
    """The float model's metadata (quantize_static need not keep it), and the checks' result."""
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(model.metadata_props)
    entry = quantized.metadata_props.add()
    entry.key, entry.value = PREFIX + "int8_check", json.dumps(result.to_dict())
    quantized.doc_string = model.doc_string
    quantized.producer_name, quantized.producer_version = (
        model.producer_name,
        model.producer_version,
    )
