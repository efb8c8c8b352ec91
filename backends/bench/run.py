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
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netspec.train_spec import TrainSpec

from ..export.card import Card, session_props
from ..training.device import check_device, use_channels_last
from .agreement import (
    INT8_NOTE,
    agreement_on_run,
    argmax_agreement,
    check_difference,
    default_tolerance,
    precision_of,
)
from .result import ENGINES, ORT, TORCH, TORCH_CL, BenchResult, BenchRow, make_row
from .target import Target, input_shape, load_target
from .timing import BenchError, interleave, ort_call, ort_session, torch_call

DEFAULT_BATCHES = (1, 64)
DEFAULT_REPEATS = 50


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
    """torch's intra-op thread count, or the CPU count without torch."""
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:
        return os.cpu_count() or 1


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
    length: int | None = None,
) -> BenchResult:
    """Time PyTorch eager and onnxruntime on `source`, interleaved, at each batch size.

    `source`: a spec (.yaml; random weights from `seed`), a run directory (its weights, exported
    afresh) or an .onnx file (PyTorch too when its run is beside it). `device`: auto (CUDA when
    both torch and onnxruntime can use it), cpu or cuda. `tolerance`: the largest difference
    allowed, times the output's scale (default: the export's; quantized models: not checked).
    `sets`: `--set` overrides of a spec. `length`: of a dynamic time axis (default 100).
    Token ids (an embedding reads the input) are drawn from the embedding's vocabulary.
    """
    batches, threads = _check_options(batches, threads, repeats, device, tolerance)
    target = load_target(Path(source), seed, sets)
    notes = list(target.notes)
    with _torch_threads(threads if target.graph is not None else None):
        engines = _engines(target, threads, device, notes)
        kind = precision_of(target.onnx)  # type: ignore[arg-type]
        quantized = kind == "int8"
        if tolerance is None and not quantized:
            tolerance = default_tolerance(kind)
        props = session_props(engines.session, str(source))  # the card's, read once
        card = Card.from_props(props, str(source))
        shape, fixed = input_shape(engines.session, card, props, length, notes)
        if fixed is not None and any(b != fixed for b in batches):
            notes.append(f"the model has a fixed batch size of {fixed}: timed at {fixed} only")
            batches = (fixed,)
        if target.graph is not None:  # its dynamic time axis (None) takes the timed length
            ours = target.graph.input_shape
            if tuple(g or n for g, n in zip(ours, shape, strict=False)) != shape:
                raise BenchError(
                    f"the .onnx input {shape} does not fit the run's network {tuple(ours)}"
                )
        # token ids: random ids in [1, input_dim) where random normals would index nothing
        vocab = None if card.token_ids is None else int(card.token_ids["input_dim"])
        timed = _time_batches(engines, shape, batches, repeats, tolerance, seed, vocab)
        agree = timed.agree
        if quantized and engines.torch is not None and target.run is not None:
            real = _agreement_on_run(engines, target.run, fixed)
            if real is not None:
                agree, notes = [real[0]], [*notes, real[1]]
    has_torch = engines.torch is not None
    if quantized and has_torch and tolerance is None:
        notes.append(INT8_NOTE)
    return BenchResult(
        target.name,
        target.source,
        threads,
        tuple(timed.rows),
        timed.worst,
        tuple(notes),
        tolerance=tolerance if has_torch else None,
        quantized=quantized,
        argmax_agreement=float(np.mean(agree)) if quantized and agree else None,
    )


# --- the steps -----------------------------------------------------------------------------------


@dataclass
class Engines:
    """What is timed: the onnxruntime session and, when the network is known, the PyTorch
    module (and its channels-last copy for 2-d convnets), each on its device."""

    session: Any
    ort_device: str  # "cuda" or "cpu": the provider the session runs on
    torch: Any = None
    torch_cl: Any = None
    torch_device: str = "cpu"


@dataclass
class Timed:
    """Every engine's rows, the largest difference from PyTorch, and each batch's argmax
    agreement."""

    rows: list[BenchRow] = field(default_factory=list)
    worst: float | None = None
    agree: list[float] = field(default_factory=list)


