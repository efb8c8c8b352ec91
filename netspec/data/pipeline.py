"""From a spec's `train:` section to ready splits and the preprocessing record that travels with the model.

Over 400 lines: loading every source, the splits, the shape checks and the preprocessing record
are one sequence (`prepare`) that reads best in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData
from netspec.data.folder import folder_with_classes
from netspec.data.halves import scaled_targets
from netspec.data.labels import Task, aligned, classes_said, float_classes
from netspec.data.preprocess import CropError, Preprocessing, geometry
from netspec.data.sources import load_source, resolve_path
from netspec.data.split import split_arrays
from netspec.data.stats import channel_names, channel_stats, target_stats
from netspec.data.stream import Lazy, is_streamed, per_sample, value_range
from netspec.data.tiles import TileReader, scored_once, tile_starts
from netspec.data.tokenizer import Tokenizer
from netspec.shapes import prod
from netspec.train_data_spec import TextData
from netspec.train_spec import (
    Cifar10Data,
    FolderData,
    MnistData,
    Normalize,
    TrainSpec,
)

if TYPE_CHECKING:
    from netspec.ir import Graph


@dataclass(frozen=True)
class Prepared:
    """Splits ready for training (geometry applied; value scaling left to the backend).

    Segmentation: `train` may hold whole scenes larger than the network's input; the trainer
    then cuts `tiles_per_scene` random tiles of size `tile` from each scene per epoch. `val` and
    `test` are always cut into tiles once here (see `cut_tiles`), so their metrics are exact.
    """

    train: ArrayData
    val: ArrayData | None
    test: ArrayData | None
    preprocessing: Preprocessing
    task: Task
    classes: tuple[str, ...] | None
    notes: tuple[str, ...] = ()
    tile: tuple[int, int] | None = None  # segmentation: (h, w) of the network's input
    tiles_per_scene: int = 1  # random training tiles per scene and epoch (1: scenes are tiles)
    tokenizer: Tokenizer | None = None  # a text source's (data/text.py)

    @property
    def random_tiles(self) -> bool:
        """Whether training scenes are larger than the input (so tiles are cut at random)."""
        return self.tile is not None and tuple(self.train.x.shape[2:]) != self.tile


def _two_classes(data: ArrayData, cfg: Any, spec_file: str | None) -> None:
    """Refuse classification with fewer than 2 classes: it trains to a perfect, empty score."""
    if data.classes is None or data.y.ndim == 3 or len(data.classes) >= 2:
        return
    hint = "a classifier needs samples of at least 2 classes"
    if isinstance(cfg, FolderData):
        better = folder_with_classes(resolve_path(cfg.path, spec_file))
        hint = f"did you mean path: {better}?" if better else hint
    raise data_error(f"{data.source}: {classes_said(data)}; expected at least 2 classes", hint=hint)


def _geometry(data: ArrayData, spec: TrainSpec) -> ArrayData:
    """Grayscale, resize and center-crop image arrays (N, C, H, W), once, at load time."""
    p = spec.preprocess
    x = data.x
    if not (p.grayscale or p.resize or p.center_crop):
        return data
    if data.y.ndim == 3 and (p.resize or p.center_crop):
        raise data_error(
            f"{data.source}: train.preprocess resize/center_crop would move the image away from "
            "its mask",
            hint="segmentation scenes larger than the input are cut into tiles by themselves; "
            "remove resize/center_crop",
        )
    if x.ndim != 4:
        raise data_error(
            f"{data.source}: grayscale/resize/center_crop need images (N, C, H, W), got {x.shape}"
        )
    steps = {"grayscale": p.grayscale, "resize": p.resize, "center_crop": p.center_crop}
    try:
        # A streamed split decodes later: each sample takes the same steps when it is read.
        x = x.mapped(per_sample(geometry, **steps)) if is_streamed(x) else geometry(x, **steps)
    except CropError as exc:
        (h, w), (H, W) = exc.crop, exc.image
        raise data_error(f"center_crop {h}x{w} is larger than the images ({H}x{W})") from None
    return replace(data, x=x)


def cut_tiles(data: ArrayData, tile: tuple[int, int]) -> ArrayData:
    """Every scene cut into a grid of tiles covering it; each pixel is scored exactly once.

    Where a tile overlaps the tile above it or to its left (the last row and column of an
    evenly spread grid do), the overlapped pixels' mask is set to -1 (ignored) in the later
    tile, so metrics over the tiles equal metrics over the scenes.
    """
    h, w = tile
    sh, sw = data.x.shape[2:]
    if (sh, sw) == (h, w):
        return data
    rows, cols = tile_starts(sh, h), tile_starts(sw, w)
    starts = tuple((top, left) for top in rows for left in cols)
    # Rows and columns the tile above and the tile to the left already scored.
    ignore = tuple(
        (max(0, rows[i - 1] + h - top) if i else 0, max(0, cols[j - 1] + w - left) if j else 0)
        for i, top in enumerate(rows)
        for j, left in enumerate(cols)
    )
    if is_streamed(data.x):  # its tiles cut when read
        x = Lazy(TileReader(data.x, starts, tile))
    else:
        x = np.concatenate([data.x[:, :, t : t + h, lf : lf + w] for t, lf in starts])
    if is_streamed(data.y):
        y = Lazy(TileReader(data.y, starts, tile, ignore))
    else:
        ys = []
        for (top, left), skip in zip(starts, ignore):
            part = data.y[:, top : top + h, left : left + w].copy()
            scored_once(part, *skip)
            ys.append(part)
        y = np.ascontiguousarray(np.concatenate(ys))
    return replace(data, x=x, y=y)


def _segmentation_task(data: ArrayData, output_shape: tuple[int, ...]) -> Task:
    """Masks need an output of one map per class (or one sigmoid map for two classes)."""
    assert data.classes is not None
    k = len(data.classes)
    also = " (or a single sigmoid map)" if k == 2 else ""
    hint = f"end the network with `conv2d: {{filters: {k}, kernel: 1, activation: softmax}}`"
    if len(output_shape) != 3:
        raise data_error(
            f"{data.source}: the data are segmentation masks ({k} classes), but the network's "
            f"output is {output_shape}; expected ({k}, H, W)",
            hint=hint,
        )
    if output_shape[0] not in (k, 1) or (output_shape[0] == 1 and k != 2):
        raise data_error(
            f"{data.source}: {k} mask classes ({', '.join(data.classes[:5])}), but the network "
            f"outputs {output_shape[0]} maps; expected {k}{also}",
            hint=hint,
        )
    return "segmentation"


def infer_task(data: ArrayData, output_shape: tuple[int, ...], loss: str | None) -> Task:
    """Classification or regression from the data, checked against the network's output."""
    if data.y.ndim == 3 and data.classes is not None:
        return _segmentation_task(data, output_shape)
    if data.classes is None or loss in ("mse", "mae"):
        return "regression"
    k = len(data.classes)
    if output_shape == (1,) or loss == "binary_cross_entropy":
        if k > 2:
            raise data_error(
                f"{data.source}: {classes_said(data)}, but the network has a single output unit",
                hint=f"end the network with `dense: {{units: {k}, activation: softmax}}`",
            )
        return "binary"
    if len(output_shape) != 1 or output_shape[0] != k:
        raise data_error(
            f"{data.source}: {classes_said(data)}, but the network's output is {output_shape}",
            hint=f"end the network with `dense: {{units: {k}, activation: softmax}}`",
        )
    return "multiclass"


