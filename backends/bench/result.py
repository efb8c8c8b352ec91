"""What `netspec bench` measured: a row per engine and batch size, the comparison, and its text and JSON."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from .timing import p90

TORCH = "pytorch"
TORCH_CL = "pytorch-cl"  # PyTorch eager in channels-last memory format (2-d convnets only)
ORT = "onnxruntime"
ENGINES = (TORCH, TORCH_CL, ORT)  # the order of rows and tables
LABELS = {TORCH: "pytorch", TORCH_CL: "pytorch channels-last", ORT: "onnxruntime"}


@dataclass(frozen=True)
class BenchRow:
    """One engine at one batch size: latency of one call (ms) and throughput (samples/s)."""

    engine: str  # "pytorch", "pytorch-cl" (channels-last) or "onnxruntime"
    batch: int
    device: str  # "cpu" or "cuda" (onnxruntime: the provider it runs on)
    median_ms: float
    p90_ms: float
    samples_per_s: float  # batch / median latency
    runs: int


@dataclass(frozen=True)
class BenchResult:
    """Every row, and what was measured."""

    model: str  # the network's name (or the .onnx file's stem)
    source: str  # "spec (random weights, seed N)", "run", "onnx" or "onnx + run"
    threads: int
    rows: tuple[BenchRow, ...]
    max_abs_diff: float | None  # pytorch (both layouts) vs onnxruntime, largest over the batches
    notes: tuple[str, ...] = field(default_factory=tuple)
    tolerance: float | None = None  # what max_abs_diff was checked against (None: not checked)
    quantized: bool = False  # an int8 (QDQ) model
    argmax_agreement: float | None = None  # quantized: fraction of equal argmax, over batches

    def batches(self) -> list[int]:
        return sorted({r.batch for r in self.rows})

    def row(self, engine: str, batch: int) -> BenchRow | None:
        return next((r for r in self.rows if r.engine == engine and r.batch == batch), None)

    def speedup(self, batch: int, engine: str = TORCH) -> float | None:
        """How many times faster onnxruntime is than PyTorch `engine` (median latency ratio)."""
        t, o = self.row(engine, batch), self.row(ORT, batch)
        return None if t is None or o is None else t.median_ms / o.median_ms


def make_row(engine: str, batch: int, device: str, seconds: list[float]) -> BenchRow:
    """The row of one engine at one batch size from its timed calls (seconds each)."""
    med = statistics.median(seconds)
    return BenchRow(
        engine=engine,
        batch=batch,
        device=device,
        median_ms=med * 1e3,
        p90_ms=p90(seconds) * 1e3,
        samples_per_s=batch / med if med > 0 else float("inf"),
        runs=len(seconds),
    )


def render(result: BenchResult) -> str:
    """A table per batch size, and the speedup of onnxruntime over PyTorch in each layout."""
    out = [f"{result.model}: {result.source}, {result.threads} threads"]
    if result.max_abs_diff is not None and result.tolerance is not None:
        out.append(
            f"outputs match: max abs diff {result.max_abs_diff:.1e} "
            f"(tolerance {result.tolerance:.0e})"
        )
    elif result.max_abs_diff is not None:
        agree = result.argmax_agreement
        out.append(
            f"outputs compared: max abs diff {result.max_abs_diff:.1e}"
            + (f", argmax agreement {agree:.1%}" if agree is not None else "")
        )
    out += [f"note: {n}" for n in result.notes]
    for b in result.batches():
        out += ["", f"batch {b}"]
        out.append(
            f"{'engine':<21} {'device':<6} {'median ms':>10} {'p90 ms':>10} {'samples/s':>12}"
        )
        for engine in ENGINES:
            r = result.row(engine, b)
            if r is not None:
                out.append(
                    f"{LABELS[engine]:<21} {r.device:<6} {r.median_ms:>10.3f} {r.p90_ms:>10.3f} "
                    f"{r.samples_per_s:>12,.0f}"
                )
        for engine in (TORCH, TORCH_CL):
            s = result.speedup(b, engine)
            if s is not None:
                out.append(f"speedup onnxruntime / {LABELS[engine]}: {s:.2f}x")
    return "\n".join(out) + "\n"


def to_dict(result: BenchResult) -> dict[str, Any]:
    """The result as `netspec bench --json` prints it: every field, and the speedups."""
    d = asdict(result)
    d["rows"] = [asdict(r) for r in result.rows]
    d["notes"] = list(result.notes)
    d["speedup"] = {str(b): result.speedup(b) for b in result.batches()}
    if any(r.engine == TORCH_CL for r in result.rows):
        d["speedup_channels_last"] = {str(b): result.speedup(b, TORCH_CL) for b in result.batches()}
    return d
