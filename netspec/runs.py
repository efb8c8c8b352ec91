"""Run directories: where a run is made, and the one way to read one (spec, weights, metadata).

The record itself (file names, metadata) is `netspec/run_record.py`, re-exported here."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml

from netspec.compiler import compile_source
from netspec.data.paths import resolve_path
from netspec.errors import DataError, SpecError, few
from netspec.fileio import is_temporary
from netspec.ir import Graph
from netspec.run_record import RunLayout, RunMeta
from netspec.source import Source, apply_overrides, read
from netspec.summary import render

if TYPE_CHECKING:  # numpy is imported where it computes: `netspec summary` starts without it
    import numpy as np

__all__ = [
    "LoadedRun",
    "PreparedRun",
    "RunLayout",
    "RunMeta",
    "TrainOptions",
    "absolute_paths",
    "check_out",
    "find_run",
    "is_run",
    "prepare_run",
    "read_run",
    "read_weights",
    "run_meta",
    "run_source",
    "run_weights",
]

PATH_KEYS = (("data", "path"), ("data", "test_path"), ("data", "y_path"), ("init", "from"))


def absolute_paths(source: Source) -> Source:
    """Record data paths as absolute, so a run can be evaluated from any directory.

    A path in the spec file is relative to the file's folder; one given with `--set` is
    relative to the current directory, where the user typed it.
    """
    train = source.data.get("train") if isinstance(source.data, dict) else None
    if not isinstance(train, dict):
        return source
    data = copy.deepcopy(source.data)
    changed = False
    for section, key in PATH_KEYS:
        part = data["train"].get(section)
        value = part.get(key) if isinstance(part, dict) else None
        if isinstance(value, str) and value:
            where = ("train", section, key)
            typed = any(where[:cut] in source.overrides for cut in (1, 2, 3))
            # The resolved path goes in as a value: never re-parsed as YAML or `--set` text.
            part[key] = str(resolve_path(value, None if typed else source.file))
            changed = True
    if not changed:
        return source
    return Source(data, source.file, source.values, source.keys, source.overrides)


def latest_run(root: Path) -> Path | None:
    runs = sorted(
        p.parent.parent for p in root.glob(f"*/{RunLayout.LAST}") if is_run(p.parent.parent)
    )
    return runs[-1] if runs else None


def is_run(directory: Path) -> bool:
    """Whether `netspec train` made `directory`: the marker is its model.json, a RunMeta with
    the netspec version that wrote it (written before any other file of the run).

    Never the mere presence of a spec.yaml or weights: those may be the user's own files.
    """
    path = RunLayout(directory).meta
    if not path.is_file():
        return False
    try:
        return RunMeta.read(path).netspec_version is not None
    except DataError:
        return False


def check_out(out: Path, resume: bool) -> None:
    """Refuse an --out that is a file, a folder of other things, or (without --resume) a run.

    Checked before any data is read: an empty or new folder, or a run being resumed, is fine.
    """
    if out.exists() and not out.is_dir():
        raise SpecError.one(
            f"--out {out} is a file, not a folder", hint="choose a new or empty folder for the run"
        )
    if is_run(out):  # netspec's own files only: nothing of the user's is replaced
        if not resume:
            # Never train over an earlier run: its weights and metrics would be lost or mixed.
            raise SpecError.one(
                f"--out {out} already holds a run",
                hint="continue it with --resume, or choose another --out",
            )
        return
    if resume:
        raise SpecError.one(
            f"--resume: no checkpoint in {out}: it holds no run made by netspec train "
            f"(no {RunLayout.META} written by netspec)",
            hint="train without --resume, or point --out at an earlier run",
        )
    # Files left by an atomic write that was killed are not the user's: they do not count.
    others = (
        sorted(p.name for p in out.iterdir() if not is_temporary(p.name)) if out.is_dir() else []
    )
    if others:
        raise SpecError.one(
            f"--out {out} is a folder with other files ({few(others, 4)}), not a run: "
            "the run's files would be mixed with them",
            hint="choose a new or empty folder for the run",
        )


def remove_stale_temporaries(run: Path) -> None:
    """Delete the temporary files of atomic writes a kill -9 interrupted: never read, only wasted space."""
    for folder in (run, RunLayout(run).checkpoints):
        if folder.is_dir():
            for path in folder.iterdir():
                if is_temporary(path.name) and path.is_file():
                    path.unlink(missing_ok=True)


class PreparedRun(NamedTuple):
    """A compiled spec, the run directory it trains into, and the texts the run records."""

    graph: Graph
    run_dir: Path
    spec_text: str = ""
    summary_text: str = ""


@dataclass(frozen=True)
class TrainOptions:
    """How a run trains, the same whoever starts it: `netspec train`, `Network.train`, a tune
    trial or one torchrun rank."""

    device: str = "auto"  # auto, cpu, cuda or cuda:N
    resume: bool = False  # continue the run directory's last saved epoch
    progress: bool | None = None  # a live bar; None: when stderr is a terminal
    force: bool = False  # train even when the memory estimate says it will not fit


def prepare_run(
    spec: Path | Source, sets: Sequence[str], out: Path | None, resume: bool
) -> PreparedRun:
    """Compile the spec (a file, or one parsed already) with overrides; pick the run directory."""
    source = absolute_paths(
        apply_overrides(spec if isinstance(spec, Source) else read(spec), list(sets))
    )
    graph = compile_source(source)
    if graph.train is None:
        raise SpecError.one(
            "the spec has no `train:` section", source.file, hint="see specs/quickstart.yaml"
        )
    root = Path("runs") / graph.name
    if out is None:
        if resume:
            out = latest_run(root)
            if out is None:
                raise SpecError.one(
                    f"--resume: no run of '{graph.name}' under {root}",
                    hint="pass the run directory with --out",
                )
        else:
            out = root / time.strftime("%Y%m%d-%H%M%S")
            n = 1
            while out.exists():
                out = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{n}"
                n += 1
    else:
        check_out(out, resume)
    if resume:
        remove_stale_temporaries(out)
    spec_text = yaml.safe_dump(source.data, sort_keys=False)
    return PreparedRun(graph, out, spec_text, render(graph))


# --- loading a run ------------------------------------------------------------------------------


def run_source(directory: Path, sets: Sequence[str] = ()) -> Source:
    """A run's recorded spec.yaml, with `sets` applied.

    The weights are the run's own, so the transfer source named by `train.init` is dropped:
    it is neither needed nor read (it may have moved since).
    """
    path = RunLayout(directory).spec
    if not path.is_file():
        raise DataError.one("not a run directory (no spec.yaml)", str(directory))
    source = read(path)
    train = source.data.get("train") if isinstance(source.data, dict) else None
    if isinstance(train, dict) and train.get("init") is not None:
        sets = ["train.init=null", *sets]
    return apply_overrides(source, list(sets)) if sets else source


@dataclass
class LoadedRun:
    """A trained network read from a run directory or a weights file (`read_run`); the Python
    API's lazy `netspec.Run` is another thing (run_api.py)."""

    directory: Path
    weights_path: Path
    graph: Graph
    weights: dict[str, np.ndarray]  # keyed `<layer name>.<tensor>`, as Layer.weights names them
    meta: RunMeta | None  # model.json: task, classes, head, preprocessing, ...
    notes: list[str] = field(default_factory=list)  # e.g. the checkpoint used as the weights


