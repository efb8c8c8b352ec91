"""From a spec's `train:` section to ready splits and the preprocessing record that travels with the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData
from netspec.data.arrays import load_arrays
from netspec.data.builtin import load_builtin
from netspec.data.cifar import load_cifar10_dir
from netspec.data.folder import load_image_folder
from netspec.data.mnist import download_mnist, load_mnist_dir
from netspec.data.split import split_arrays
from netspec.data.stats import dataset_stats
from netspec.data.table import load_csv
from netspec.shapes import prod
from netspec.train_spec import (
    ArraysData,
    BuiltinData,
    Cifar10Data,
    CsvData,
    FolderData,
    MnistData,
    Normalize,
    TrainSpec,
)

Task = Literal["multiclass", "binary", "regression"]


@dataclass(frozen=True)
class Preprocessing:
    """Exactly what is done to a raw sample before the network sees it (saved with the model).

    Raw input: channels-first arrays as the loader gives them (uint8 pixels or float features).
    Steps, in order: grayscale, resize, center_crop (geometry, done once on load), then
    x * scale, then (x - mean) / std per channel (or per sample), then reshape to `input_shape`.
    """

    input_shape: tuple[int, ...]
    raw_shape: tuple[int, ...]
    channel_order: str | None = None  # "RGB" or "L" for images, None for tables
    # How a folder of images was decoded: netspec.data.folder.fit_image(image, size, crop).
    image_size: tuple[int, int] | None = None
    image_crop: str | None = None
    grayscale: bool = False
    resize: tuple[int, int] | None = None
    center_crop: tuple[int, int] | None = None
    scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    per_sample: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**fields)


def apply_values(
    x: np.ndarray, pre: dict[str, Any], input_shape: Sequence[int | None]
) -> np.ndarray:
    """The value steps of a recorded Preprocessing on a batch of raw samples, in numpy.

    x * scale, then per-channel (x - mean) / std or per-sample standardization, then the reshape
    to `input_shape` (skipped when it holds an unknown dimension). The trainer's `Normalizer`
    does the same in torch; export parity and `netspec predict` use this one.
    """
    x = np.asarray(x, dtype=np.float32)
    scale = float(pre.get("scale") or 1.0)
    if scale != 1.0:
        x = x * np.float32(scale)
    view = (1, -1) + (1,) * (x.ndim - 2)
    if pre.get("mean") and pre.get("std"):
        mean = np.asarray(pre["mean"], np.float32).reshape(view)
        x = (x - mean) / np.asarray(pre["std"], np.float32).reshape(view)
    elif pre.get("per_sample"):
        flat = x.reshape(len(x), -1)
        std = flat.std(1, ddof=1, keepdims=True) if flat.shape[1] > 1 else 0.0
        x = ((flat - flat.mean(1, keepdims=True)) / (std + 1e-6)).reshape(x.shape)
    if None not in input_shape:
        x = x.reshape(len(x), *input_shape)  # type: ignore[arg-type]
    return np.ascontiguousarray(x, dtype=np.float32)


@dataclass(frozen=True)
class Prepared:
    """Splits ready for training (geometry applied; value scaling left to the backend)."""

    train: ArrayData
    val: ArrayData | None
    test: ArrayData | None
    preprocessing: Preprocessing
    task: Task
    classes: tuple[str, ...] | None
    notes: tuple[str, ...] = ()


def resolve_path(path: str, spec_file: str | None) -> Path:
    """Relative paths are tried from the current directory, then from the spec file's folder."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists() or spec_file is None:
        return p
    beside = Path(spec_file).resolve().parent / p
    return beside if beside.exists() else p


def load_source(cfg: Any, spec_file: str | None, *, test: bool = False) -> ArrayData:
    """Load the data a `train.data` section names (`test=True`: its separate test data)."""
    if isinstance(cfg, BuiltinData):
        return load_builtin(cfg.name)
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
        return load_arrays(path, x_key=cfg.x_key, y_key=cfg.y_key, y_path=y_path)
    if isinstance(cfg, CsvData):
        return load_csv(path, target=cfg.target, features=cfg.features, task=cfg.task)
    raise AssertionError(f"unhandled data source {cfg!r}")  # the schema lists every source


def _limit(data: ArrayData, n: int | None, seed: int) -> ArrayData:
    if n is None or n >= len(data):
        return data
    # A random subset: loaders often sort by class, so the first N could be a single class.
    idx = np.sort(np.random.default_rng(seed).permutation(len(data))[:n])
    return replace(data, x=data.x[idx], y=data.y[idx])


def _geometry(data: ArrayData, spec: TrainSpec) -> ArrayData:
    """Grayscale, resize and center-crop image arrays (N, C, H, W), once, at load time."""
    p = spec.preprocess
    x = data.x
    if not (p.grayscale or p.resize or p.center_crop):
        return data
    if x.ndim != 4:
        raise data_error(
            f"{data.source}: grayscale/resize/center_crop need images (N, C, H, W), got {x.shape}"
        )
    if p.grayscale and x.shape[1] == 3:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)[None, :, None, None]
        gray = (x.astype(np.float32) * weights).sum(axis=1, keepdims=True)
        x = np.clip(np.rint(gray), 0, 255).astype(np.uint8) if x.dtype == np.uint8 else gray
    if p.resize:
        from PIL import Image

        h, w = p.resize
        out = np.empty((x.shape[0], x.shape[1], h, w), dtype=np.float32)
        for i in range(x.shape[0]):  # once per sample at load time, not on the training path
            for c in range(x.shape[1]):
                img = Image.fromarray(x[i, c].astype(np.float32), mode="F")
                out[i, c] = np.asarray(img.resize((w, h), Image.BILINEAR))
        x = np.clip(np.rint(out), 0, 255).astype(np.uint8) if x.dtype == np.uint8 else out
    if p.center_crop:
        h, w = p.center_crop
        if h > x.shape[2] or w > x.shape[3]:
            raise data_error(
                f"center_crop {h}x{w} is larger than the images ({x.shape[2]}x{x.shape[3]})"
            )
        top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
        x = np.ascontiguousarray(x[:, :, top : top + h, left : left + w])
    return replace(data, x=x)


