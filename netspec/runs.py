"""Run directories: where a training run lives, and the resolved spec it records."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from netspec.compiler import compile_source
from netspec.data.pipeline import resolve_path
from netspec.errors import Problem, SpecError
from netspec.ir import Graph
from netspec.source import Source, apply_overrides, read
from netspec.summary import render

PATH_KEYS = (("data", "path"), ("data", "test_path"), ("data", "y_path"), ("init", "from"))


def absolute_paths(source: Source) -> Source:
    """Record data paths as absolute, so a run can be evaluated from any directory."""
    train = source.data.get("train") if isinstance(source.data, dict) else None
    if not isinstance(train, dict):
        return source
    sets = []
    for section, key in PATH_KEYS:
        value = (
            (train.get(section) or {}).get(key) if isinstance(train.get(section), dict) else None
        )
        if isinstance(value, str) and value:
            resolved = resolve_path(value, source.file)
            if resolved.exists():
                sets.append(f"train.{section}.{key}={resolved.resolve()}")
    if not sets:
        return source
    fixed = apply_overrides(source, sets)
    # These are our own rewrites: errors should still point into the file, not at a --set.
    return Source(fixed.data, source.file, source.values, source.keys, source.overrides)


def latest_run(root: Path) -> Path | None:
    runs = sorted(p.parent.parent for p in root.glob("*/checkpoint/last.safetensors"))
    return runs[-1] if runs else None


def prepare_run(
    spec: Path, sets: list[str], out: Path | None, resume: bool
) -> tuple[Graph, Path, str, str]:
    """Compile the spec with overrides and pick the run directory."""
    source = absolute_paths(apply_overrides(read(spec), sets))
    graph = compile_source(source)
    if graph.train is None:
        raise SpecError(
            [
                Problem(
                    "the spec has no `train:` section", str(spec), hint="see specs/quickstart.yaml"
                )
            ]
        )
    root = Path("runs") / graph.name
    if out is None:
        if resume:
            out = latest_run(root)
            if out is None:
                raise SpecError(
                    [
                        Problem(
                            f"--resume: no run of '{graph.name}' under {root}",
                            hint="pass the run directory with --out",
                        )
                    ]
                )
        else:
            out = root / time.strftime("%Y%m%d-%H%M%S")
            n = 1
            while out.exists():
                out = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{n}"
                n += 1
    elif not resume and any((out / f).exists() for f in ("model.safetensors", "checkpoint")):
        # Never train over an earlier run: its weights and metrics would be lost or mixed.
        raise SpecError(
            [
                Problem(
                    f"--out {out} already holds a run",
                    hint="continue it with --resume, or choose another --out",
                )
            ]
        )
    spec_text = yaml.safe_dump(source.data, sort_keys=False)
    return graph, out, spec_text, render(graph)