def find_run(source: Path) -> tuple[Path, Path, list[str]]:
    """(run directory, weights file, notes) for a run directory or a weights file inside one."""
    source = Path(source)
    if source.is_dir():
        if not RunLayout(source).spec.is_file():
            raise DataError.one("not a run directory (no spec.yaml)", str(source))
        weights_path, notes = run_weights(source)
        return source, weights_path, notes
    if source.is_file():
        directory = next(
            (d for d in (source.parent, source.parent.parent) if RunLayout(d).spec.is_file()),
            None,
        )
        if directory is None:
            raise DataError.one(
                "no spec.yaml beside the weights file (or one folder up)",
                str(source),
                hint="export a run directory made by `netspec train`",
            )
        return directory, source, []
    raise DataError.one("no such run directory or weights file", str(source))


def run_weights(directory: Path) -> tuple[Path, list[str]]:
    """The weights of a run: model.safetensors, or, for a run interrupted before it was written,
    its best checkpoint, else its last one, with a note naming the file and its epoch.

    The one rule for every command that reads a run (export, evaluate, bench).
    """
    directory = Path(directory)
    layout = RunLayout(directory)
    if layout.weights.is_file():
        return layout.weights, []
    for name in layout.STAND_INS:
        path = directory / name
        if path.is_file():
            epoch = checkpoint_epoch(path)
            after = f" (saved after epoch {epoch})" if epoch is not None else ""
            return path, [
                f"{directory} has no {layout.WEIGHTS} (its training did not finish): "
                f"using {name}{after}"
            ]
    raise DataError.one(
        f"the run holds no weights yet: its training stopped before the first epoch "
        f"ended (no {layout.WEIGHTS}, no checkpoint)",
        str(directory),
        hint=f"resume it with: netspec train {layout.spec} --out {directory} --resume",
    )


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch a checkpoint file was saved after, from its header (None if it does not say)."""
    header = weights_header(path)  # {} when unreadable: whoever reads its tensors reports it
    try:
        if "epoch" in header:  # best.safetensors
            return int(header["epoch"])
        if "netspec_state" in header:  # last.safetensors: the whole training state
            return int(json.loads(header["netspec_state"])["run"]["epoch"])
    except (ValueError, KeyError, TypeError):
        pass
    return None


def read_run(source: Path) -> LoadedRun:
    """Compile a run's spec.yaml and read its weights (model.safetensors or a checkpoint file);
    the metadata is checked against the network (RunMeta.check)."""
    directory, weights_path, notes = find_run(source)
    weights, header = read_weights(weights_path)
    graph = compile_source(run_source(directory))
    meta = run_meta(directory, header)
    check_weights(graph, weights, strict=True, file=weights_path)
    if meta is not None:
        meta.check(graph.input_shape, graph.output.shape, str(meta_file(directory, header)))
    return LoadedRun(directory, weights_path, graph, weights, meta, notes)


def meta_file(directory: Path, header: Mapping[str, str]) -> Path | str:
    """Where run_meta reads the record: model.json, else the weights file's header."""
    path = RunLayout(directory).meta
    return path if path.is_file() or "netspec" not in header else "the weights file's header"


