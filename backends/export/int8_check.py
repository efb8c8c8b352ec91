"""The int8 model in every runtime installed here, against the float32 model: per runtime, the
share of top-1 predictions it keeps and the largest output difference, as rows, a table and the
gate.

The reference is the float32 model in onnxruntime on the same samples. onnxruntime's own int8 run
is gated by accuracy (quantize.py); every other runtime is meant to compute the same int8 model,
so it fails the check when it keeps fewer of the float32 model's top-1 predictions than
onnxruntime keeps, by more than `max_drop` points. A runtime that is not installed is listed and
skipped; one that cannot run the float32 model either is listed and not counted (that is no int8
problem).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from . import runtimes as known
from .runtimes import Runtime, RuntimeFailed, Unavailable

CHECK_SAMPLES = 128
# A slow runtime (the reference evaluator: plain numpy, about 13 s a sample for unet_isbi on a
# 2-core CPU) runs one sample, then as many more as fit this many seconds at that pace.
SLOW_SECONDS = 20.0

RAN, FAILED, MISSING, NOT_COUNTED = "ran", "failed", "not installed", "not counted"


@dataclass(frozen=True)
class RuntimeRow:
    """One runtime's run of the int8 model."""

    runtime: str
    version: str | None
    status: str  # RAN, FAILED, MISSING or NOT_COUNTED
    samples: int = 0  # the first `samples` of the check's (a slow runtime may run fewer)
    agreement: float | None = None  # percent of the float32 model's top-1 predictions kept
    max_abs_diff: float | None = None  # against the float32 model's outputs
    note: str | None = None  # why it did not run, or what failed
    passed: bool = True
    gated: bool = True  # meant to run the model (its failure fails the export)


