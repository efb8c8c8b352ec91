"""The run record: every file name of a run directory (RunLayout) and its metadata (RunMeta).

A leaf module (no compiler, no pydantic): `netspec predict` reads a model card through it without
loading pydantic. `netspec/runs.py` re-exports both; it makes and loads run directories.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from netspec.data.arraydata import TableColumns
from netspec.data.labels import TASKS, Task
from netspec.data.preprocess import Preprocessing
from netspec.data.tokenizer import Tokenizer
from netspec.errors import DataError
from netspec.fileio import write_text

CLASS_TASKS = frozenset({"multiclass", "binary", "segmentation"})


@dataclass(frozen=True)
class RunLayout:
    """Where each file of a run directory lives: the one place their names are spelled.

    The report files also go elsewhere (`netspec evaluate --data` writes them into
    RUN/evaluate/<name>): `RunLayout(that folder)` names them there.
    """

    directory: Path

    SPEC = "spec.yaml"
    SUMMARY = "summary.txt"
    META = "model.json"  # also the marker: a folder is a run when netspec wrote this (is_run)
    WEIGHTS = "model.safetensors"
    CHECKPOINTS = "checkpoint"
    LAST = "checkpoint/last.safetensors"
    BEST = "checkpoint/best.safetensors"
    METRICS_JSON = "metrics.json"
    METRICS_CSV = "metrics.csv"
    HISTORY_PNG = "history.png"
    PREDICTIONS_PNG = "predictions.png"
    COMPLETIONS_PNG = "completions.png"
    REPORT_TXT = "classification_report.txt"
    REPORT_JSON = "classification_report.json"
    CONFUSION_PNG = "confusion_matrix.png"
    MISTAKES_PNG = "mistakes.png"
    ROC_PNG = "roc.png"
    TENSORBOARD = "tensorboard"
    ONNX = "model.onnx"
    EVALUATE = "evaluate"
    # An interrupted run has no model.safetensors yet: its checkpoints stand in, in this order.
    STAND_INS = (BEST, LAST)
    # A classification report's files (in the run, or where `netspec evaluate --out` puts them).
    REPORT_FILES = (REPORT_TXT, REPORT_JSON, CONFUSION_PNG, MISTAKES_PNG, ROC_PNG)

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))

    def _at(self, name: str) -> Path:
        return self.directory / name

    spec = property(lambda self: self._at(self.SPEC))
    summary = property(lambda self: self._at(self.SUMMARY))
    meta = property(lambda self: self._at(self.META))
    weights = property(lambda self: self._at(self.WEIGHTS))
    checkpoints = property(lambda self: self._at(self.CHECKPOINTS))
    last = property(lambda self: self._at(self.LAST))
    best = property(lambda self: self._at(self.BEST))
    metrics_json = property(lambda self: self._at(self.METRICS_JSON))
    metrics_csv = property(lambda self: self._at(self.METRICS_CSV))
    history_png = property(lambda self: self._at(self.HISTORY_PNG))
    predictions_png = property(lambda self: self._at(self.PREDICTIONS_PNG))
    completions_png = property(lambda self: self._at(self.COMPLETIONS_PNG))
    report_txt = property(lambda self: self._at(self.REPORT_TXT))
    report_json = property(lambda self: self._at(self.REPORT_JSON))
    confusion_png = property(lambda self: self._at(self.CONFUSION_PNG))
    mistakes_png = property(lambda self: self._at(self.MISTAKES_PNG))
    roc_png = property(lambda self: self._at(self.ROC_PNG))
    tensorboard = property(lambda self: self._at(self.TENSORBOARD))
    onnx = property(lambda self: self._at(self.ONNX))

    def evaluation(self, name: str) -> Path:
        """Where `netspec evaluate --data NAME` writes its report files."""
        return self.directory / self.EVALUATE / name


@dataclass(frozen=True)
class StudyLayout:
    """Where each file of a `netspec tune` study folder lives: the one place their names are
    spelled (the study's SQLite file and its journals, the report, one run folder per trial)."""

    folder: Path

    DB = "study.db"
    BEST = "best.yaml"
    TRIALS = "trials.json"
    HISTORY_PNG = "history.png"
    IMPORTANCE_PNG = "importance.png"

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))

    db = property(lambda self: self.folder / self.DB)
    best = property(lambda self: self.folder / self.BEST)
    trials = property(lambda self: self.folder / self.TRIALS)
    history_png = property(lambda self: self.folder / self.HISTORY_PNG)
    importance_png = property(lambda self: self.folder / self.IMPORTANCE_PNG)

    def trial(self, number: int) -> Path:
        """The run directory of trial `number`."""
        return self.folder / f"trial-{number:03d}"

    @classmethod
    def owns(cls, name: str) -> bool:
        """Whether `netspec tune` writes an entry of this name in a study folder."""
        return (
            name in (cls.BEST, cls.TRIALS, cls.HISTORY_PNG, cls.IMPORTANCE_PNG)
            or name.startswith(cls.DB)  # the database and its journals
            or re.fullmatch(r"trial-\d+", name) is not None
        )


