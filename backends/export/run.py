"""`netspec export`: a trained run to a checked .onnx file, and the report of what was written."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import NetspecError, first_line
from netspec.fileio import atomic_path
from netspec.ir import Graph
from netspec.run_data import run_data
from netspec.run_record import RunLayout
from netspec.runs import LoadedRun, check_weights, read_run

from .emitter import ExportError
from .model import build_onnx, check_model
from .sidecar import precision, sidecar_path, write_sidecar


@dataclass
class ExportReport:
    """What `export_run` wrote and checked."""

    path: Path
    size: int  # bytes
    opset: int
    batch: int | None
    fp16: bool
    precision: str  # float32, float16 or int8 (sidecar.precision)
    nodes: int
    folded_batchnorm: int
    removed_dropout: int
    sidecar: Path | None = None  # the JSON metadata beside the model
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # parity check -> difference
    tolerance: float | None = None
    quantized: str | None = None  # the int8 checks in words: accuracy, then every runtime's row
    int8_check: dict[str, Any] | None = None  # the same as data (also the card's int8_check)
    preprocessing: str | None = None  # --preprocess: the in-graph steps' check, in words
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (paths as strings): `netspec export --json`."""
        data = asdict(self)
        data["path"] = str(self.path)
        data["sidecar"] = None if self.sidecar is None else str(self.sidecar)
        return data

    def lines(self) -> list[str]:
        size = f"{self.size / 1e6:.1f} MB" if self.size >= 1e5 else f"{self.size / 1e3:.1f} kB"
        batch = "dynamic" if self.batch is None else str(self.batch)
        out = [
            f"wrote {self.path} ({size}, opset {self.opset}, batch {batch}, {self.precision})",
            f"{self.nodes} ONNX nodes; batchnorm folded: {self.folded_batchnorm}, "
            f"dropout removed: {self.removed_dropout}",
        ]
        if self.sidecar is not None:
            out.append(f"metadata for any runtime: {self.sidecar}")
        if self.max_abs_diff:
            diffs = ", ".join(f"{k} {v:.1e}" for k, v in self.max_abs_diff.items())
            what = "the float32 model matches" if self.quantized else "matches"
            out.append(f"{what} PyTorch (max abs diff): {diffs} (tolerance {self.tolerance:.0e})")
        if self.quantized:
            out.append(self.quantized)
        if self.preprocessing:
            out.append(self.preprocessing)
        out += [f"note: {n}" for n in self.notes]
        return out


def write_model(model: Any, path: Path) -> bytes:
    """Write the model and its JSON sidecar (each atomically); the model's bytes."""
    data = model.SerializeToString()
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    write_sidecar(model, path)
    return data


def parse_batch(text: str | int | None) -> int | None:
    """`dynamic` (or None) -> None; a positive integer -> itself."""
    if text is None or text == "dynamic":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ExportError(f"--batch-dim {text}: expected 'dynamic' or a positive integer")
    return n


def run_samples(run: LoadedRun, n: int = 16, seed: int = 0) -> tuple[np.ndarray | None, str]:
    """Up to n samples of the run's training data, preprocessed as in training (or a note why not)."""
    if run.graph.train is None or run.meta is None:
        return None, "no training data recorded with the run: checked on random inputs only"
    if run.meta.preprocessing is None and run.meta.imported_from is None:  # imported: identity
        return None, "no training data recorded with the run: checked on random inputs only"
    try:
        train = run_data(run, "train")
        pick = np.sort(np.random.default_rng(seed).permutation(len(train.data))[:n])
        x = train.inputs(pick)
    except (NetspecError, OSError, ValueError, ImportError, KeyError) as exc:
        return (
            None,
            f"the run's data could not be loaded ({first_line(exc)}): checked on random inputs only",
        )
    return x, f"checked on {len(x)} samples of the run's data"