def _check_options(
    batches: Sequence[int],
    threads: int | None,
    repeats: int,
    device: str,
    tolerance: float | None,
) -> tuple[tuple[int, ...], int]:
    """The options checked before anything is loaded: the batch sizes and the thread count."""
    if tolerance is not None and not tolerance >= 0:
        raise BenchError(f"--tolerance {tolerance}: expected a non-negative number")
    # onnxruntime runs on the default CUDA device: cuda:N is not one bench can honour.
    check_device(device, indexed=False)
    if repeats < 1:
        raise BenchError(f"--repeats {repeats}: expected a positive integer")
    sizes = parse_batches(batches)
    threads = default_threads() if threads is None else threads
    if threads < 1:
        raise BenchError(f"--threads {threads}: expected a positive integer")
    return sizes, threads


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` meanwhile (None: torch is not touched)."""
    if threads is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _engines(target: Target, threads: int, device: str, notes: list[str]) -> Engines:
    """The session (the target's .onnx, or its graph exported now) and PyTorch's modules on
    the session's device (a note where PyTorch cannot follow onnxruntime onto CUDA)."""
    torch_mod: Any = None
    torch_cl: Any = None
    if target.graph is not None:
        from ..weights import load_module

        module = target.module
        if module is None:
            module = load_module(target.graph, target.weights or {})
        torch_mod = module.eval()
        if _channels_last(target.graph):
            import copy

            import torch

            torch_cl = copy.deepcopy(torch_mod).to(memory_format=torch.channels_last)
    if target.onnx is None:
        from ..export.model import export_onnx

        target.onnx = export_onnx(target.graph, target.weights or {}).SerializeToString()
    session, ort_device = ort_session(target.onnx, threads, device)
    engines = Engines(session, ort_device, torch_mod, torch_cl)
    if torch_mod is not None and ort_device == "cuda":
        import torch

        if torch.cuda.is_available():
            engines.torch_device = "cuda"
            engines.torch = torch_mod.to("cuda")
            engines.torch_cl = None if torch_cl is None else torch_cl.to("cuda")
        else:
            notes.append("onnxruntime runs on CUDA but this PyTorch has no CUDA: it runs on CPU")
    return engines


def _time_batches(
    engines: Engines,
    shape: tuple[int, ...],
    batches: Sequence[int],
    repeats: int,
    tolerance: float | None,
    seed: int,
    vocab: int | None = None,
) -> Timed:
    """Each batch size: the same random input to every engine, outputs compared once, then
    the engines timed interleaved."""
    timed = Timed()
    rng = np.random.default_rng(seed)
    devices = {ORT: engines.ort_device, TORCH: engines.torch_device, TORCH_CL: engines.torch_device}
    for b in batches:
        if vocab is None:
            x = rng.standard_normal((b, *shape)).astype(np.float32)
        else:  # token ids: an embedding's table has no row for a random normal
            x = rng.integers(1, vocab, (b, *shape)).astype(np.float32)
        calls: dict[Hashable, Callable[[], Any]] = {ORT: ort_call(engines.session, x)}
        if engines.torch is not None:
            calls[TORCH] = torch_call(engines.torch, x, engines.torch_device)
            expected, actual = calls[TORCH](), calls[ORT]()
            timed.worst = max(timed.worst or 0.0, check_difference(expected, actual, tolerance))
            timed.agree.append(argmax_agreement(expected, actual))
        if engines.torch_cl is not None:
            calls[TORCH_CL] = torch_call(
                engines.torch_cl, x, engines.torch_device, channels_last=True
            )
            diff = check_difference(calls[TORCH_CL](), calls[ORT](), tolerance)
            timed.worst = max(timed.worst or 0.0, diff)
        times = interleave(calls, repeats)
        for engine in ENGINES:
            if engine in times:
                timed.rows.append(make_row(engine, b, devices[engine], times[engine]))
    return timed


def _agreement_on_run(engines: Engines, run: Any, fixed: int | None) -> tuple[float, str] | None:
    """An int8 model's argmax agreement with PyTorch on samples of its run's own data."""
    return agreement_on_run(
        run,
        lambda x: torch_call(engines.torch, x, engines.torch_device)(),
        lambda x: ort_call(engines.session, x)(),
        fixed,
    )


def _channels_last(graph: Any) -> bool:
    """Whether netspec would train this network in channels-last by default (2-d convnets):
    `use_channels_last`'s `auto` rule, whatever the spec's train section says."""
    return use_channels_last(graph, TrainSpec.model_construct(channels_last="auto"))