def infer_task(data: ArrayData, output_shape: tuple[int, ...], loss: str | None) -> Task:
    """Classification or regression from the data, checked against the network's output."""
    if data.classes is None or loss in ("mse", "mae"):
        return "regression"
    k = len(data.classes)
    if output_shape == (1,) or loss == "binary_cross_entropy":
        if k > 2:
            raise data_error(
                f"{data.source}: {k} classes, but the network has a single output unit",
                hint=f"end the network with `dense: {{units: {k}, activation: softmax}}`",
            )
        return "binary"
    if len(output_shape) != 1 or output_shape[0] != k:
        raise data_error(
            f"{data.source}: {k} classes ({', '.join(data.classes[:5])}{', ...' if k > 5 else ''}),"
            f" but the network's output is {output_shape}",
            hint=f"end the network with `dense: {{units: {k}, activation: softmax}}`",
        )
    return "multiclass"


def prepare(
    spec: TrainSpec,
    input_shape: tuple[int, ...],
    output_shape: tuple[int, ...],
    spec_file: str | None,
) -> Prepared:
    """Load, limit, split and shape-check the data; compute normalization on the training split."""
    cfg = spec.data
    data = _limit(load_source(cfg, spec_file), cfg.limit, spec.seed)
    notes = list(data.notes)
    # MNIST and CIFAR come with their own test files: use them unless a test fraction is asked for.
    own_test = isinstance(cfg, (MnistData, Cifar10Data)) and cfg.split == "train" and cfg.test == 0
    test: ArrayData | None = None
    if cfg.test_path or own_test:
        test = _limit(load_source(cfg, spec_file, test=True), cfg.limit, spec.seed + 1)
    fractions = {"train": 1.0 - cfg.val - cfg.test, "val": cfg.val, "test": cfg.test}
    fractions = {k: v for k, v in fractions.items() if v > 0}
    if fractions["train"] <= 0:
        raise data_error("train.data: val + test fractions leave no training data")
    stratify = data.classes is not None
    parts = (
        split_arrays(data, fractions, seed=spec.seed, stratify=stratify)
        if len(fractions) > 1
        else {"train": data}
    )
    train = _geometry(parts["train"], spec)
    val = _geometry(parts["val"], spec) if "val" in parts else None
    test = (
        _geometry(parts["test"], spec)
        if "test" in parts
        else (_geometry(test, spec) if test is not None else None)
    )
    raw_shape = tuple(int(d) for d in train.x.shape[1:])
    if prod(raw_shape) != prod(input_shape):
        raise data_error(
            f"{data.source}: samples have shape {raw_shape}, but the spec's input is {input_shape}",
            hint=f"set `input: {list(raw_shape)}` in the spec, or resize the data (train.preprocess)",
        )
    if raw_shape != input_shape:
        notes.append(f"samples of shape {raw_shape} are reshaped to the input {input_shape}")
    p = spec.preprocess
    scale = float(p.rescale) if p.rescale else 1.0
    mean = std = None
    if isinstance(p.normalize, Normalize):
        mean, std = tuple(p.normalize.mean), tuple(p.normalize.std)
        if len(mean) != raw_shape[0] or len(std) != raw_shape[0]:
            raise data_error(
                f"train.preprocess.normalize: {len(mean)} means and {len(std)} stds for "
                f"{raw_shape[0]} channels; give one per channel"
            )
    elif p.normalize == "dataset":
        m, s = dataset_stats(train.x.astype(np.float64) * scale)
        mean, std = tuple(float(v) for v in m), tuple(float(max(v, 1e-12)) for v in s)
    channel_order = None
    if train.x.ndim == 4:
        channel_order = {1: "L", 3: "RGB"}.get(raw_shape[0])
    folder = isinstance(cfg, FolderData) and cfg.size is not None
    pre = Preprocessing(
        input_shape=tuple(input_shape),
        raw_shape=raw_shape,
        channel_order=channel_order,
        image_size=tuple(cfg.size) if folder else None,  # type: ignore[union-attr,arg-type]
        image_crop=cfg.crop if folder else None,  # type: ignore[union-attr]
        grayscale=p.grayscale,
        resize=tuple(p.resize) if p.resize else None,  # type: ignore[arg-type]
        center_crop=tuple(p.center_crop) if p.center_crop else None,  # type: ignore[arg-type]
        scale=scale,
        mean=mean,
        std=std,
        per_sample=p.normalize == "per_sample",
    )
    loss = spec.loss.name if spec.loss else None
    task = infer_task(train, tuple(output_shape), loss)
    return Prepared(train, val, test, pre, task, train.classes, tuple(notes))
