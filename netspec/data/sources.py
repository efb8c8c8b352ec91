"""From a `train.data` section to the ArrayData of its source: the one dispatch over the source
kinds, and the rule for the paths a spec names."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from netspec import train_data_spec as ds
from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData
from netspec.data.arrays import load_arrays
from netspec.data.builtin import load_builtin
from netspec.data.cache_choice import choose_cache
from netspec.data.cifar import load_cifar10_dir
from netspec.data.folder import list_image_folder
from netspec.data.halves import lower_half
from netspec.data.mask_folder import load_mask_folder
from netspec.data.mnist import download_mnist, load_mnist_dir
from netspec.data.paths import resolve_path
from netspec.data.shape_scenes import make_shapes
from netspec.data.stream import Lazy, content_key, disk_cached, is_streamed, subset
from netspec.data.table import load_csv
from netspec.data.xo import make_xo

# the sources `cache: disk | none` can stream
STREAMED = ds.STREAMED


def load_source(cfg: Any, spec_file: str | None, *, test: bool = False, seed: int = 0) -> ArrayData:
    """Load the data a `train.data` section names (`test=True`: its separate test data), at
    most `cfg.limit` samples of it: a random subset drawn with `seed` (limit_indices)."""
    data = limited(_load(cfg, spec_file, test=test, seed=seed), cfg.limit, seed)
    return lower_half(data) if cfg.complete == "lower_half" else data


def limit_indices(n: int, limit: int | None, seed: int) -> np.ndarray | None:
    """The sorted indices of the `limit` samples of n that `train.data.limit` keeps (None: all).
    A random subset: loaders often sort by class, so the first `limit` could be a single class."""
    if limit is None or limit >= n:
        return None
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def limited(data: ArrayData, limit: int | None, seed: int) -> ArrayData:
    """`data` cut to the samples limit_indices keeps."""
    idx = limit_indices(len(data), limit, seed)
    if idx is None:
        return data
    return replace(data, x=subset(data.x, idx), y=subset(data.y, idx))


def _folder(cfg: ds.FolderData, path: Path, seed: int, test: bool) -> ArrayData:
    """An image folder decoded into memory (cache ram), or streamed: decoded batch by batch
    from the files (none) or from a disk cache of the decoded samples (disk). A limit is taken
    from the listing, before anything is decoded: only the files kept are read (the same
    samples as limiting the decoded folder; its bit depth is that of the files kept)."""
    size = tuple(cfg.size) if cfg.size else None
    listing = list_image_folder(path, size, cfg.color, None, cfg.crop)
    keep = limit_indices(len(listing.labels), cfg.limit, seed)
    if keep is not None:
        listing = listing.subset(keep)
    if not test and len(listing.classes) < 2:
        # Refused by load_splits (a classifier needs 2 classes; often the folder above the
        # class folders was given): before the whole folder is decoded, not after. A separate
        # test folder of one class is fine: it is loaded as any other.
        return listing.data(Lazy(listing.reader), 8)
    if cfg.cache == "ram" or (cfg.cache == "auto" and cfg.complete):  # halves: whole arrays
        return listing.load()
    x = Lazy(listing.reader)
    notes: list[str] = []
    if choose_cache(cfg.cache, x.nbytes * 2, notes) == "ram":  # *2: the splits are copies
        return listing.load()
    if cfg.cache == "auto" or cfg.cache == "disk":
        options = {"size": size, "color": cfg.color, "crop": cfg.crop}
        x = disk_cached(x, content_key("folder", listing.reader.files, options), notes)
    else:
        notes.append("cache: none: every batch is decoded from the image files")
    return listing.data(x, 16 if x.dtype == np.float32 else 8, tuple(notes))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size * 2  # as _folder's estimates: the splits are copies
    except OSError:
        return 0  # load_arrays says what is wrong


def _mapped(cfg: ds.ArraysData, data: ArrayData) -> ArrayData | None:
    """Arrays with x memory-mapped, when the cache asks to stream (None: read them whole)."""
    notes: list[str] = []
    if not is_streamed(data.x):
        if cfg.cache == "auto":
            return None
        raise data_error(
            f"train.data.cache: {cfg.cache} streams x from its file, but {data.source} cannot "
            "be memory-mapped (a compressed .npz member, or segmentation masks)",
            hint="save x with numpy.save or numpy.savez (uncompressed), or use cache: ram",
        )
    if choose_cache(cfg.cache, data.x.nbytes * 2, notes) == "ram":
        return None
    notes.append("x is read memory-mapped from its file, batch by batch (no cache needed)")
    return replace(data, notes=(*data.notes, *notes))


def _mask_folder(cfg: ds.MaskFolderData, path: Path, masks: dict[str, Any]) -> ArrayData:
    """Image/mask pairs decoded into memory, or streamed (cache disk or none; auto keeps them in
    memory): the scenes and their class masks decoded when read, from the files (none) or from
    disk caches of the decoded scenes and of the class masks, stored compactly (disk)."""
    stream = cfg.cache in ("disk", "none")
    opts = {"images": cfg.images, "masks": cfg.masks, "color": cfg.color}
    data = load_mask_folder(path, **opts, **masks, stream=stream)
    if not stream:
        return data
    notes: list[str] = []
    x, y = data.x, data.y
    if cfg.cache == "disk":
        key = content_key("mask_folder", x.reader.files, {"color": cfg.color})
        x = disk_cached(x, key, notes)
        key = content_key("mask_folder_masks", y.reader.files, masks)
        y = disk_cached(y, key, notes, labels=len(data.classes or ()))
    else:
        notes.append("cache: none: every batch is decoded from the image and mask files")
    return replace(data, x=x, y=y, notes=(*data.notes, *notes))


def _csv(cfg: ds.CsvData, path: Path) -> ArrayData:
    """A CSV table read into memory (cache ram, or auto while it fits), or streamed: its
    features from a disk cache written in one pass (disk), or its rows parsed on demand
    (none)."""
    options = {"target": cfg.target, "features": cfg.features, "task": cfg.task}
    options["delimiter"] = cfg.delimiter
    notes: list[str] = []
    # *2 again over _size's: the pass's values and the features, besides the splits' copies
    mode = choose_cache(cfg.cache, _size(path) * 2, notes)
    if mode == "ram":
        return load_csv(path, **options)
    from netspec.data.table_stream import stream_csv

    return stream_csv(path, **options, cache=mode, notes=notes)


def _texts(cfg: ds.TextData, path: Path) -> ArrayData:
    """A text source's texts read into memory (cache ram, or auto while they fit), or left in the
    file and read on demand (disk, none; their ids cached or not: text.tokenize)."""
    options = {"text": cfg.text, "label": cfg.label, "delimiter": cfg.delimiter}
    notes: list[str] = []
    # *2 again over _size's: Python strings, then the ids, besides the splits' copies
    if choose_cache(cfg.cache, _size(path) * 2, notes) == "ram":
        from netspec.data.text import load_texts

        return load_texts(path, **options)
    from netspec.data.text_stream import stream_texts

    return stream_texts(path, **options, notes=notes)


def _ts(cfg: ds.TsData, path: Path, train: Path | None) -> ArrayData:
    """A .ts file read into memory (cache ram, or auto while it fits), or its cases read on
    demand (none) or from a disk cache of them (disk)."""
    options = {"length": cfg.length, "missing": cfg.missing, "train": train}
    notes: list[str] = []
    # *2 again over _size's: the parsed float64 cases, then x, besides the splits' copies
    mode = choose_cache(cfg.cache, _size(path) * 2, notes)
    if mode == "ram":
        from netspec.data.ts import load_ts

        return load_ts(path, **options)
    from netspec.data.ts_stream import stream_ts

    return stream_ts(path, **options, cache=mode, notes=notes)


def _load(cfg: Any, spec_file: str | None, *, test: bool, seed: int) -> ArrayData:
    if cfg.cache in ("disk", "none") and (cfg.complete or not isinstance(cfg, STREAMED)):
        what = "image completion" if cfg.complete else f"the {cfg.source} source"
        raise data_error(
            f"train.data.cache: {cfg.cache} streams samples from files; {what} is read whole",
            hint="use cache: ram (or auto); image and mask folders, .npy arrays, IDX files, CSV "
            "tables, texts and .ts series can stream",
        )
    if isinstance(cfg, ds.BuiltinData):
        return load_builtin(cfg.name)
    if isinstance(cfg, ds.ShapesData):
        seed = cfg.seed + (1 if test else 0)  # a separate test set is another draw
        return make_shapes(cfg.samples, tuple(cfg.size), cfg.bands, seed)  # type: ignore[arg-type]
    if isinstance(cfg, ds.XoData):
        return make_xo(cfg.samples, cfg.seed + (1 if test else 0), cfg.noise)
    path = resolve_path(cfg.test_path if test and cfg.test_path else cfg.path, spec_file)
    if isinstance(cfg, ds.MnistData):
        split = "test" if test and not cfg.test_path else cfg.split
        if cfg.download:
            path = download_mnist(path)
        return load_mnist_dir(path, split=split, cache="ram" if cfg.complete else cfg.cache)
    if isinstance(cfg, ds.Cifar10Data):
        return load_cifar10_dir(path, split="test" if test and not cfg.test_path else cfg.split)
    if isinstance(cfg, ds.FolderData):
        return _folder(cfg, path, seed, test)
    if isinstance(cfg, (ds.ArraysData, ds.MaskFolderData)):  # the options of masks
        masks = {"classes": cfg.classes, "mask_values": cfg.mask_values}
        masks["ignore_value"] = cfg.ignore_value
    if isinstance(cfg, ds.ArraysData):
        y_path = resolve_path(cfg.y_path, spec_file) if cfg.y_path else None
        keys = {"x_key": cfg.x_key, "y_key": cfg.y_key, "channels": cfg.channels}
        auto = cfg.cache == "auto" and not cfg.complete  # halves: whole arrays
        big = auto and choose_cache("auto", _size(path), []) != "ram"
        if cfg.cache in ("disk", "none") or big:
            streamed = _mapped(cfg, load_arrays(path, y_path=y_path, **keys, **masks, stream=True))
            if streamed is not None:
                return streamed
        return load_arrays(path, y_path=y_path, **keys, **masks)
    if isinstance(cfg, ds.MaskFolderData):
        return _mask_folder(cfg, path, masks)
    if isinstance(cfg, ds.CsvData):
        return _csv(cfg, path)
    if isinstance(cfg, ds.TsData):
        train = resolve_path(cfg.path, spec_file) if test else None  # its padding and dimensions
        return _ts(cfg, path, train)
    if isinstance(cfg, ds.TextData):
        return _texts(cfg, path)
    raise AssertionError(f"unhandled data source {cfg!r}")  # the schema lists every source
