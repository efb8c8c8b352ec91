"""MNIST: load the four IDX files from a folder, or download them with checksums."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

import numpy as np

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData
from netspec.data.cache_choice import choose_cache
from netspec.data.idx import decoded_size, gunzip_cached, load_idx, map_idx
from netspec.data.stream import ArrayReader, Lazy

MNIST_FILES: dict[str, tuple[str, str]] = {
    # split -> (images file, labels file), without the optional .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# The md5s torchvision checks: they pin the exact canonical gzip files.
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# Tried in order; LeCun's own site is often down, so the PyTorch mirror comes first.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_mnist_dir(
    directory: str | Path, *, split: Literal["train", "test"], cache: str = "ram"
) -> ArrayData:
    """MNIST (or a same-format set such as Fashion-MNIST) from its IDX files in `directory`.

    x: (N, 1, 28, 28) uint8, y: (N,) int64 digits, classes "0".."9". `cache` (train.data's)
    other than ram streams x: the images memory-mapped (a `stream.Lazy`), see `_streamed`.
    """
    directory = Path(directory)
    if split not in MNIST_FILES:
        raise data_error(f"unknown MNIST split {split!r}; expected 'train' or 'test'")
    stems = MNIST_FILES[split]
    if not directory.is_dir():
        raise data_error(
            "MNIST directory not found",
            directory,
            hint=f"create it and put {stems[0]}.gz and {stems[1]}.gz there "
            "(or set `download: true` under train.data in the spec)",
        )
    images_path, labels_path = (_find(directory, stem) for stem in stems)
    if images_path is None or labels_path is None:
        missing = [s for s, p in zip(stems, (images_path, labels_path)) if p is None]
        raise data_error(
            f"MNIST {split} split: missing {' and '.join(m + '(.gz)' for m in missing)} "
            f"in {directory}",
            directory,
            hint=f"put {', '.join(m + '.gz' for m in missing)} in {directory} "
            f"(from {MNIST_MIRRORS[0]}), or set `download: true` under train.data in the spec",
        )
    notes: list[str] = []
    mapped = _streamed(images_path, cache, notes)
    images = load_idx(images_path) if mapped is None else mapped
    labels = load_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise data_error(
            f"MNIST images have shape {tuple(images.shape)} of {images.dtype}; "
            "expected (N, 28, 28) uint8",
            images_path,
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise data_error(
            f"MNIST labels have shape {tuple(labels.shape)}; expected ({images.shape[0]},) "
            f"to match {images_path.name}",
            labels_path,
        )
    if labels.size and int(labels.max()) > 9:
        raise data_error(
            f"MNIST label {int(labels.max())} found; expected digits 0..9", labels_path
        )
    x = images[:, None, :, :]  # (N, 1, 28, 28)
    return ArrayData(
        x=x if mapped is None else Lazy(ArrayReader(x)),
        y=labels.astype(np.int64),
        classes=MNIST_CLASSES,
        source=f"MNIST IDX files in {directory} ({split} split)",
        notes=tuple(notes),
    )


def _streamed(path: Path, cache: str, notes: list[str]) -> np.ndarray | None:
    """The images memory-mapped when the cache streams (None: read them whole). A raw IDX file
    is mapped in place; a gzip one is gunzipped once into the disk cache (cache disk, or auto
    when the images would take over a quarter of the memory) and refused with cache none."""
    if cache == "ram" or (
        cache == "auto" and choose_cache(cache, decoded_size(path) * 2, notes) == "ram"
    ):  # *2: the splits are copies
        return None
    mapped = map_idx(path)
    if mapped is not None:
        notes.append(f"{path.name} is read memory-mapped, batch by batch (no cache needed)")
        return mapped
    if cache == "none":
        raise data_error(
            "train.data.cache: none reads samples from the files, but this IDX file is "
            "gzip-compressed and cannot be read one sample at a time",
            path,
            hint="gunzip the IDX files (raw IDX files are memory-mapped), or use cache: disk",
        )
    raw = gunzip_cached(path, notes)
    return None if raw is None else map_idx(raw)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _file_md5(path: Path) -> str | None:
    try:
        return _md5(path.read_bytes())
    except OSError:
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + os.replace, so a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download_mnist(cache_dir: str | Path, *, timeout: float = 10.0) -> Path:
    """Fetch the four canonical MNIST .gz files into `cache_dir`, checking their md5s.

    Files already present with the right checksum are kept. Returns `cache_dir`.
    """
    cache_dir = Path(cache_dir)
    names = list(MNIST_MD5)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise data_error(
            f"cannot create the MNIST cache directory: {e.strerror or e}", cache_dir
        ) from None
    for name in names:
        target = cache_dir / name
        want = MNIST_MD5[name]
        if target.is_file() and _file_md5(target) == want:
            continue
        errors: list[str] = []
        for mirror in MNIST_MIRRORS:
            url = mirror + name
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    payload = response.read()
            except (OSError, http.client.HTTPException, ValueError) as e:
                # URLError/HTTPError/TimeoutError are OSErrors; IncompleteRead is an HTTPException.
                errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
                continue
            got = _md5(payload)
            if got != want:
                errors.append(f"{url}: md5 {got}, expected {want}")
                continue
            try:
                _write_atomic(target, payload)
            except OSError as e:
                raise data_error(f"cannot write {name}: {e.strerror or e}", target) from None
            break
        else:
            checksum_only = all("md5" in err for err in errors)
            problem = (
                "checksum mismatch (corrupt or tampered download)"
                if checksum_only
                else "download failed (offline?)"
            )
            raise data_error(
                f"could not get MNIST file {name}: {problem}; tried " + "; ".join(errors),
                cache_dir,
                hint=f"download the files by hand and put them in {cache_dir}: "
                + ", ".join(names)
                + f" (from {MNIST_MIRRORS[0]})",
            )
    return cache_dir