@dataclass(frozen=True)
class ExportOptions:
    """How to export: the `netspec export` options, built once by the CLI or the Python API and
    passed whole to export_run (and by export_ensemble to each member)."""

    opset: int | None = None  # None: the lowest the network needs
    batch: int | None = None  # the graph's batch dimension; None: dynamic
    fp16: bool = False
    fp16_io: bool = False
    int8: bool = False
    max_drop: float | None = None  # int8 only; None: quantize.MAX_DROP
    int8_runtimes: tuple[str, ...] | None = None  # int8 only: the runtimes gated; None: all
    check: bool = True
    preprocess: bool = False  # the run's image preprocessing inside the graph (opset 18)

    def __post_init__(self) -> None:
        """The options that exclude each other."""
        if self.int8 and (self.fp16 or self.fp16_io):
            raise ExportError("--int8 and --fp16 exclude each other: choose one precision")
        if self.int8 and self.batch is not None:
            raise ExportError(
                "--int8 needs a dynamic batch (calibration feeds batches of any size)"
            )
        if self.max_drop is not None and not self.int8:
            raise ExportError("--max-drop applies to --int8 exports only")
        if self.int8_runtimes and not self.int8:
            raise ExportError("--int8-runtime applies to --int8 exports only")


def export_run(
    source: Path,
    out: Path | None = None,
    options: ExportOptions | None = None,
    *,
    samples: np.ndarray | None = None,
) -> ExportReport:
    """Export a trained run (a run directory, or its weights file) to ONNX; default <run>/model.onnx.

    Unless `check` is False the model goes through `check_model` and the PyTorch parity check
    (random batches of 1 and 7, and `samples`, default: up to 16 samples of the run's data); a
    failure raises and writes nothing. The file is written atomically, with its JSON sidecar.

    `int8` quantizes the checked float32 model (quantize.py, at opset 19 or later) and checks it
    by accuracy on the run's test split, then in every runtime installed (int8_check.py): a drop
    over `max_drop` points (default quantize.MAX_DROP), or a runtime beyond that gate, raises
    (`int8_runtimes`: the runtimes gated; default every one installed).

    `preprocess` puts the run's image preprocessing in front of the network (preprocess_graph.py:
    the model takes uint8 images of any size), checked against netspec's own steps.
    """
    o = options or ExportOptions()
    opset = o.opset
    if o.int8:
        from .quantize import check_runtime_names, int8_opset

        check_runtime_names(o.int8_runtimes)
        opset = int8_opset(opset)
    run = read_run(Path(source))
    if o.preprocess:
        opset = _preprocess_opset(run, opset)
    model, stats = build_onnx(
        run.graph,
        run.weights,
        meta=run.meta,
        opset=opset,
        batch=o.batch,
        fp16=o.fp16,
        fp16_io=o.fp16_io,
    )
    notes: list[str] = list(run.notes)
    pre = run.meta.preprocessing if run.meta else None
    if pre is not None and pre.raw_range is None:
        notes.append(
            "the run records no raw value range (trained before netspec recorded it): "
            "raw_range is null in the model's metadata"
        )
    diffs: dict[str, float] = {}
    tolerance = None
    if o.check:
        diffs, tolerance = _parity(run, model, o.batch, o.fp16, samples, notes)
    else:
        notes.append("not checked (--no-check)")
    quantized = None
    if o.int8:
        from .quantize import MAX_DROP, quantize_run

        limit = MAX_DROP if o.max_drop is None else o.max_drop
        quantized = quantize_run(run, model, limit, o.int8_runtimes)
        model = quantized.model
    in_graph = None
    if o.preprocess:
        model, in_graph = _preprocess(run, model)
    path = Path(out) if out is not None else RunLayout(run.directory).onnx
    return write_report(
        model,
        path,
        batch=o.batch,
        fp16=o.fp16,
        folded=stats.folded_batchnorm,
        removed=stats.removed_dropout,
        max_abs_diff=diffs,
        tolerance=tolerance,
        quantized=None if quantized is None else "\n".join(quantized.lines()),
        int8_check=None if quantized is None else quantized.to_dict(),
        preprocessing=in_graph,
        notes=notes,
    )


def _preprocess_opset(run: LoadedRun, opset: int | None) -> int:
    """The opset of an export with its preprocessing inside: at least 18 (Resize's antialias);
    ExportError when the run takes no images or a lower opset is asked."""
    from .preprocess_graph import PREPROCESS_OPSET, check_preprocessable

    check_preprocessable(run.meta.preprocessing if run.meta else None)
    if opset is not None and opset < PREPROCESS_OPSET:
        raise ExportError(
            f"--preprocess needs opset {PREPROCESS_OPSET} or higher (Resize with antialias), "
            f"not {opset}"
        )
    return opset or PREPROCESS_OPSET


