"""int8 export: onnxruntime's static QDQ quantization, calibrated and checked on the run's data.

Calibrated on the run's training samples, checked by accuracy on its test split (not
elementwise: int8 rounding is not a bug to catch).

Calibration and evaluation both use the run's own data (`runs.run_splits`: the same split,
geometry and recorded preprocessing as training), so the calibrated ranges are those
the model sees. Weights are quantized per output channel (int8), activations per tensor (int8),
with MinMax calibration; onnxruntime runs QDQ models with its int8 kernels on the CPU.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from netspec.errors import NetspecError, first_line
from netspec.run_data import imported_meta, no_data_error, run_splits
from netspec.run_record import RunLayout
from netspec.runs import LoadedRun

from .card import NO_HEAD, Card
from .emitter import ExportError

CALIBRATION_SAMPLES = 256
MAX_DROP = 1.0  # percentage points of test accuracy an int8 model may lose by default
BATCH = 64


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

    @property
    def drop(self) -> float:
        return self.accuracy_fp32 - self.accuracy_int8

    def line(self) -> str:
        return (
            f"int8 (static QDQ, calibrated on {self.calibration_samples} training samples): "
            f"{self.split} {self.measure} {self.accuracy_fp32:.2f}% (float32) -> "
            f"{self.accuracy_int8:.2f}% (int8) on {self.test_samples} samples, drop "
            f"{self.drop:.2f} points (max {self.max_drop:g})"
        )


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
        if out.shape[1] == 1:  # one sigmoid unit (or map): class 1 at p >= 0.5 (score >= 0)
            pred = (out[:, 0] >= (0.5 if head == "sigmoid" else 0.0)).astype(np.int64)
        else:
            pred = out.argmax(axis=1)
        truth = np.asarray(y[i : i + BATCH]).reshape(pred.shape)
        keep = truth >= 0
        right += int((pred == truth)[keep].sum())
        total += int(keep.sum())
    return 100.0 * right / max(total, 1)


def quantize_run(run: LoadedRun, model: onnx.ModelProto, max_drop: float = MAX_DROP) -> Quantized:
    """The int8 model of a run's float32 export; ExportError when it loses more than `max_drop`
    points of accuracy on the run's test split (or cannot be made)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .parity import onnx_session

    calib, x, y, split, task = _splits(run)
    source = onnx.ModelProto()
    source.CopyFrom(model)  # quantize_static moves a given model's weights to external files
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
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        except Exception as exc:  # onnxruntime raises its own and plain exception types
            raise ExportError(f"onnxruntime cannot quantize the model: {first_line(exc)}") from None
        finally:
            root.setLevel(level)
        quantized = onnx.load(str(out))
    # The same metadata as the float model (quantize_static need not keep it).
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(model.metadata_props)
    quantized.doc_string = model.doc_string
    quantized.producer_name, quantized.producer_version = (
        model.producer_name,
        model.producer_version,
    )
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
    return result
