"""Run directories: where a run is made, and the one way to load one (spec, weights, metadata)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from netspec.compiler import compile_source
from netspec.data.pipeline import resolve_path
from netspec.errors import DataError, Problem, SpecError
from netspec.ir import Graph
from netspec.source import Source, apply_overrides, read
from netspec.summary import render

PATH_KEYS = (("data", "path"), ("data", "test_path"), ("data", "y_path"), ("init", "from"))


def absolute_paths(source: Source) -> Source:
    """Record data paths as absolute, so a run can be evaluated from any directory.

    A path in the spec file is relative to the file's folder; one given with `--set` is
    relative to the current directory, where the user typed it.
    """
    train = source.data.get("train") if isinstance(source.data, dict) else None
    if not isinstance(train, dict):
        return source
    sets = []
    for section, key in PATH_KEYS:
        value = (
            (train.get(section) or {}).get(key) if isinstance(train.get(section), dict) else None
        )
        if isinstance(value, str) and value:
            where = ("train", section, key)
            typed = any(where[:cut] in source.overrides for cut in (1, 2, 3))
            resolved = resolve_path(value, None if typed else source.file)
            sets.append(f"train.{section}.{key}={resolved}")
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


# --- loading a run ------------------------------------------------------------------------------

SPEC_FILE = "spec.yaml"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


def run_source(directory: Path, sets: Sequence[str] = ()) -> Source:
    """A run's recorded spec.yaml, with `sets` applied.

    The weights are the run's own, so the transfer source named by `train.init` is dropped:
    it is neither needed nor read (it may have moved since).
    """
    path = Path(directory) / SPEC_FILE
    if not path.is_file():
        raise DataError([Problem("not a run directory (no spec.yaml)", str(directory))])
    source = read(path)
    train = source.data.get("train") if isinstance(source.data, dict) else None
    if isinstance(train, dict) and train.get("init") is not None:
        sets = ["train.init=null", *sets]
    return apply_overrides(source, list(sets)) if sets else source


@dataclass
class Run:
    """A trained network located from a run directory or a weights file."""

    directory: Path
    weights_path: Path
    graph: Graph
    weights: dict[str, np.ndarray]  # keyed `<layer name>.<tensor>`, as Layer.weights names them
    meta: dict[str, Any] | None  # model.json: task, classes, head, preprocessing, ...


def find_run(source: Path) -> tuple[Path, Path]:
    """(run directory, weights file) for a run directory or a weights file inside one."""
    source = Path(source)
    if source.is_dir():
        if not (source / SPEC_FILE).is_file():
            raise DataError([Problem("not a run directory (no spec.yaml)", str(source))])
        return source, source / WEIGHTS_FILE
    if source.is_file():
        directory = next(
            (d for d in (source.parent, source.parent.parent) if (d / SPEC_FILE).is_file()), None
        )
        if directory is None:
            raise DataError(
                [
                    Problem(
                        "no spec.yaml beside the weights file (or one folder up)",
                        str(source),
                        hint="export a run directory made by `netspec train`",
                    )
                ]
            )
        return directory, source
    raise DataError([Problem("no such run directory or weights file", str(source))])


def load_run(source: Path) -> Run:
    """Compile a run's spec.yaml and read its weights (model.safetensors or a checkpoint file)."""
    directory, weights_path = find_run(source)
    weights, header = read_weights(weights_path)
    graph = compile_source(run_source(directory))
    meta = None
    meta_path = directory / META_FILE
    try:
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        elif "netspec" in header:
            meta = json.loads(header["netspec"])
    except (OSError, ValueError) as exc:
        raise DataError(
            [Problem(f"cannot read the model metadata: {exc}", str(meta_path))]
        ) from None
    check_weights(graph, weights, strict=True)
    return Run(directory, weights_path, graph, weights, meta)


def read_weights(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors of a safetensors file as arrays keyed `<layer>.<tensor>`, and its header.

    Needs only numpy and safetensors (no torch). A training checkpoint gives its model part.
    """
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise DataError([Problem("no such weights file", str(path))])
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise DataError(
            [Problem(f"cannot read weights: {exc}", str(path), hint="expected a .safetensors file")]
        ) from None
    if any(k.startswith("model/") for k in tensors):
        tensors = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    return tensors, header


# torch's BatchNorm counts its updates; no layer declares it and nothing but torch reads it.
TORCH_COUNTERS = ("num_batches_tracked",)


def check_weights(graph: Graph, weights: dict[str, Any], *, strict: bool = False) -> None:
    """Every tensor the layers declare is there with its shape (strict: and nothing else is)."""
    missing, wrong = [], []
    known = set()
    for node in graph.nodes:
        declared = node.weights
        for tensor, w in declared.items():
            key = f"{node.name}.{tensor}"
            known.add(key)
            if key not in weights:
                missing.append(key)
            elif tuple(np.shape(weights[key])) != w.shape:
                wrong.append(f"{key} is {tuple(np.shape(weights[key]))}, not {w.shape}")
        if declared:
            known.update(f"{node.name}.{c}" for c in TORCH_COUNTERS)
    unexpected = sorted(set(weights) - known) if strict else []
    if missing or wrong or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if wrong:
            parts.append(f"wrong shape: {_few(wrong)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        raise DataError(
            [
                Problem(
                    f"the weights do not fit the network '{graph.name}': {'; '.join(parts)}",
                    hint="use the weights with the spec they were trained with (the run's spec.yaml)",
                )
            ]
        )


def _few(items: Sequence[str]) -> str:
    return ", ".join(items[:4]) + (f", ... ({len(items)} in all)" if len(items) > 4 else "")