@dataclass(frozen=True)
class Splits:
    """A run's data split and shaped (geometry applied, held-out scenes cut into tiles), before
    any statistics: what training computes its preprocessing record from, and what a trained
    run's data are (runs.run_data) with the record it saved."""

    train: ArrayData
    val: ArrayData | None
    test: ArrayData | None
    notes: tuple[str, ...] = ()
    tile: tuple[int, int] | None = None  # segmentation: (h, w) of the network's input
    tiles_per_scene: int = 1
    tokenizer: Tokenizer | None = None  # a text source's, fitted on the training split


@dataclass(frozen=True)
class SplitOptions:
    """What the network asks of its data: the shapes the samples must fit, where the spec's
    relative paths start, and the activation its output ends in (None: linear; it tells float
    labels of a classifier (a softmax head) from regression targets, and only a linear output
    can reach standardized regression targets)."""

    input_shape: tuple[int | None, ...]
    output_shape: tuple[int, ...]
    spec_file: str | None
    output_activation: str | None = None

    @classmethod
    def of(cls, graph: Graph, output_activation: str | None = None) -> SplitOptions:
        """The options a compiled graph gives: its input and output shapes and its file."""
        return cls(
            tuple(graph.input_shape), tuple(graph.output.shape), graph.file, output_activation
        )


