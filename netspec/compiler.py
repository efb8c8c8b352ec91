"""The pipeline: parse -> validate -> IR -> shapes -> params -> train checks, each stage a pure function."""

from __future__ import annotations

from pathlib import Path

from netspec.gcpause import gc_paused
from netspec.ir import Graph, build_ir, count_params, infer_shapes
from netspec.masks import check_masks
from netspec.source import Source, parse, read
from netspec.spec import validate
from netspec.train_checks import check_train


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
