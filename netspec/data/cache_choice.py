"""Which cache a source gets (`choose_cache`: ram, or disk past a share of the available
memory) and how many decoding workers by default (while training, and for a pass the run waits
on), from the cores this process may use; no numpy, so `netspec summary` can ask."""

from __future__ import annotations

import os

COMFORT = 0.25  # data in RAM at most this share of the available memory: `auto` keeps ram


def available_memory() -> int | None:
    """The host's available memory (memory.host_available: MemAvailable, None elsewhere)."""
    from netspec.memory import host_available

    return host_available()


def choose_cache(mode: str, nbytes: int, notes: list[str]) -> str:
    """`auto` as ram, or disk when the decoded data would take more than COMFORT of the
    available memory (one note says so); other modes as asked."""
    if mode != "auto":
        return mode
    free = available_memory()
    if free is None or nbytes <= COMFORT * free:
        return "ram"
    notes.append(
        f"the decoded data take {nbytes / 2**30:.1f} GiB, over a quarter of the "
        f"{free / 2**30:.1f} GiB of available memory: streamed from a disk cache (cache: auto; "
        "set cache: ram to load it anyway)"
    )
    return "disk"


def default_workers() -> int:
    """Decoding worker processes by default: the CPU count less one (the training process), at
    most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def pass_workers() -> int:
    """Worker processes for a pass over the data that the run waits on (decoding a folder into
    memory, its value range, its statistics): every core this process may use, at most 8, shared
    among the data-parallel processes of this node (torchrun's LOCAL_WORLD_SIZE)."""
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    except ValueError:  # not torchrun's
        local = 1
    return max(1, min(8, cores() // local))
