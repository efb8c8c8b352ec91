"""A trained run's data: one split, or new data, preprocessed exactly as its training did.

The one way `netspec evaluate`, int8 calibration, export parity and tune get a run's samples:
the split training made (seeded), the geometry and tiles of `data.pipeline.load_splits`, and the
run's recorded preprocessing (statistics of its own training split, never recomputed).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from netspec.compiler import compile_source
from netspec.data.arraydata import ArrayData
from netspec.data.pipeline import SplitOptions, cut_tiles, load_splits
from netspec.data.preprocess import Preprocessing, apply_values
from netspec.data.token_ids import check_training_ids
from netspec.errors import DataError, few
from netspec.layers.activations import activation_of
from netspec.run_record import RunLayout, RunMeta
from netspec.runs import LoadedRun, run_source
from netspec.source import Source

__all__ = ["SPLITS", "RunData", "imported_meta", "no_data_error", "run_data", "run_splits"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class RunData:
    """Samples of a trained run's data, as its training saw them: geometry applied, scenes cut
    into tiles of the input's size (every pixel once), and the run's recorded preprocessing
    (statistics of its own training split, never recomputed on these samples)."""

    data: ArrayData  # raw samples: the value steps (scale, normalize, reshape) not applied
    split: str  # train, val, test, or the path of new data
    preprocessing: Preprocessing
    meta: RunMeta

    def inputs(self, pick: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Model inputs: the value steps of the recorded preprocessing, in numpy (float32)."""
        assert self.meta.input_shape is not None
        return apply_values(self.data.x[pick], self.preprocessing, self.meta.input_shape)


def run_data(run: LoadedRun | Path, split: str | Path) -> RunData:
    """One split of a run's data (`train`, `val` or `test`), or all of new data (a path to data
    of the same kind), preprocessed exactly as in training: the one way evaluate, int8
    calibration, export parity and tune get a run's data.

    The split is the one training made (seeded); DataError when the run has no such split, no
    recorded preprocessing, or new data whose classes are not the run's.
    """
    if split in SPLITS:
        found = run_splits(run, (str(split),))[str(split)]
        if found is None:
            raise DataError.one(f"the run has no {split} split", str(_directory(run)))
        return found
    return _run_data(run, Path(split))


def run_splits(run: LoadedRun | Path, names: Sequence[str]) -> dict[str, RunData | None]:
    """Several splits of a run's data from one load (None for a split the run has not)."""
    return _run_data(run, tuple(names))  # type: ignore[return-value]


def _directory(run: LoadedRun | Path) -> Path:
    return run.directory if isinstance(run, LoadedRun) else Path(run)


def _run_data(
    run: LoadedRun | Path, split: Path | tuple[str, ...]
) -> RunData | dict[str, RunData | None]:
    directory = _directory(run)
    layout = RunLayout(directory)
    meta = run.meta if isinstance(run, LoadedRun) else RunMeta.read(layout.meta)
    imported = meta is not None and meta.imported_from is not None
    new = isinstance(split, Path)
    source = run_source(directory)
    if not (isinstance(source.data, dict) and isinstance(source.data.get("train"), dict)):
        if imported:
            raise no_data_error(layout.spec)
        raise DataError.one(
            "the run's spec has no train: section, so netspec knows neither its data nor "
            "how to read new data for it",
            str(layout.spec),
        )
    if meta is not None and imported and meta.input_shape is not None:
        meta = imported_meta(meta)
    if meta is None or meta.preprocessing is None or meta.input_shape is None:
        raise DataError.one(
            "the run records no preprocessing: its data cannot be prepared as in training",
            str(layout.meta),
        )
    if new:
        source = _new_data(source, split)  # type: ignore[arg-type]
    graph = compile_source(source)
    meta.check(graph.input_shape, graph.output.shape, str(layout.meta))
    assert graph.train is not None
    act = activation_of(graph.output.layer, len(graph.output.shape))
    splits = load_splits(
        graph.train,
        SplitOptions.of(graph, act.fn if act is not None else None),
        tokenizer=meta.tokenizer,  # a text run's own vocabulary, never one of new data
    )
    check_training_ids(graph, splits)  # new data for `netspec evaluate RUN --data`, too
    pre = meta.preprocessing

    def one(data: ArrayData, name: str) -> RunData:
        if splits.tile is not None and data.y.ndim == 3:
            data = cut_tiles(data, splits.tile)  # every pixel once (held-out splits already are)
        return RunData(data, name, pre, meta)

    if imported and meta.classes is None and splits.train.classes:
        # An imported model names no classes: they are its data's, in the order the data
        # gives them (a folder's sorted class names, as Keras' loaders order them too).
        meta = replace(meta, classes=tuple(splits.train.classes))
        n = graph.output.shape[-1] if graph.output.shape else 1
        if meta.task == "multiclass" and n != len(meta.classes):
            raise DataError.one(
                f"the data has {len(meta.classes)} classes ({few(meta.classes)}); the imported "
                f"model has {n} outputs",
                str(layout.spec),
            )
    if isinstance(split, Path):
        data = splits.train
        if (data.classes or None) != (meta.classes or None):
            raise DataError.one(
                f"--data: the classes of {split} ({few(data.classes or ()) or 'none'}) are not "
                f"those the run was trained on ({few(meta.classes or ()) or 'none'})",
                str(split),
            )
        return one(data, str(split))
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    return {n: None if parts[n] is None else one(parts[n], n) for n in split}  # type: ignore[arg-type]


def no_data_error(spec: Path) -> DataError:
    """What an imported run needs before netspec can evaluate or calibrate it: its data."""
    return DataError.one(
        "an imported run has no data of its own: add a train: section saying where its data "
        "is and how to read it to its spec.yaml, e.g. `train: {data: {source: folder, path: "
        "photos, size: [H, W]}}` or `train: {data: {source: csv, path: table.csv, target: "
        "label}}` (docs/import.md); then `netspec evaluate` scores its test split (or all of "
        "--data), and `netspec export --int8` calibrates on it",
        str(spec),
        hint="the run's recorded preprocessing (the source model's scaling) is applied to "
        "the raw data; the train: section's own preprocess is not",
    )


def imported_meta(meta: RunMeta) -> RunMeta:
    """An imported run's record as data needs it: a model without scaling at its input takes
    its data as they are read (identity preprocessing)."""
    if meta.preprocessing is not None or meta.input_shape is None:
        return meta
    shape = tuple(meta.input_shape)
    return replace(meta, preprocessing=Preprocessing(input_shape=shape, raw_shape=shape))  # type: ignore[arg-type]


def _new_data(source: Source, data: Path) -> Source:
    """A run's spec reading all of `data` as its training split (the path set as a value)."""
    train = source.data.get("train") if isinstance(source.data, dict) else None
    cfg = train.get("data") if isinstance(train, dict) else None
    if not isinstance(cfg, dict) or cfg.get("source") == "builtin":
        raise DataError.one(
            f"--data: the run was trained on a built-in dataset, which has no path to "
            f"replace with {data}",
            hint="evaluate it without --data (on its test split)",
        )
    spec = copy.deepcopy(source.data)
    spec["train"]["data"].update(
        path=str(data.resolve()), val=0.0, test=0.0, test_path=None, limit=None
    )
    return Source(spec, source.file, source.values, source.keys, source.overrides)
