"""How far an engine's outputs are from PyTorch's: the tolerance for a model's precision, the checked difference, argmax agreement."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

INT8_NOTE = (
    "an int8 (quantized) model: its outputs differ from PyTorch's by rounding, so they are "
    "compared (difference, argmax agreement) but not checked; give --tolerance to check"
)


def default_tolerance(precision: str) -> float:
    """The export's parity tolerance for a float32 or float16 model."""
    from ..export.parity import FP16_TOLERANCE, TOLERANCE

    return FP16_TOLERANCE if precision == "float16" else TOLERANCE


def precision_of(model: bytes | Path) -> str:
    """float32, float16 or int8 (sidecar.precision of the model's graph)."""
    import onnx

    from ..export.sidecar import precision

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    return precision(proto)


def argmax_agreement(expected: np.ndarray, actual: np.ndarray) -> float:
    """Fraction of samples (pixels) whose argmax over axis 1 is the same (sign for one unit)."""
    e, a = np.asarray(expected, np.float32), np.asarray(actual, np.float32)
    if e.shape != a.shape or e.ndim < 2:
        return 0.0
    if e.shape[1] == 1:
        return float(((e >= 0) == (a >= 0)).mean())
    return float((e.argmax(1) == a.argmax(1)).mean())


def check_difference(expected: np.ndarray, actual: np.ndarray, tol: float | None) -> float:
    from ..export.parity import ParityError, max_abs_diff

    expected = np.asarray(expected, dtype=np.float32)
    diff = max_abs_diff(expected, np.asarray(actual, dtype=np.float32))
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    if tol is not None and not diff <= tol * scale:
        raise ParityError(
            f"onnxruntime's output differs from PyTorch's by {diff:.1e} (> {tol:.0e} x {scale:.3g})"
        )
    return diff


def agreement_on_run(
    run: Any,
    torch_fn: Callable[[np.ndarray], np.ndarray],
    ort_fn: Callable[[np.ndarray], np.ndarray],
    fixed: int | None,
) -> tuple[float, str] | None:
    """Argmax agreement on up to 64 samples of the run's data (None: none loadable, or they do
    not fit a fixed batch): an int8 model's ranges were calibrated on such data, which random
    inputs lie outside of."""
    from ..export.run import run_samples

    samples, _ = run_samples(run, n=64)
    if samples is None or fixed not in (None, len(samples)):
        return None
    agree = argmax_agreement(torch_fn(samples), ort_fn(samples))
    return agree, f"argmax agreement on {len(samples)} samples of the run's data"
