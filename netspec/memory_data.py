"""The data's share of the training-memory estimate, from the spec alone: file counts and array
headers, no sample decoded (cheap enough for `netspec summary`)."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

from netspec.ir import Graph
from netspec.memory import MemoryRow, estimate
from netspec.train_spec import TrainSpec

# Batches each streaming worker decodes ahead (backends/training/loader.py's PREFETCH, kept
# here so the core needs no torch; tests/test_memory.py checks they agree).
PREFETCH = 4
# Samples in the files of the sources whose size is fixed: (train split, test split).
FIXED_COUNTS = {"mnist": (60_000, 10_000), "cifar10": (50_000, 10_000)}
UINT8_SOURCES = ("folder", "mnist", "cifar10")  # decoded as 8-bit pixels
COUNTED = (*FIXED_COUNTS, "shapes", "xo", "folder", "arrays")  # sizes known before reading


def training_rows(graph: Graph) -> tuple[MemoryRow, ...]:
    """The training-memory estimate of a spec with a `train:` section, its data included."""
    assert graph.train is not None
    spec = graph.train
    data = data_row(spec, graph.input_shape, graph.file)
    return (*estimate(graph, spec.batch_size), *([data] if data is not None else []))


def data_row(
    spec: TrainSpec, input_shape: tuple[int | None, ...], spec_file: str | None
) -> MemoryRow | None:
    """What the data hold in memory while training: the decoded samples (cache ram, or auto that
    keeps them in memory), or only the batches in flight when they stream (disk, none, or auto
    over a quarter of the available memory). None when the size of the source is known only
    once it is read (a CSV, a .ts file, a folder that is not there)."""
    cfg = spec.data
    if cfg.source not in COUNTED and cfg.cache not in ("disk", "none"):
        return None  # before the data modules (numpy) are imported: a summary stays light
    from netspec.data.cache_choice import choose_cache, default_workers
    from netspec.train_data_spec import STREAMED

    sample = _sample_bytes(cfg.source, input_shape)
    held = _decoded_bytes(cfg, spec_file, sample)
    streamable = isinstance(cfg, STREAMED) and not cfg.complete
    mode = cfg.cache
    if mode == "auto" and streamable and held is not None:
        mode = choose_cache("auto", held * 2, [])  # *2: as the loader decides (splits copy)
    if mode in ("disk", "none"):
        workers = default_workers() if cfg.workers is None else cfg.workers
        batches = 1 + PREFETCH * workers  # the one training uses, and each worker's ahead
        what = f"{batches} batches in flight (cache: {cfg.cache}, streamed)"
        return MemoryRow("data", batches * spec.batch_size * sample, what)
    if held is None:
        return None
    return MemoryRow("data", held, f"decoded in memory (cache: {cfg.cache})")


def _sample_bytes(source: str, input_shape: tuple[int | None, ...]) -> int:
    """One decoded sample at the network's input size: 8-bit pixels, else float32."""
    elements = math.prod(d or 1 for d in input_shape)  # a dynamic axis: not known, 1
    return elements * (1 if source in UINT8_SOURCES else 4)


def _decoded_bytes(cfg: Any, spec_file: str | None, sample: int) -> int | None:
    """The decoded samples of every split together, counted without decoding any."""
    if cfg.source in FIXED_COUNTS:
        train, test = FIXED_COUNTS[cfg.source]
        own_test = cfg.split == "train" and cfg.test == 0 and not cfg.test_path
        n = (train if cfg.split == "train" else test) + (test if own_test else 0)
        return _limited(n, cfg.limit) * sample
    if cfg.source == "shapes":  # whole scenes, float32, and their masks (int64)
        return _limited(cfg.samples, cfg.limit) * math.prod(cfg.size) * (4 * cfg.bands + 8)
    if cfg.source == "xo":
        return _limited(cfg.samples, cfg.limit) * sample
    if cfg.source not in ("folder", "arrays"):
        return None
    from netspec.data.paths import resolve_path

    paths = [resolve_path(p, spec_file) for p in (cfg.path, cfg.test_path) if p]
    if cfg.source == "folder":
        counts = [_images(p) for p in paths]
        if None in counts:
            return None
        return sum(_limited(n, cfg.limit) for n in counts) * sample  # type: ignore[arg-type]
    sizes = [_array_bytes(p, cfg.x_key, cfg.limit) for p in paths]
    return None if None in sizes else sum(sizes)  # type: ignore[arg-type]


def _limited(n: int, limit: int | None) -> int:
    return n if limit is None else min(n, limit)


def _images(root: Path) -> int | None:
    """The image files under a class-per-folder root (None if it is not there)."""
    from netspec.data.folder import IMAGE_SUFFIXES

    if not root.is_dir():
        return None
    try:
        return sum(1 for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError:
        return None


def _array_bytes(path: Path, key: str, limit: int | None) -> int | None:
    """x's bytes from its .npy header (a .npz member's), None if it cannot be read."""
    try:
        if path.suffix.lower() == ".npz":
            with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
                shape, dtype = _header(f)
        else:
            with path.open("rb") as f:
                shape, dtype = _header(f)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    if not shape:
        return None
    return _limited(shape[0], limit) * math.prod(shape[1:]) * dtype.itemsize


def _header(f: Any) -> tuple[tuple[int, ...], Any]:
    """An .npy header's shape and dtype (numpy's own reader: the header is never executed)."""
    import numpy as np

    fmt = np.lib.format
    major, _ = fmt.read_magic(f)
    read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
    shape, _, dtype = read(f)
    return tuple(shape), dtype
