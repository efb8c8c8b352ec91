"""Timing primitives: interleaved rounds, and numpy-in, numpy-out calls of each engine.

Used by `netspec bench` (bench/run.py) and the scripts in benchmarks/.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import NetspecError, first_line

from ..predict.session import device_of, open_session


class BenchError(NetspecError):
    """The model cannot be benchmarked as asked."""


# --- timing --------------------------------------------------------------------------------------


def p90(values: Sequence[float]) -> float:
    """The nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def interleave(
    calls: dict[Hashable, Callable[[], Any]],
    repeats: int,
    *,
    warmup: int = 3,
    warmup_s: float = 0.2,
) -> dict[Hashable, list[float]]:
    """Seconds per call of every callable, `repeats` each, timed round-robin.

    Warm-up first: `warmup` calls of each, then more rounds until `warmup_s` has passed. In the
    timed rounds the order rotates every round and reverses every other one, so no callable
    always runs right after the same other one.
    """
    keys = list(calls)
    for _ in range(warmup):
        for k in keys:
            calls[k]()
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        for k in keys:
            calls[k]()
    times: dict[Hashable, list[float]] = {k: [] for k in keys}
    clock = time.perf_counter
    for r in range(repeats):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        if r % 2:
            order.reverse()
        for k in order:
            fn = calls[k]
            start = clock()
            fn()
            times[k].append(clock() - start)
    return times


# --- engines ------------------------------------------------------------------------------------


def ort_session(model: bytes | str | Path, threads: int, device: str = "auto") -> tuple[Any, str]:
    """An onnxruntime session pinned to `threads`, and the device it runs on (cuda or cpu)."""
    session = open_session(model, device, threads=threads)
    return session, device_of(session)


def ort_call(session: Any, x: np.ndarray) -> Callable[[], np.ndarray]:
    """A no-argument call running x (numpy in, numpy out) through the session."""
    feed = session.get_inputs()[0]
    dtype = np.float16 if feed.type == "tensor(float16)" else np.float32
    inputs = {feed.name: np.ascontiguousarray(x, dtype=dtype)}
    run = session.run

    def call() -> np.ndarray:
        return run(None, inputs)[0]

    try:
        call()
    except Exception as exc:  # onnxruntime raises its own types
        raise BenchError(
            f"onnxruntime fails to run the model on {x.shape}: {first_line(exc)}"
        ) from None
    return call


def torch_call(
    module: Any, x: np.ndarray, device: str = "cpu", *, channels_last: bool = False
) -> Callable[[], np.ndarray]:
    """A no-argument call running x (numpy in, numpy out) through the module, eager, eval mode.

    `channels_last`: each call converts x (N, C, H, W) to channels-last memory format, as a user
    of a channels-last module would (the module must be converted already); the output is read
    back whatever its layout.
    """
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if device == "cuda":

        def call() -> np.ndarray:
            with torch.inference_mode():
                y = module(xt.to("cuda", non_blocking=False).contiguous(memory_format=layout))
                return y.cpu().numpy()

    else:

        def call() -> np.ndarray:
            with torch.inference_mode():
                return module(xt.contiguous(memory_format=layout)).numpy()

    return call
