"""The cyclic garbage collector paused around work that makes many objects which all stay alive
(compiling a spec, reading a CSV table's cells), and run less often in netspec's own processes."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block, back on after (if it was on).

    Such work allocates objects that stay alive (compiling, per layer: pydantic models, source
    locations, nodes; a table: a list and strings per row), so each collection finds nothing
    to free, and the full collections that allocation triggers cost more the more there is to
    traverse: compile time per layer grew from 0.029 ms at 1,000 layers to 0.059 ms at 16,000,
    and stays at 0.03 ms with this (benchmarks/bench_summary.py); reading a 400,000-row CSV
    took about 1.5x longer (benchmarks/bench_csv.py). Garbage left is collected afterwards.
    """
    if not gc.isenabled():  # turned off by the caller: leave it as it is
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# Python's defaults are (700, 10, 10): a young collection every 700 net allocations.
PROCESS_THRESHOLDS = (20_000, 10, 10)


def collect_less() -> None:
    """Fewer collections in a process netspec runs (a command's, a tune worker's).

    A command imports torch, onnx and their kin: over a million objects that live until the
    process ends, which the collector walks again and again while they are imported, at Python's
    default thresholds: 0.4-0.5 s of the 2.4 s a tiny `netspec train` took, 0.18 s with these
    (measured on 2 cores; 0.5 million fewer young collections of the test suite's workers: 10.4 s
    of its CPU in the collector before, 5.3 s after). Cyclic garbage is collected a little later.
    """
    gc.set_threshold(*PROCESS_THRESHOLDS)
