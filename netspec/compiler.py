"""The pipeline: parse -> validate -> IR -> shapes -> params -> train checks, each stage a pure function."""

from __future__ import annotations

from pathlib import Path

from netspec.ir import Graph, build_ir, count_params, infer_shapes
from netspec.source import Source, parse, read
from netspec.spec import validate
from netspec.train_checks import check_train


def compile_source(source: Source) -> Graph:
    """Compile a parsed spec into a fully annotated graph (shapes, params, MACs), train section checked."""
    return check_train(count_params(infer_shapes(build_ir(validate(source)))), source)


def compile_text(text: str, file: str | None = None) -> Graph:
    """Compile spec text; `file` is only used in error messages."""
    return compile_source(parse(text, file))


def compile_file(path: str | Path) -> Graph:
    """Compile a spec file; raises SpecError (with file:line:col) on any problem."""
    return compile_source(read(path))