def load_splits(
    spec: TrainSpec, opts: SplitOptions, *, tokenizer: Tokenizer | None = None
) -> Splits:
    """Load, limit and split the data, then its geometry steps and tiles: the same samples in
    the same splits on every call (the split is seeded).

    A text source's texts become token ids by `tokenizer` (a trained run's record), else by one
    fitted on the training split."""
    input_shape, output_shape, spec_file = opts.input_shape, opts.output_shape, opts.spec_file
    output_activation = opts.output_activation
    cfg = spec.data
    seed = spec.seed if cfg.split_seed is None else cfg.split_seed
    loss = spec.loss.name if spec.loss else None
    data = float_classes(load_source(cfg, spec_file, seed=seed), output_activation, loss)
    _two_classes(data, cfg, spec_file)
    notes = list(data.notes)
    # MNIST and CIFAR come with their own test files: use them unless a test fraction is asked for.
    own_test = isinstance(cfg, (MnistData, Cifar10Data)) and cfg.split == "train" and cfg.test == 0
    test: ArrayData | None = None
    if cfg.test_path or own_test:
        test = load_source(cfg, spec_file, test=True, seed=seed + 1)
        test = aligned(float_classes(test, output_activation, loss), data.classes)
    fractions = {"train": 1.0 - cfg.val - cfg.test, "val": cfg.val, "test": cfg.test}
    fractions = {k: v for k, v in fractions.items() if v > 0}
    if fractions["train"] <= 0:
        raise data_error("train.data: val + test fractions leave no training data")
    masks = data.y.ndim == 3
    stratify = data.classes is not None and not masks
    parts = (
        split_arrays(data, fractions, seed=seed, stratify=stratify)
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
    if isinstance(cfg, TextData):
        from netspec.data.text import tokenized

        train, val, test, tokenizer = tokenized(
            spec, input_shape, train, val, test, tokenizer, notes
        )
    else:
        tokenizer = None
    tile: tuple[int, int] | None = None
    per_scene = 1
    if masks:
        tile = _tile(train, tuple(input_shape), tuple(output_shape))
        scene = tuple(int(d) for d in train.x.shape[2:])
        cover = math.ceil(scene[0] / tile[0]) * math.ceil(scene[1] / tile[1])
        per_scene = cfg.tiles_per_scene or cover
        if scene != tile:
            notes.append(
                f"{len(train)} training scenes of {scene[0]}x{scene[1]}: {per_scene} random "
                f"{tile[0]}x{tile[1]} tiles from each per epoch"
            )
        val = cut_tiles(val, tile) if val is not None else None
        test = cut_tiles(test, tile) if test is not None else None
    return Splits(train, val, test, tuple(notes), tile, per_scene, tokenizer)


def _fill_time_axis(
    source: str, raw: tuple[int, ...], want: tuple[int | None, ...], notes: list[str]
) -> None:
    """A dynamic (null) time axis takes the data's length; every other axis must be the data's
    as it is (no reshape: the length is not the spec's to know)."""
    if len(raw) != len(want) or any(w is not None and w != n for w, n in zip(want, raw)):
        spec_form = "[" + ", ".join("null" if w is None else str(w) for w in want) + "]"
        raise data_error(
            f"{source}: samples have shape {raw}, but the spec's input is {spec_form} (null: "
            "any length)",
            hint="the data's other axes must match as they are: a .ts source gives [channels, "
            "length], so use `input: [channels, null]` (then `permute: {dims: [1, 0]}` for "
            "recurrent layers)",
        )
    length = raw[want.index(None)]
    notes.append(
        f"the dynamic time axis is {length} steps long in this data (padded to one length)"
    )


def prepare(spec: TrainSpec, opts: SplitOptions) -> Prepared:
    """The splits (`load_splits`), shape-checked, and the preprocessing record with the
    normalization computed on the training split (regression targets standardized only when
    `opts.output_activation` is None: a linear output)."""
    cfg = spec.data
    splits = load_splits(spec, opts)
    train, val, test, tile = splits.train, splits.val, splits.test, splits.tile
    notes = list(splits.notes)
    raw_shape = _raw_shape(train, tile, opts.input_shape, notes)
    scale = float(spec.preprocess.rescale) if spec.preprocess.rescale else 1.0
    if cfg.complete:
        train, val, test = (scaled_targets(d, scale) for d in (train, val, test))
    pre = _preprocessing(spec, train, raw_shape, opts.input_shape, scale, notes)
    loss = spec.loss.name if spec.loss else None
    task = infer_task(train, tuple(opts.output_shape), loss)
    if task == "regression" and cfg.scale_targets:
        if opts.output_activation is None:
            pre = replace(pre, **target_stats(train.y))
        else:
            notes.append(
                f"regression targets are not standardized: the output ends in "
                f"{opts.output_activation}, whose range the targets must fit"
            )
    return Prepared(
        train,
        val,
        test,
        pre,
        task,
        train.classes,
        tuple(notes),
        tile,
        splits.tiles_per_scene,
        splits.tokenizer,
    )


def _raw_shape(
    train: ArrayData,
    tile: tuple[int, int] | None,
    input_shape: tuple[int | None, ...],
    notes: list[str],
) -> tuple[int, ...]:
    """One sample's shape as the data give it (a tile's, for scenes), checked against the
    spec's input: equal, a dynamic axis filled, or the same size reshaped (noted)."""
    source = train.source
    raw_shape = tuple(int(d) for d in train.x.shape[1:])
    if tile is not None:
        raw_shape = (raw_shape[0], *tile)
    if None in input_shape:
        _fill_time_axis(source, raw_shape, input_shape, notes)
    elif prod(raw_shape) != prod(input_shape):  # type: ignore[arg-type]
        raise data_error(
            f"{source}: samples have shape {raw_shape}, but the spec's input is {input_shape}",
            hint=f"set `input: {list(raw_shape)}` in the spec, or resize the data (train.preprocess)",
        )
    elif raw_shape != input_shape:
        notes.append(f"samples of shape {raw_shape} are reshaped to the input {input_shape}")
    return raw_shape


def _preprocessing(
    spec: TrainSpec,
    train: ArrayData,
    raw_shape: tuple[int, ...],
    input_shape: tuple[int | None, ...],
    scale: float,
    notes: list[str],
) -> Preprocessing:
    """The preprocessing record: the spec's steps, and the normalization of the training split."""
    cfg, p = spec.data, spec.preprocess
    mean, std = _normalization(p, train, raw_shape, scale, notes)
    channel_order = None
    if train.x.ndim == 4:
        channel_order = {1: "L", 3: "RGB"}.get(raw_shape[0])
    folder = isinstance(cfg, FolderData) and cfg.size is not None
    return Preprocessing(
        input_shape=tuple(input_shape),  # type: ignore[arg-type]
        # A dynamic network records its time axis as dynamic: predict takes any length.
        raw_shape=tuple(input_shape) if None in input_shape else raw_shape,  # type: ignore[arg-type]
        channel_order=channel_order,
        image_size=tuple(cfg.size) if folder else None,  # type: ignore[union-attr,arg-type]
        image_crop=cfg.crop if folder else None,  # type: ignore[union-attr]
        image_bits=train.bit_depth,
        grayscale=p.grayscale,
        resize=tuple(p.resize) if p.resize else None,  # type: ignore[arg-type]
        center_crop=tuple(p.center_crop) if p.center_crop else None,  # type: ignore[arg-type]
        scale=scale,
        mean=mean,
        std=std,
        per_sample=p.normalize == "per_sample",
        raw_range=value_range(train.x),
    )


def _tile(
    data: ArrayData, input_shape: tuple[int, ...], output_shape: tuple[int, ...]
) -> tuple[int, int]:
    """The tile size of a segmentation set: the network's input (C, h, w), checked against it."""
    if len(input_shape) != 3:
        raise data_error(
            f"{data.source}: segmentation masks need an image input [C, H, W], the spec's input "
            f"is {list(input_shape)}"
        )
    bands, h, w = input_shape
    sh, sw = (int(d) for d in data.x.shape[2:])
    if data.x.shape[1] != bands:
        raise data_error(
            f"{data.source}: the images have {data.x.shape[1]} bands, the spec's input has "
            f"{bands} channels",
            hint=f"set `input: [{data.x.shape[1]}, {h}, {w}]` in the spec",
        )
    if sh < h or sw < w:
        raise data_error(
            f"{data.source}: scenes of {sh}x{sw} are smaller than the network's input {h}x{w}",
            hint=f"set `input: [{bands}, {min(h, sh)}, {min(w, sw)}]` (or smaller) in the spec",
        )
    if len(output_shape) == 3 and tuple(output_shape[1:]) != (h, w):
        raise data_error(
            f"the network maps a {h}x{w} tile to {output_shape[1]}x{output_shape[2]} masks; "
            "netspec trains segmentation at the input's size",
            hint="use `padding: same` convolutions so the output keeps the input's size",
        )
    return h, w


def _normalization(
    p: Any, train: ArrayData, raw_shape: tuple[int, ...], scale: float, notes: list[str]
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The per-channel mean and std the spec asks for: given, or the training split's own."""
    mean = std = None
    if isinstance(p.normalize, Normalize):
        mean, std = tuple(p.normalize.mean), tuple(p.normalize.std)
        if len(mean) != raw_shape[0] or len(std) != raw_shape[0]:
            raise data_error(
                f"train.preprocess.normalize: {len(mean)} means and {len(std)} stds for "
                f"{raw_shape[0]} channels; give one per channel"
            )
    elif p.normalize == "dataset":
        m, s, lo, hi = channel_stats(train.x, scale)
        # A channel constant in the training split gets std 1 (as scikit-learn's StandardScaler
        # does): std ~0 would blow up any other value it takes at test or predict time.
        constant = np.flatnonzero(hi == lo)
        s[constant] = 1.0
        mean, std = tuple(float(v) for v in m), tuple(float(v) for v in s)
        if len(constant):
            names = channel_names(train, constant)
            notes.append(
                f"{len(constant)} feature(s) constant in the training split ({names}): "
                "normalized with std 1, as scikit-learn does"
            )
    return mean, std
