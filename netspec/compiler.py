"""The pipeline: parse -> validate -> IR -> shapes -> params -> train checks, each stage a pure function."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from netspec.ir import Graph, build_ir, count_params, infer_shapes
from netspec.masks import check_masks
from netspec.source import Source, parse, read
from netspec.spec import validate
from netspec.train_checks import check_train


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a spec compiles, back on after (if it was on).

    Compiling allocates many objects that all stay alive (per layer: pydantic models, source
    locations, nodes), so each collection finds nothing to free, and the full collections that
    allocation triggers cost more the more there is to traverse: compile time per layer grew
    from 0.029 ms at 1,000 layers to 0.059 ms at 16,000, and stays at 0.03 ms with this
    (benchmarks/bench_summary.py). What compiling leaves as garbage is collected afterwards.
    """
    if not gc.isenabled():  # turned off by the caller: leave it as it is
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _stages(source: Source) -> Graph:
    """Every stage after parsing, in order (the caller pauses the collector once around all)."""
    return check_train(count_params(check_masks(infer_shapes(build_ir(validate(source))))), source)


def compile_source(source: Source) -> Graph:
    """Compile a parsed spec into a fully annotated graph (shapes, params, MACs), train section checked."""
    with gc_paused():
        return _stages(source)


def compile_text(text: str, file: str | None = None) -> Graph:
    """Compile spec text; `file` is only used in error messages."""
    with gc_paused():
        return _stages(parse(text, file))


def compile_file(path: str | Path) -> Graph:
    """Compile a spec file; raises SpecError (with file:line:col) on any problem."""
    with gc_paused():
        return _stages(read(path))
