"""Inference speed: PyTorch eager against onnxruntime on the same model and the same input.

`bench(source, ...)` takes a spec (random weights, seeded), a run directory (its weights) or an
exported .onnx file (with the run beside it; without one, onnxruntime is timed alone). For each
batch size both engines get the same random input; after a warm-up they are timed interleaved,
one call of each in turn (the order swapped every round), so machine noise hits both alike. A
timed call is numpy in, numpy out for both engines. PyTorch runs eager in eval mode under
`torch.inference_mode()`; onnxruntime runs with every graph optimization on. Both use `threads`
intra-op threads. For a 2-d convnet PyTorch is timed twice: in NCHW, and in channels-last (the
module and each input converted, the conversion timed), which is what netspec trains with and
the fair eager baseline on CPU. Before timing, the outputs are compared once (the largest
absolute difference is in the result; a difference beyond the tolerance raises ParityError).
The tolerance is the export's (1e-4, 1e-2 for float16 models) unless given. A quantized model
(QuantizeLinear nodes: `netspec export --int8`) differs from PyTorch by its rounding, not by a
bug: without a given tolerance its difference and how often the two agree on the argmax are
reported, not checked.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netspec.train_spec import TrainSpec

from .agreement import (
    INT8_NOTE,
    agreement_on_run,
    argmax_agreement,
    check_difference,
    default_tolerance,
    precision_of,
)
from .bench_target import input_shape, load_target
from .timing import BenchError, interleave, ort_call, ort_session, p90, torch_call
from .training.device import check_device, use_channels_last

TORCH = "pytorch"
TORCH_CL = "pytorch-cl"  # PyTorch eager in channels-last memory format (2-d convnets only)
ORT = "onnxruntime"
DEFAULT_BATCHES = (1, 64)
DEFAULT_REPEATS = 50
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


# --- engines -------------------------------------------------------------------------------------


def parse_batches(text: str | Sequence[int]) -> tuple[int, ...]:
    """'1,64' (or a sequence of ints) -> (1, 64); every size a positive integer."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[int] = []
    for item in items:
        try:
            n = int(str(item).strip())
        except ValueError:
            n = 0
        if n < 1:
            raise BenchError(f"--batches {text}: expected positive integers separated by commas")
        if n not in out:
            out.append(n)
    if not out:
        raise BenchError("--batches: give at least one batch size")
    return tuple(out)


def default_threads() -> int:
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:
        return os.cpu_count() or 1


# --- the benchmark -------------------------------------------------------------------------------