@dataclass(frozen=True)
class SourceModel:
    """The model file a run was imported from (`netspec import`): its name, sha256 and maker."""

    file: str
    sha256: str
    producer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "producer": self.producer}

    @classmethod
    def from_dict(cls, d: Any, file: str | None = None) -> SourceModel:
        if not (
            isinstance(d, Mapping)
            and isinstance(d.get("file"), str)
            and isinstance(d.get("sha256"), str)
            and isinstance(d.get("producer"), (str, type(None)))
        ):
            raise _malformed(f"has imported_from {d!r}: expected file, sha256 and producer", file)
        return cls(d["file"], d["sha256"], d.get("producer"))


@dataclass(frozen=True)
class RunMeta:
    """model.json: what an app needs to use the weights (also in the weights file's header
    `netspec` and, as the model card, in an exported model's metadata).

    Records written by older versions load: a missing optional field is None.
    """

    name: str
    netspec_version: str | None = None
    spec_sha256: str | None = None
    task: Task | None = None
    classes: tuple[str, ...] | None = None
    # None inside a shape: the dynamic time axis of a sequence network (`input: [null, F]`).
    input_shape: tuple[int | None, ...] | None = None
    output_shape: tuple[int | None, ...] | None = None
    head: str | None = None  # the output's softmax or sigmoid, None: linear
    preprocessing: Preprocessing | None = None
    # A table's feature names (after one-hot encoding) and its CSV columns.
    features: tuple[str, ...] | None = None
    table: TableColumns | None = None
    # "NHWC": the source model (an imported Keras one) took channels-last images; netspec's
    # input is channels-first, so raw arrays are transposed before the network sees them.
    input_layout: str | None = None
    imported_from: SourceModel | None = None  # `netspec import`: the model file it came from
    # A text source's tokenizer (its vocabulary): predict takes raw strings through it.
    tokenizer: Tokenizer | None = None
    # False for a record written before netspec recorded the head: the graph's head then.
    head_recorded: bool = field(default=True, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, keys in model.json's order."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "head_recorded":
                continue
            value = getattr(self, f.name)
            if value is None and f.name in ("input_layout", "imported_from"):
                continue  # an imported model's fields: a trained run's record stays as it was
            if isinstance(value, (Preprocessing, TableColumns, SourceModel, Tokenizer)):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def write(self, path: Path) -> None:
        """model.json, atomically."""
        write_text(Path(path), self.to_json(indent=2))

    @classmethod
    def from_dict(cls, d: Any, file: str | None = None) -> RunMeta:
        """The record from its JSON form; DataError naming `file` when it is malformed.

        Keys this version does not know are ignored (a newer version's, or a card's extras).
        """
        if not isinstance(d, Mapping):
            raise _malformed(f"is a {type(d).__name__}, not a mapping", file)
        name = d.get("name")
        if not isinstance(name, str):
            raise _malformed(f"has name {name!r}: expected a string", file)
        out: dict[str, Any] = {"name": name}
        for key in ("netspec_version", "spec_sha256", "head"):
            out[key] = _optional(d, key, str, file)
        task = d.get("task")
        if task is not None and task not in TASKS:
            raise _malformed(f"has task {task!r}: expected one of {', '.join(TASKS)}", file)
        out["task"] = task
        out["classes"] = _strings(d, "classes", file)
        out["features"] = _strings(d, "features", file)
        for key in ("input_shape", "output_shape"):
            value = d.get(key)
            if value is not None and not (
                isinstance(value, list)
                and all(
                    v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0)
                    for v in value
                )
            ):
                raise _malformed(
                    f"has {key} {value!r}: expected a list of sizes (null: dynamic)", file
                )
            out[key] = None if value is None else tuple(value)
        pre = d.get("preprocessing")
        out["preprocessing"] = None if pre is None else Preprocessing.from_dict(pre, file)
        table = d.get("table")
        out["table"] = None if table is None else TableColumns.from_dict(table, file)
        layout = d.get("input_layout")
        if layout not in (None, "NHWC"):
            raise _malformed(f"has input_layout {layout!r}: expected NHWC or null", file)
        out["input_layout"] = layout
        source = d.get("imported_from")
        out["imported_from"] = None if source is None else SourceModel.from_dict(source, file)
        tok = d.get("tokenizer")
        out["tokenizer"] = None if tok is None else Tokenizer.from_dict(tok, file)
        out["head_recorded"] = "head" in d
        return cls(**out)

    @classmethod
    def from_json(cls, text: str, file: str | None = None) -> RunMeta:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise _malformed(f"is not valid JSON ({exc})", file) from None
        return cls.from_dict(data, file)

    @classmethod
    def read(cls, path: Path) -> RunMeta:
        """model.json of a run (DataError naming it when unreadable or malformed)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError.one(f"cannot read the run's metadata: {exc}", str(path)) from None
        return cls.from_json(text, str(path))

    def check(
        self,
        input_shape: Sequence[int],
        output_shape: Sequence[int],
        file: str | None,
    ) -> None:
        """The record agrees with the network it describes (DataError naming `file`): the
        recorded shapes, the class count against the output width, the preprocessing record."""
        if self.input_shape is not None and tuple(self.input_shape) != tuple(input_shape):
            raise _mismatch(
                f"input shape {list(self.input_shape)}, but the network's input is "
                f"{list(input_shape)}",
                file,
            )
        if self.output_shape is not None and tuple(self.output_shape) != tuple(output_shape):
            raise _mismatch(
                f"output shape {list(self.output_shape)}, but the network's output is "
                f"{list(output_shape)}",
                file,
            )
        if self.task in CLASS_TASKS or self.classes is not None:
            check_classes(self.classes, output_shape, file)
        if self.preprocessing is not None:
            check_preprocessing(self.preprocessing, input_shape, file)
        tok = self.tokenizer
        if tok is not None and tuple(input_shape) not in ((tok.max_length,), (None,)):
            raise _mismatch(
                f"a tokenizer of rows of {tok.max_length} ids, but the network's input is "
                f"{list(input_shape)}",
                file,
            )


def check_classes(
    classes: Sequence[str] | None,
    output_shape: Sequence[int | None],
    file: str | None,
    *,
    whose: str = "the run's metadata",
) -> None:
    """A class list fits the output's width (axis 0 per sample): K units for K classes, or one
    unit for two (a sigmoid's binary classes)."""
    if not classes or not output_shape or output_shape[0] is None:
        return
    width, n = output_shape[0], len(classes)
    if n != width and not (width == 1 and n == 2):
        units = f"{width} output unit{'s' if width != 1 else ''}"
        raise _mismatch(
            f"{n} classes ({', '.join(map(str, classes[:5]))}{', ...' if n > 5 else ''}), but the "
            f"network has {units}" + (" (one unit: 2 classes)" if width == 1 else ""),
            file,
            whose,
        )


def check_preprocessing(
    pre: Preprocessing, input_shape: Sequence[int | None], file: str | None
) -> None:
    """The preprocessing record fits the network's input: its input shape, a raw sample of the
    same size, one mean and std per channel."""
    fixed = None not in input_shape
    if fixed and tuple(pre.input_shape) != tuple(input_shape):
        raise _mismatch(
            f"a preprocessing input shape {list(pre.input_shape)}, but the network's input is "
            f"{list(input_shape)}",
            file,
        )
    if fixed and math.prod(pre.raw_shape) != math.prod(input_shape):  # type: ignore[arg-type]
        raise _mismatch(
            f"raw samples of shape {list(pre.raw_shape)}, which do not fit the network's input "
            f"{list(input_shape)}",
            file,
        )
    if (pre.mean is None) != (pre.std is None) or (
        pre.mean is not None and pre.std is not None and len(pre.mean) != len(pre.std)
    ):
        raise _mismatch("a mean and std of different lengths", file)
    if pre.mean is not None and pre.raw_shape and len(pre.mean) not in (1, pre.raw_shape[0]):
        raise _mismatch(
            f"{len(pre.mean)} channel means for raw samples of shape {list(pre.raw_shape)}", file
        )


def _mismatch(what: str, file: str | None, whose: str = "the run's metadata") -> DataError:
    return DataError.one(
        f"{whose} records {what}",
        file,
        hint="the file was edited or belongs to another run: restore it, or train again",
    )


def _malformed(what: str, file: str | None) -> DataError:
    return DataError.one(
        f"the run's metadata {what}",
        file,
        hint="the file was not written by netspec, or was edited: train the run again",
    )


def _optional(d: Mapping[str, Any], key: str, kind: type, file: str | None) -> Any:
    value = d.get(key)
    if value is not None and not isinstance(value, kind):
        raise _malformed(f"has {key} {value!r}: expected a {kind.__name__}", file)
    return value


def _strings(d: Mapping[str, Any], key: str, file: str | None) -> tuple[str, ...] | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise _malformed(f"has {key} {value!r}: expected a list of names", file)
    return tuple(str(v) for v in value)


def write_start(layout: RunLayout, meta: RunMeta, spec_text: str, summary_text: str) -> None:
    """model.json, spec.yaml and summary.txt: what a run holds before its weights (a training
    run's first epoch, an import's weights file)."""
    layout.directory.mkdir(parents=True, exist_ok=True)
    # model.json first: it is the marker that makes the folder a run (runs.is_run), so a kill
    # between these writes leaves a folder netspec knows as its own.
    meta.write(layout.meta)
    write_text(layout.spec, spec_text)
    write_text(layout.summary, summary_text)
