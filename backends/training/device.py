"""Where and how training runs: the device, the memory layout and the allocator's behaviour."""

from __future__ import annotations

import ctypes
import os
import re
import sys
from typing import TYPE_CHECKING

from netspec.errors import NetspecError
from netspec.ir import Graph
from netspec.memory import estimate, host_available
from netspec.memory import total as memory_total
from netspec.summary import human_bytes
from netspec.train_spec import TrainSpec

if TYPE_CHECKING:  # torch only where a torch device is made: bench checks names without it
    import torch


DEVICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(:(\d+))?")


def check_device(device: str, *, indexed: bool = True) -> int | None:
    """Refuse a --device that is not auto, cpu, cuda or cuda:N (`indexed` False: not cuda:N).

    The one spelling rule of every command with a --device; returns N (None without one).
    Needs no torch: `netspec bench` checks an .onnx file's device with onnxruntime alone.
    """
    match = _DEVICE.fullmatch(device)
    if match is None or (match[2] is not None and not indexed):
        accepted = DEVICES if indexed else "auto, cpu or cuda"
        raise NetspecError.one(f"--device {device}: expected {accepted}", hint="e.g. --device cpu")
    return None if match[2] is None else int(match[2])


def pick_device(device: str) -> torch.device:
    """The torch device a --device names: checked (`check_device`), and CUDA against this machine."""
    import torch

    index = check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise NetspecError.one(
            f"--device {device}: no CUDA device is available", hint="use --device cpu"
        )
    count = torch.cuda.device_count() if index is not None else 0
    if index is not None and index >= count:
        raise NetspecError.one(
            f"--device {device}: this machine has {count} CUDA device"
            + ("s" if count != 1 else "")
            + f" (cuda:0 to cuda:{count - 1})",
            hint=f"use --device cuda:N with N below {count}, or --device cuda",
        )
    return torch.device(device)


def use_channels_last(graph: Graph, spec: TrainSpec) -> bool:
    """Channels-last helps convolutions on both CPU (oneDNN) and CUDA; measured in benchmarks/."""
    if spec.channels_last != "auto":
        return spec.channels_last == "on"
    return len(graph.input_shape) == 3 and any(n.kind == "conv2d" for n in graph.nodes)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    By default glibc returns large freed blocks (munmap, heap trimming), so each training step
    page-faults its activations in again: a 1,024-sample epoch of mnist_cnn on 2 cores took
    0.33 s, 0.15 s of it system time for 77,000 page faults, and takes 0.24 s with no faults
    with this (benchmarks/bench_train.py). Blocks up to 32 MiB come from the heap, and freed
    memory stays with the process for the next step, as torch's caching allocator does on
    CUDA: the process keeps its peak memory (max RSS unchanged). It changes the whole process,
    once; only glibc has mallopt. True if set.
    """
    global _kept
    if _kept is None:
        _kept = False
        version = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
        if sys.platform.startswith("linux") and (version or "").startswith("glibc"):
            try:
                mallopt = ctypes.CDLL(None).mallopt
                mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                _kept = bool(
                    mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 1 << 30)
                )
            except (OSError, AttributeError, ValueError):
                pass
    return _kept


_kept: bool | None = None


def available_memory(device: torch.device) -> int | None:
    """Free bytes where training will allocate: the CUDA device's, else the host's MemAvailable."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    return host_available()


def check_memory(
    graph: Graph, spec: TrainSpec, device: torch.device, data_bytes: int, *, force: bool = False
) -> None:
    """Refuse, before any weight is allocated, a network that cannot fit where it would train."""
    # On the host the data is loaded already (counted out of MemAvailable); on CUDA it is not.
    rows = estimate(graph, spec.batch_size, data_bytes if device.type == "cuda" else None)
    need, free = memory_total(rows), available_memory(device)
    if force or free is None or need <= free:
        return
    where = "on the CUDA device" if device.type == "cuda" else "in host memory (MemAvailable)"
    parts = ", ".join(f"{r.what} {human_bytes(r.bytes)}" for r in rows)
    raise NetspecError.one(
        f"training needs about {human_bytes(need)} at batch {spec.batch_size} "
        f"({parts}), but {human_bytes(free)} is free {where}",
        hint="shrink the network or train.batch_size, stream the data (train.data.cache: "
        "disk or none), or pass --force to try anyway",
        stage="train",
    )