def bench(
    source: str | Path,
    batches: Sequence[int] = DEFAULT_BATCHES,
    *,
    threads: int | None = None,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    device: str = "auto",
    tolerance: float | None = None,
    sets: Sequence[str] = (),
) -> BenchResult:
    """Time PyTorch eager and onnxruntime on `source`, interleaved, at each batch size.

    `source`: a spec (.yaml; random weights from `seed`), a run directory (its weights, exported
    afresh) or an .onnx file (PyTorch too when its run is beside it). `device`: auto (CUDA when
    both torch and onnxruntime can use it), cpu or cuda. `tolerance`: the largest difference
    allowed, times the output's scale (default: the export's; quantized models: not checked).
    `sets`: `--set` overrides of a spec.
    """
    if tolerance is not None and not tolerance >= 0:
        raise BenchError(f"--tolerance {tolerance}: expected a non-negative number")
    # onnxruntime runs on the default CUDA device: cuda:N is not one bench can honour.
    check_device(device, indexed=False)
    if repeats < 1:
        raise BenchError(f"--repeats {repeats}: expected a positive integer")
    batches = parse_batches(batches)
    threads = default_threads() if threads is None else threads
    if threads < 1:
        raise BenchError(f"--threads {threads}: expected a positive integer")
    target = load_target(Path(source), seed, sets)
    notes = list(target.notes)

    torch_mod: Any = None
    torch_cl: Any = None  # the same module in channels-last, for 2-d convnets
    old_threads = None
    torch_device = "cpu"
    if target.graph is not None:
        import torch

        from .weights import load_module

        old_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        module = target.module if target.module is not None else None
        if module is None:
            module = load_module(target.graph, target.weights or {})
        torch_mod = module.eval()
        if _channels_last(target.graph):
            import copy

            torch_cl = copy.deepcopy(torch_mod).to(memory_format=torch.channels_last)
    try:
        if target.onnx is None:
            from .export.model import export_onnx

            target.onnx = export_onnx(target.graph, target.weights or {}).SerializeToString()
        session, ort_device = ort_session(target.onnx, threads, device)
        if torch_mod is not None and ort_device == "cuda":
            import torch

            if torch.cuda.is_available():
                torch_device = "cuda"
                torch_mod = torch_mod.to("cuda")
                torch_cl = None if torch_cl is None else torch_cl.to("cuda")
            else:
                notes.append(
                    "onnxruntime runs on CUDA but this PyTorch has no CUDA: it runs on CPU"
                )
        kind = precision_of(target.onnx)
        quantized = kind == "int8"
        if tolerance is None and not quantized:
            tolerance = default_tolerance(kind)
        agree: list[float] = []
        shape, fixed = input_shape(session)
        if fixed is not None and any(b != fixed for b in batches):
            notes.append(f"the model has a fixed batch size of {fixed}: timed at {fixed} only")
            batches = (fixed,)
        if target.graph is not None and tuple(target.graph.input_shape) != shape:
            raise BenchError(
                f"the .onnx input {shape} does not fit the run's network "
                f"{tuple(target.graph.input_shape)}"
            )
        rows: list[BenchRow] = []
        worst: float | None = None
        rng = np.random.default_rng(seed)
        for b in batches:
            x = rng.standard_normal((b, *shape)).astype(np.float32)
            calls: dict[Hashable, Callable[[], Any]] = {ORT: ort_call(session, x)}
            if torch_mod is not None:
                calls[TORCH] = torch_call(torch_mod, x, torch_device)
                expected, actual = calls[TORCH](), calls[ORT]()
                worst = max(worst or 0.0, check_difference(expected, actual, tolerance))
                agree.append(argmax_agreement(expected, actual))
            if torch_cl is not None:
                calls[TORCH_CL] = torch_call(torch_cl, x, torch_device, channels_last=True)
                worst = max(
                    worst or 0.0, check_difference(calls[TORCH_CL](), calls[ORT](), tolerance)
                )
            times = interleave(calls, repeats)
            devices = {ORT: ort_device, TORCH: torch_device, TORCH_CL: torch_device}
            for engine in ENGINES:
                if engine in times:
                    rows.append(_row(engine, b, devices[engine], times[engine]))
        if quantized and torch_mod is not None and target.run is not None:
            real = agreement_on_run(
                target.run,
                lambda x: torch_call(torch_mod, x, torch_device)(),
                lambda x: ort_call(session, x)(),
                fixed,
            )
            if real is not None:
                agree, notes = [real[0]], [*notes, real[1]]
    finally:
        if old_threads is not None:
            import torch

            torch.set_num_threads(old_threads)
    agreement = float(np.mean(agree)) if quantized and agree else None
    if quantized and torch_mod is not None and tolerance is None:
        notes.append(INT8_NOTE)
    return BenchResult(
        target.name,
        target.source,
        threads,
        tuple(rows),
        worst,
        tuple(notes),
        tolerance=tolerance if torch_mod is not None else None,
        quantized=quantized,
        argmax_agreement=agreement,
    )


def _channels_last(graph: Any) -> bool:
    """Whether netspec would train this network in channels-last by default (2-d convnets):
    `use_channels_last`'s `auto` rule, whatever the spec's train section says."""
    return use_channels_last(graph, TrainSpec.model_construct(channels_last="auto"))


def _row(engine: str, batch: int, device: str, seconds: list[float]) -> BenchRow:
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


# --- text ----------------------------------------------------------------------------------------


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
    from dataclasses import asdict

    d = asdict(result)
    d["rows"] = [asdict(r) for r in result.rows]
    d["notes"] = list(result.notes)
    d["speedup"] = {str(b): result.speedup(b) for b in result.batches()}
    if any(r.engine == TORCH_CL for r in result.rows):
        d["speedup_channels_last"] = {str(b): result.speedup(b, TORCH_CL) for b in result.batches()}
    return d


__all__ = [
    "DEFAULT_BATCHES",
    "ORT",
    "TORCH",
    "TORCH_CL",
    "BenchError",
    "BenchResult",
    "BenchRow",
    "bench",
    "interleave",
    "ort_call",
    "ort_session",
    "p90",
    "parse_batches",
    "render",
    "to_dict",
    "torch_call",
]
