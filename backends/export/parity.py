"""Parity: an exported ONNX model computes what the PyTorch module computes.

Both run the same inputs: the PyTorch module (build_module, the same weights, eval mode) and
onnxruntime on the CPU. The difference is the largest absolute difference of the outputs; it must
stay within the tolerance times the output's scale, max(1, largest |output|): an absolute 1e-4
for outputs within [-1, 1] (probabilities, normalized scores), relative beyond. float16 models
get 1e-2: float16 keeps about three significant digits. With float16, both sides see the same
float16-rounded inputs, so only the model's own rounding is measured.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from netspec.data.token_ids import id_reader
from netspec.errors import NetspecError, SpecError, first_line
from netspec.ir import Graph, at_length, default_length, shortest_length
from netspec.shapes import filled

from ..lowering import NetModule
from ..predict.session import SessionError, open_session
from ..weights import load_module
from .card import Card
from .model import target_affine

TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2
RANDOM_BATCHES = (1, 7)


class ParityError(NetspecError):
    """The ONNX model's output differs from the PyTorch module's."""


# --- running both --------------------------------------------------------------------------------


def run_torch(module: NetModule, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def onnx_session(model: Any) -> Any:
    """An onnxruntime CPU session for a ModelProto (or its bytes)."""
    try:
        return open_session(model, "cpu")
    except SessionError as exc:
        raise ParityError(
            [replace(p, message=f"the exported model: {p.message}") for p in exc.problems]
        ) from None


def run_onnx(session: Any, x: np.ndarray) -> np.ndarray:
    feed = session.get_inputs()[0]
    dtype = np.float16 if feed.type == "tensor(float16)" else np.float32
    try:
        (y,) = session.run(None, {feed.name: np.ascontiguousarray(x, dtype=dtype)})
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ParityError(
            f"onnxruntime fails to run the exported model: {first_line(exc)}"
        ) from None
    return np.asarray(y, dtype=np.float32)


def token_ids(graph: Graph) -> int | None:
    """The number of valid token ids when an embedding reads the network input, else None."""
    node = id_reader(graph)
    return None if node is None else int(node.layer.input_dim)  # type: ignore[attr-defined]


def random_inputs(graph: Graph, batch: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal inputs (random valid token ids for an embedding): batches of 1 and 7, or
    of the model's fixed batch size; with a dynamic time axis, each at two or more lengths."""
    rng = np.random.default_rng(seed)
    sizes = RANDOM_BATCHES if batch is None else (batch,)
    ids = token_ids(graph)

    def draw(n: int, shape: tuple[int, ...]) -> np.ndarray:
        full = (n, *shape)
        x = rng.standard_normal(full) if ids is None else rng.integers(0, ids, full)
        return x.astype(np.float32)

    if not graph.dynamic:
        return {f"random batch {n}": draw(n, graph.input_shape) for n in sizes}  # type: ignore[arg-type]
    return {
        f"random batch {n}, length {t}": draw(n, filled(graph.input_shape, t))
        for t in parity_lengths(graph)
        for n in sizes
    }


def parity_lengths(graph: Graph) -> list[int]:
    """Lengths of the dynamic time axis the parity check runs at: the measured one, about half
    of it, an odd short one, the shortest the network accepts and a longer one, each that it
    accepts (a kernel must fit, a position_embedding's table must be long enough); two at
    least unless the network runs at one length only."""
    full = graph.length or default_length(graph)
    out: list[int] = []
    for t in (full, full // 2 + 1, 13, shortest_length(graph) or full, full + 7):
        if t in out:
            continue
        try:
            at_length(replace(graph, length=t))
        except SpecError:
            continue
        out.append(t)
        if len(out) == 4:
            break
    return out


def _batches(x: np.ndarray, batch: int | None) -> list[np.ndarray]:
    """x as it can be fed: whole, or in chunks of a fixed batch size (the last one filled up)."""
    if batch is None or len(x) == batch:
        return [x]
    chunks = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.resize(x, (batch - len(chunk), *x.shape[1:]))])
        chunks.append(chunk)
    return chunks


def max_abs_diff(expected: np.ndarray, actual: np.ndarray) -> float:
    if expected.shape != actual.shape:
        return float("inf")
    a, b = expected.astype(np.float64), actual.astype(np.float64)
    # Equal values (infinities included) and NaN in both places agree; other NaNs do not.
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(a - b))
    return float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0))


def _target_affine(model: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The target un-scaling recorded in an ONNX model's metadata (see model.target_affine)."""
    return target_affine(Card.of(model).preprocessing)


def check_parity(
    graph: Graph,
    weights: dict[str, np.ndarray],
    model: Any,
    inputs: dict[str, np.ndarray],
    *,
    fp16: bool = False,
    tolerance: float | None = None,
    module: NetModule | None = None,
) -> dict[str, float]:
    """Run every input through PyTorch and onnxruntime; the max abs difference per input.

    Raises ParityError naming the difference and the tolerance when one is too large.
    """
    tol = tolerance if tolerance is not None else (FP16_TOLERANCE if fp16 else TOLERANCE)
    module = module if module is not None else load_module(graph, weights)
    affine = _target_affine(model)
    session = onnx_session(model)
    dim = session.get_inputs()[0].shape[0]
    batch = dim if isinstance(dim, int) else None
    diffs: dict[str, float] = {}
    for label, x in inputs.items():
        worst = 0.0
        for chunk in _batches(np.asarray(x, dtype=np.float32), batch):
            if fp16:
                chunk = chunk.astype(np.float16).astype(np.float32)
            expected = run_torch(module, chunk)
            if affine is not None:  # the graph returns regression targets in the data's units
                expected = expected * affine[1] + affine[0]
            actual = run_onnx(session, chunk)
            diff = max_abs_diff(expected, actual)
            scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
            worst = max(worst, diff)
            if not diff <= tol * scale:
                bound = (
                    f"{tol:.0e}" if scale == 1.0 else f"{tol:.0e} x {scale:.3g}, the output's scale"
                )
                raise ParityError.one(
                    f"ONNX output differs from PyTorch by {diff:.1e} (> {bound}) on {label}",
                    hint="this is a bug in the exporter; please report it with the spec",
                )
        diffs[label] = worst
    return diffs


__all__ = [
    "FP16_TOLERANCE",
    "TOLERANCE",
    "ParityError",
    "check_parity",
    "max_abs_diff",
    "onnx_session",
    "random_inputs",
    "run_onnx",
    "run_torch",
]
