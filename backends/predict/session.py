"""The one onnxruntime session factory: device auto/cpu/cuda, thread count, a model from a path or bytes."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netspec.errors import NetspecError, first_line

PROVIDERS = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_HINT = (
    "install the gpu extra: pip install 'netspec[gpu]' && pip uninstall -y onnxruntime "
    "(onnxruntime-gpu provides the same `onnxruntime` module)"
)


class SessionError(NetspecError):
    """onnxruntime is missing, the provider cannot be used, or the model cannot be loaded."""


def _error(message: str, file: Path | None = None, hint: str | None = None) -> SessionError:
    where = None if file is None else str(file)
    return SessionError.one(message, where, hint=hint, kind="model" if file else "usage")


def open_session(
    model: str | Path | bytes | Any,
    device: str = "auto",
    *,
    threads: int | None = None,
) -> Any:
    """An onnxruntime InferenceSession on `device`: auto (CUDA when it works, else CPU), cpu, cuda.

    `model` is a file path, the model's bytes or a ModelProto. `threads` pins the intra-op
    threads (and runs ops one at a time, without spinning threads: for timing beside PyTorch);
    without it, OMP_NUM_THREADS caps them where it is set (env_threads).
    Errors name the option `--device`. Sessions never fall back to the CPU silently: `device`
    is what runs. Errors are SessionErrors (exit 2, with a hint).
    """
    if device not in PROVIDERS:
        raise _error(f"--device {device}: expected one of {', '.join(PROVIDERS)}")
    path = None
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise _error("no such model file" if not path.exists() else "not a file", path)
    elif not isinstance(model, bytes):
        model = model.SerializeToString()  # a ModelProto
    try:
        import onnxruntime as ort
    except ImportError:
        raise _error(
            "running ONNX models needs onnxruntime", path, "pip install onnxruntime"
        ) from None
    source = str(path) if path is not None else model
    options = _options(ort, threads)
    available = ort.get_available_providers()
    if device == "cuda" and CUDA not in available:
        raise _error(
            f"--device cuda: this onnxruntime has no {CUDA} (it has {', '.join(available)})",
            hint=GPU_HINT,
        )
    if device in ("auto", "cuda") and CUDA in available:
        try:
            session = _session(ort, source, options, [CUDA, CPU])
        except Exception as exc:  # onnxruntime raises its own types; the model is checked below
            session, reason = None, first_line(exc)
        else:
            reason = "onnxruntime fell back to the CPU (no usable CUDA device?)"
        if session is not None and session.get_providers()[0] == CUDA:
            return session
        if device == "cuda":
            _cpu_session(ort, source, options, path)  # a broken model is reported as such
            raise _error(f"--device cuda: CUDA is not usable: {reason}", hint=GPU_HINT)
    return _cpu_session(ort, source, options, path)


def device_of(session: Any) -> str:
    """Where a session runs: cuda or cpu."""
    return "cuda" if session.get_providers()[0] == CUDA else "cpu"


def env_threads() -> int | None:
    """OMP_NUM_THREADS as a thread count, the variable torch and numpy follow (onnxruntime's
    PyPI build does not); None when it is unset or not a positive whole number."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def _options(ort: Any, threads: int | None) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings on the user's terminal
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is None and (capped := env_threads()) is not None:
        # A process capped to N threads (a container's setting, jobs sharing a machine) keeps
        # to N here too, as torch does; else onnxruntime's default, a thread per core.
        options.intra_op_num_threads = capped
    elif threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # onnxruntime's threads busy-wait after a run by default: between interleaved calls they
        # would take the cores from PyTorch's threads (100x slower PyTorch on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _session(
    ort: Any, source: str | bytes, options: Any, providers: list[str], disabled: Sequence[str] = ()
) -> Any:
    # onnxruntime prints (to stdout) when it falls back from a failing provider: keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        session = ort.InferenceSession(
            source, options, providers=providers, disabled_optimizers=list(disabled)
        )
    session.disable_fallback()
    return session


# onnxruntime fuses each Add + LayerNormalization into com.microsoft.SkipLayerNormalization;
# on the CPU (1.32) the fused kernel is slower at every size benchmarks/bench_seq.py tried: a
# transformer encoder ran 0.81x eager's speed at batch 64 with it and 1.06x without.
CPU_DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


def _cpu_session(ort: Any, source: str | bytes, options: Any, path: Path | None) -> Any:
    try:
        return _session(ort, source, options, [CPU], CPU_DISABLED_OPTIMIZERS)
    except Exception as exc:  # InvalidProtobuf, Fail, InvalidGraph, ...: all mean a bad model
        raise _error(
            f"cannot load the model ({first_line(exc)}); expected an ONNX model file", path
        ) from None