@dataclass(frozen=True)
class RuntimeCheck:
    """The int8 model in every runtime: the rows, on `samples` samples of the `split` split."""

    samples: int
    split: str
    max_drop: float
    rows: tuple[RuntimeRow, ...]

    @property
    def failed(self) -> tuple[RuntimeRow, ...]:
        """The rows that fail the export: runtimes meant to run the model that did not pass."""
        return tuple(r for r in self.rows if r.gated and not r.passed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the card's `int8_check.runtimes` and `netspec export --json`."""
        return {
            "samples": self.samples,
            "split": self.split,
            "reference": "the float32 model in onnxruntime",
            "gate_points": self.max_drop,
            "rows": [asdict(r) for r in self.rows],
        }

    def lines(self) -> list[str]:
        out = [
            f"int8 in every runtime here, on {self.samples} {self.split} samples: top-1 "
            f"agreement with the float32 model (gate: within {_points(self.max_drop)} of "
            "onnxruntime's), max abs diff"
        ]
        width = max(len(_label(r)) for r in self.rows)
        for r in self.rows:
            label = _label(r).ljust(width)
            if r.agreement is None:
                status = r.status.upper() if r.gated and not r.passed else r.status
                gate = "" if r.gated else " (not gated)"
                out.append(f"  {label}  {status}{gate}: {r.note}")
                continue
            text = f"  {label}  {r.agreement:7.2f}%  {r.max_abs_diff:.1e}"
            if r.samples < self.samples:
                text += f"  (on the first {r.samples})"
            if not r.passed:
                text += "  FAILED" if r.gated else "  beyond the gate"
            out.append(text + ("" if r.gated else "  (not gated)"))
        return out


def summary(card: dict[str, Any]) -> str:
    """A card's `int8_check` in one line (`netspec inspect`): the accuracy, then each runtime's
    agreement or status."""
    parts = []
    if isinstance(card.get("accuracy_float32"), (int, float)):
        parts.append(
            f"{card.get('split', 'test')} {card.get('measure', 'accuracy')} "
            f"{card['accuracy_float32']:.2f}% -> {card.get('accuracy_int8', 0.0):.2f}%"
        )
    rows = (card.get("runtimes") or {}).get("rows") or []
    ran = [
        f"{r.get('runtime')} {r['agreement']:.2f}%"
        if isinstance(r.get("agreement"), (int, float))
        else f"{r.get('runtime')} {r.get('status')}"
        for r in rows
        if isinstance(r, dict)
    ]
    if ran:
        parts.append("top-1 agreement: " + ", ".join(ran))
    return "; ".join(parts) or json.dumps(card)


def _points(n: float) -> str:
    return f"{n:g} point{'' if n == 1 else 's'}"


def _label(row: RuntimeRow) -> str:
    return row.runtime + (f" {row.version}" if row.version else "")


def top1(out: np.ndarray, head: str) -> np.ndarray:
    """The predicted class of every sample (every pixel of a mask): argmax over the classes, or
    one sigmoid unit's class 1 at p >= 0.5 (a linear unit's at score >= 0)."""
    if out.shape[1] == 1:
        return (out[:, 0] >= (0.5 if head == "sigmoid" else 0.0)).astype(np.int64)
    return out.argmax(axis=1)


def _run(runtime: Runtime, model: bytes, x: np.ndarray, shape: tuple[int, ...]) -> Any:
    """The runtime's outputs for x (shaped like the float32 model's) and its version; a slow
    runtime's for the first of x that fit SLOW_SECONDS."""
    if runtime.slow and len(x) > 1:
        start = time.perf_counter()
        first, version = _run(replace(runtime, slow=False), model, x[:1], (1, *shape[1:]))
        spent = max(time.perf_counter() - start, 1e-3)
        # `spent` holds the runtime's set-up too: the pace is an upper bound.
        more = min(len(x) - 1, int(SLOW_SECONDS / spent))
        if more < 1:
            return first, version
        rest, _ = _run(replace(runtime, slow=False), model, x[1 : 1 + more], (more, *shape[1:]))
        return np.concatenate([first, rest]), version
    out, version = runtime.run(model, x)
    if out.size != int(np.prod(shape)):
        raise RuntimeFailed(f"output of shape {tuple(out.shape)}, expected {shape}")
    return out.reshape(shape).astype(np.float64), version


def check_runtimes(
    float_model: bytes,
    int8_model: bytes,
    x: np.ndarray,
    *,
    head: str,
    split: str,
    max_drop: float,
    gated: tuple[str, ...] | None = None,
    runtimes: tuple[Runtime, ...] | None = None,
) -> RuntimeCheck:
    """Run the int8 model in every runtime on the batch `x` (the first: onnxruntime, the gate's
    reference) and compare each with the float32 model run in onnxruntime.

    `gated` names the runtimes meant to run the model (None: every one installed here): only
    their rows can fail, and one of them that is not installed fails as such. `runtimes`
    defaults to runtimes.RUNTIMES (looked up at each call)."""
    runtimes = known.RUNTIMES if runtimes is None else runtimes
    x = np.ascontiguousarray(x, np.float32)
    expected, _ = runtimes[0].run(float_model, x)
    expected = expected.astype(np.float64)
    labels = top1(expected, head)
    rows: list[RuntimeRow] = []
    kept = None  # per sample, the share of its top-1 predictions onnxruntime's int8 run keeps
    for runtime in runtimes:
        meant = gated is None or runtime.name in gated
        try:
            out, version = _run(runtime, int8_model, x, expected.shape)
        except Unavailable as exc:
            named = gated is not None and meant  # asked for by name: cannot be checked
            row = RuntimeRow(runtime.name, None, MISSING, note=str(exc), passed=not named)
            rows.append(replace(row, gated=meant))
            continue
        except RuntimeFailed as exc:
            row = _failure(runtime, float_model, x, expected.shape, str(exc))
            rows.append(replace(row, gated=meant))
            continue
        n = len(out)
        same = (top1(out, head) == labels[:n]).reshape(n, -1).mean(axis=1)
        if kept is None:
            kept = same
        # Measured against onnxruntime on the same samples (a slow runtime runs fewer).
        passed = 100.0 * float(same.mean()) >= 100.0 * float(kept[:n].mean()) - max_drop
        diff = float(np.abs(out - expected[:n]).max())
        agreement = 100.0 * float(same.mean())
        row = RuntimeRow(runtime.name, version, RAN, n, agreement, diff, passed=passed, gated=meant)
        rows.append(row)
    return RuntimeCheck(len(x), split, max_drop, tuple(rows))


def _failure(
    runtime: Runtime, float_model: bytes, x: np.ndarray, shape: tuple[int, ...], why: str
) -> RuntimeRow:
    """A runtime that cannot run the int8 model fails the check, unless it cannot run the
    float32 model either: then the model's float ops are beyond it, and the row is not counted."""
    try:
        _, version = _run(runtime, float_model, x, shape)
    except (Unavailable, RuntimeFailed) as exc:
        note = f"cannot run the float32 model either ({exc})"
        return RuntimeRow(runtime.name, None, NOT_COUNTED, note=note)
    return RuntimeRow(runtime.name, version, FAILED, note=why, passed=False)
