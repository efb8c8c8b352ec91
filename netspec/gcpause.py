"""The cyclic garbage collector paused around work that makes many objects which all stay alive:
compiling a spec (compiler.py), reading a CSV table's cells (data/table.py, table_stream.py)."""

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