def _preprocess(run: LoadedRun, model: Any) -> tuple[Any, str]:
    """The model with the run's preprocessing in front (checked by onnx.checker and against
    netspec's numpy steps on probe images), and the check in words."""
    import onnx

    from .preprocess_check import check_against_numpy
    from .preprocess_graph import with_preprocessing

    pre = run.meta.preprocessing  # type: ignore[union-attr]  # checked by check_preprocessable
    model = with_preprocessing(model, pre)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the model with its preprocessing fails onnx.checker: {exc}") from None
    worst, mean = check_against_numpy(pre)
    return model, (
        "preprocessing inside the graph: it takes uint8 (N, H, W, C) images of any size; "
        f"against netspec's steps {worst:g} grey levels at most (mean {mean:.3f})"
    )


def _parity(
    run: LoadedRun,
    model: Any,
    batch: int | None,
    fp16: bool,
    samples: np.ndarray | None,
    notes: list[str],
) -> tuple[dict[str, float], float]:
    """check_model, then the PyTorch parity check on random batches and samples (default: the
    run's data; `notes` gets where they came from): the differences and their tolerance."""
    try:
        from . import parity
    except ImportError as exc:
        raise ExportError(
            f"the parity check needs PyTorch ({exc}): install it, or export with --no-check"
        ) from None

    check_model(model, run.graph, batch)
    if samples is None:
        samples, note = run_samples(run)
        notes.append(note)
    inputs = parity.random_inputs(run.graph, batch)
    if samples is not None:
        inputs[f"{len(samples)} samples"] = np.asarray(samples, dtype=np.float32)
    diffs = parity.check_parity(run.graph, run.weights, model, inputs, fp16=fp16)
    return diffs, parity.FP16_TOLERANCE if fp16 else parity.TOLERANCE


def write_report(
    model: Any,
    path: Path,
    *,
    batch: int | None,
    fp16: bool,
    folded: int,
    removed: int,
    **checks: Any,
) -> ExportReport:
    """Write the model and its sidecar (write_model), and the report of what was written;
    `checks`: the report's check fields (max_abs_diff, tolerance, quantized, int8_check, notes)."""
    data = write_model(model, path)
    return ExportReport(
        path=path,
        size=len(data),
        opset=model.opset_import[0].version,
        batch=batch,
        fp16=fp16,
        precision=precision(model),
        nodes=len(model.graph.node),
        folded_batchnorm=folded,
        removed_dropout=removed,
        sidecar=sidecar_path(path),
        **checks,
    )


def export_module(
    graph: Graph,
    module: Any,
    out: Path,
    options: ExportOptions | None = None,
) -> ExportReport:
    """Export a torch module of `graph` trained outside netspec (the Python API's
    `Network.export_onnx`): its weights, checked to fit the graph, then as `export_run`, with
    the parity check on random inputs (no run, so no data and no preprocessing record).
    float32 or fp16 only: int8 needs data to calibrate, preprocessing a record."""
    from ..weights import module_weights

    o = options or ExportOptions()
    if o.int8 or o.fp16_io or o.preprocess:
        raise ExportError(
            "export_onnx of a module: float32 or fp16 only (no int8, fp16_io or preprocess)"
        )
    opset, batch, fp16 = o.opset, o.batch, o.fp16
    inner = getattr(module, "_orig_mod", module)  # torch.compile's wrapper
    inner = getattr(inner, "module", inner)  # DistributedDataParallel's
    if not hasattr(inner, "module_keys"):
        raise ExportError(
            f"export_onnx takes the module that Network.to_torch() made, not a "
            f"{type(module).__name__}"
        )
    weights = module_weights(inner)
    check_weights(graph, weights, strict=True, file=None)
    run = LoadedRun(out.parent, out, graph, weights, None)
    model, stats = build_onnx(graph, weights, meta=None, opset=opset, batch=batch, fp16=fp16)
    notes: list[str] = []
    diffs: dict[str, float] = {}
    tolerance = None
    if o.check:
        diffs, tolerance = _parity(run, model, batch, fp16, None, notes)
    else:
        notes.append("not checked (check=False)")
    return write_report(
        model,
        out,
        batch=batch,
        fp16=fp16,
        folded=stats.folded_batchnorm,
        removed=stats.removed_dropout,
        max_abs_diff=diffs,
        tolerance=tolerance,
        notes=notes,
    )