def run_meta(directory: Path, header: Mapping[str, str]) -> RunMeta | None:
    """A run's model.json (task, classes, head, preprocessing, ...), else the copy its weights
    file's `header` carries (a weights file alone), else None."""
    path = RunLayout(directory).meta
    if path.is_file():
        return RunMeta.read(path)
    if "netspec" in header:
        return RunMeta.from_json(header["netspec"], str(directory))
    return None


def weights_header(path: Path) -> dict[str, str]:
    """The header of a safetensors file without its tensors ({} if it cannot be read: whoever
    reads its tensors reports that)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, TypeError):
        return {}


# A training checkpoint keeps the weights under this prefix, beside optimizer and RNG state.
MODEL_PREFIX = "model/"


def model_part(tensors: dict[str, Any]) -> dict[str, Any]:
    """The weights of a training checkpoint's tensors, keyed `<layer>.<tensor>`."""
    n = len(MODEL_PREFIX)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}


def read_weights(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors of a safetensors file as arrays keyed `<layer>.<tensor>`, and its header.

    Needs only numpy and safetensors (no torch). A training checkpoint gives its model part."""
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise DataError.one("no such weights file", str(path))
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise DataError.one(
            f"cannot read weights: {exc}", str(path), hint="expected a .safetensors file"
        ) from None
    if any(k.startswith(MODEL_PREFIX) for k in tensors):  # a training checkpoint
        tensors = model_part(tensors)
    return tensors, header


# torch's BatchNorm counts its updates; no layer declares it and nothing but torch reads it.
TORCH_COUNTERS = ("num_batches_tracked",)


def check_weights(
    graph: Graph, weights: dict[str, Any], *, strict: bool = False, file: str | Path | None = None
) -> None:
    """Every tensor the layers declare is there with its shape (strict: and nothing else is);
    `file` is the weights file, named by the error."""
    import numpy as np

    missing, wrong, known = [], [], set()
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
            parts.append(f"missing {few(missing, 4)}")
        if wrong:
            parts.append(f"wrong shape: {few(wrong, 4)}")
        if unexpected:
            parts.append(f"unexpected {few(unexpected, 4)}")
        raise DataError.one(
            f"the weights do not fit the network '{graph.name}': {'; '.join(parts)}",
            None if file is None else str(file),
            hint="use the weights with the spec they were trained with (the run's spec.yaml)",
        )
