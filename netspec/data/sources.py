"""From a `train.data` section to the ArrayData of its source: the one dispatch over the source
kinds, and the rule for the paths a spec names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from netspec.data.arraydata import ArrayData
from netspec.data.arrays import load_arrays
from netspec.data.builtin import load_builtin
from netspec.data.cifar import load_cifar10_dir
from netspec.data.folder import load_image_folder
from netspec.data.halves import lower_half
from netspec.data.mask_folder import load_mask_folder
from netspec.data.mnist import download_mnist, load_mnist_dir
from netspec.data.shape_scenes import make_shapes
from netspec.data.table import load_csv
from netspec.data.xo import make_xo
from netspec.train_data_spec import TextData
from netspec.train_spec import (
    ArraysData,
    BuiltinData,
    Cifar10Data,
    CsvData,
    FolderData,
    MaskFolderData,
    MnistData,
    ShapesData,
    TsData,
    XoData,
)


def resolve_path(path: str | Path, spec_file: str | None) -> Path:
    """An absolute path: a relative one is relative to the spec file's folder, never the cwd.

    One rule, as Docker Compose has: a spec reads the same files wherever it is run from.
    Without a spec file (a spec given as text) relative paths start at the current directory.
    Paths given with `--set` start at the current directory; `runs.absolute_paths` makes
    them absolute before they get here.
    """
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (Path(spec_file).resolve().parent if spec_file else Path.cwd()) / p
    return Path(os.path.normpath(p))  # .. segments removed, symlinks kept (as the user wrote)


def load_source(cfg: Any, spec_file: str | None, *, test: bool = False) -> ArrayData:
    """Load the data a `train.data` section names (`test=True`: its separate test data)."""
    data = _load(cfg, spec_file, test=test)
    return lower_half(data) if cfg.complete == "lower_half" else data


def _load(cfg: Any, spec_file: str | None, *, test: bool) -> ArrayData:
    if isinstance(cfg, BuiltinData):
        return load_builtin(cfg.name)
    if isinstance(cfg, ShapesData):
        seed = cfg.seed + (1 if test else 0)  # a separate test set is another draw
        return make_shapes(cfg.samples, tuple(cfg.size), cfg.bands, seed)  # type: ignore[arg-type]
    if isinstance(cfg, XoData):
        return make_xo(cfg.samples, cfg.seed + (1 if test else 0), cfg.noise)
    path = resolve_path(cfg.test_path if test and cfg.test_path else cfg.path, spec_file)
    if isinstance(cfg, MnistData):
        split = "test" if test and not cfg.test_path else cfg.split
        if cfg.download:
            path = download_mnist(path)
        return load_mnist_dir(path, split=split)
    if isinstance(cfg, Cifar10Data):
        return load_cifar10_dir(path, split="test" if test and not cfg.test_path else cfg.split)
    if isinstance(cfg, FolderData):
        size = tuple(cfg.size) if cfg.size else None
        return load_image_folder(path, size=size, color=cfg.color, crop=cfg.crop)  # type: ignore[arg-type]
    if isinstance(cfg, ArraysData):
        y_path = resolve_path(cfg.y_path, spec_file) if cfg.y_path else None
        return load_arrays(
            path,
            x_key=cfg.x_key,
            y_key=cfg.y_key,
            y_path=y_path,
            channels=cfg.channels,
            classes=cfg.classes,
            mask_values=cfg.mask_values,
            ignore_value=cfg.ignore_value,
        )
    if isinstance(cfg, MaskFolderData):
        return load_mask_folder(
            path,
            images=cfg.images,
            masks=cfg.masks,
            color=cfg.color,
            classes=cfg.classes,
            mask_values=cfg.mask_values,
            ignore_value=cfg.ignore_value,
        )
    if isinstance(cfg, CsvData):
        return load_csv(
            path, target=cfg.target, features=cfg.features, task=cfg.task, delimiter=cfg.delimiter
        )
    if isinstance(cfg, TsData):
        from netspec.data.ts import load_ts

        train = resolve_path(cfg.path, spec_file) if test else None  # its padding and dimensions
        return load_ts(path, length=cfg.length, missing=cfg.missing, train=train)
    if isinstance(cfg, TextData):
        from netspec.data.text import load_texts

        return load_texts(path, text=cfg.text, label=cfg.label, delimiter=cfg.delimiter)
    raise AssertionError(f"unhandled data source {cfg!r}")  # the schema lists every source
