"""Tests for netspec.data: real datasets from shared/data, and every kind of broken input."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from helpers import SHARED_DATA as DATA
from helpers import decoded_images, needs_data
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from netspec.data import (
    ArrayData,
    dataset_stats,
    download_mnist,
    load_arrays,
    load_builtin,
    load_cifar10_dir,
    load_csv,
    load_idx,
    load_image_folder,
    load_mnist_dir,
    split_arrays,
)
from netspec.data import mnist as mnist_module
from netspec.data.idx import IDX_DTYPES, parse_idx
from netspec.errors import DataError

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --- helpers -------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode an array as IDX: 0x0000, type code, ndim, big-endian dims, big-endian data."""
    code = next(c for c, dt in IDX_DTYPES.items() if dt.newbyteorder("=") == arr.dtype)
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.astype(IDX_DTYPES[code]).tobytes()


def write_mnist_split(directory: Path, prefix: str, n: int, *, gz: bool = True) -> np.ndarray:
    """Write a tiny MNIST-format split; returns its labels."""
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
        data = idx_bytes(arr)
        name = f"{prefix}-{kind}-ubyte"
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return labels


class Hostile:
    """Unpickling this runs a shell command: what a malicious dataset file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def write_cifar_dir(directory: Path, n_per_batch: int = 4, *, protocol: int = 2) -> None:
    """A small fake cifar-10-batches-py folder in the real layout (bytes keys, like python 2)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    with (directory / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=protocol)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batch = {
            b"batch_label": f"batch {i}".encode(),
            b"data": rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8),
            b"labels": [(i + j) % 10 for j in range(n_per_batch)],
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(n_per_batch)],
        }
        with (directory / name).open("wb") as f:
            pickle.dump(batch, f, protocol=protocol)


class Py2Pickler(pickle._Pickler):
    """Writes every str/bytes as a python-2 `str` (BINSTRING), as cPickle did for CIFAR-10.

    The pure-python pickler is subclassed because only it exposes the per-type dispatch table.
    """

    dispatch: ClassVar[dict[type, Any]] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + len(data).to_bytes(4, "little") + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1.x (what wrote the real files) names the module numpy.core, not numpy._core.
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_png(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def toy_classification(counts: list[int]) -> ArrayData:
    """x[i] = i, so a split's x tells exactly which samples it holds."""
    y = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    x = np.arange(y.size, dtype=np.float32)[:, None]
    return ArrayData(x=x, y=y, classes=tuple(f"c{i}" for i in range(len(counts))), source="toy")


# --- IDX / MNIST ---------------------------------------------------------------------------


@needs_data
def test_real_mnist_t10k_idx_files() -> None:
    images = load_idx(DATA / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = load_idx(DATA / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    assert np.bincount(labels).tolist() == MNIST_TEST_COUNTS


@needs_data
def test_real_mnist_dir_test_split_and_stats() -> None:
    data = load_mnist_dir(DATA / "mnist", split="test")
    assert data.x.shape == (10000, 1, 28, 28) and data.x.dtype == np.uint8
    assert data.y.dtype == np.int64 and np.bincount(data.y).tolist() == MNIST_TEST_COUNTS
    assert data.classes == tuple("0123456789")
    mean, std = dataset_stats(data.x)
    # The well-known MNIST test-set statistics, in 0..255 units.
    assert mean.shape == (1,) and mean[0] / 255 == pytest.approx(0.1325, abs=1e-4)
    assert std[0] / 255 == pytest.approx(0.3105, abs=1e-4)


@needs_data
def test_real_mnist_dir_without_train_images_names_the_missing_file() -> None:
    # shared/data/mnist really lacks the 9.9 MB training images.
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte") as info:
        load_mnist_dir(DATA / "mnist", split="train")
    assert str(DATA / "mnist") in str(info.value)


def test_mnist_dir_raw_and_gz_files(tmp_path: Path) -> None:
    labels = write_mnist_split(tmp_path, "train", 12, gz=False)
    write_mnist_split(tmp_path, "t10k", 7, gz=True)
    train = load_mnist_dir(tmp_path, split="train")
    test = load_mnist_dir(tmp_path, split="test")
    assert train.x.shape == (12, 1, 28, 28) and test.x.shape == (7, 1, 28, 28)
    assert train.y.tolist() == labels.tolist()


def test_mnist_missing_directory_names_it_and_the_files(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=r"nowhere.*not found(.|\n)*t10k-images-idx3-ubyte\.gz"):
        load_mnist_dir(missing, split="test")


def test_mnist_labels_not_matching_images(tmp_path: Path) -> None:
    write_mnist_split(tmp_path, "t10k", 5)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(4, dtype=np.uint8)))
    )
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*expected \(5,\)"):
        load_mnist_dir(tmp_path, split="test")


@pytest.mark.parametrize("dtype", [dt.newbyteorder("=") for dt in IDX_DTYPES.values()])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip_every_dtype(tmp_path: Path, dtype: np.dtype, compress: bool) -> None:
    arr = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(arr)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    path.write_bytes(gzip.compress(data) if compress else data)
    out = load_idx(path)
    assert out.dtype == dtype and out.dtype.isnative and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([dt.newbyteorder("=") for dt in IDX_DTYPES.values()]).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=4, max_side=5))
    )
)
def test_idx_parse_inverts_encode(arr: np.ndarray) -> None:
    out = parse_idx(idx_bytes(arr))
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)  # NaNs compare equal here


def test_idx_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*truncated.*\(3, 28, 28\)"):
        load_idx(path)


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(5000, dtype=np.uint8)))[:40])
    with pytest.raises(DataError, match=r"labels\.gz.*corrupt or truncated gzip"):
        load_idx(path)


def test_idx_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(b"\x12\x34\x08\x01" + bytes(8))
    with pytest.raises(DataError, match=r"bad-idx1-ubyte.*bad IDX magic number 0x12340801"):
        load_idx(path)


def test_idx_trailing_bytes_and_short_header(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"\x00")
    with pytest.raises(DataError, match=r"extra.*trailing bytes.*5 data bytes"):
        load_idx(extra)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DataError, match=r"short.*truncated IDX header.*expected 16"):
        load_idx(short)


def test_idx_named_gz_but_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(DataError, match=r"x-idx1-ubyte\.gz.*not gzip data"):
        load_idx(path)


def test_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent-idx.*IDX file not found"):
        load_idx(tmp_path / "absent-idx")


# --- download_mnist (network always faked) -------------------------------------------------


class FakeServer:
    """Stands in for urllib.request.urlopen: serves bytes by file name, records every call."""

    def __init__(self, files: dict[str, bytes], fail_hosts: tuple[str, ...] = ()) -> None:
        self.files = files
        self.fail_hosts = fail_hosts
        self.calls: list[tuple[str, float | None]] = []

    def __call__(self, url: str, timeout: float | None = None) -> io.BytesIO:
        self.calls.append((url, timeout))
        if any(host in url for host in self.fail_hosts):
            raise urllib.error.URLError("Name or service not known")
        return io.BytesIO(self.files[url.rsplit("/", 1)[1]])


def fake_mnist_payloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Distinct bytes per file, with the expected md5s patched to match them."""
    payloads = {name: f"fake {name}".encode() * 10 for name in mnist_module.MNIST_MD5}
    for name, data in payloads.items():
        monkeypatch.setitem(mnist_module.MNIST_MD5, name, hashlib.md5(data).hexdigest())
    return payloads


def test_download_mnist_writes_files_then_skips_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = fake_mnist_payloads(monkeypatch)
    server = FakeServer(payloads)
    monkeypatch.setattr(urllib.request, "urlopen", server)
    cache = tmp_path / "cache" / "mnist"
    assert download_mnist(cache, timeout=3.5) == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(payloads)  # no .part left over
    for name, data in payloads.items():
        assert (cache / name).read_bytes() == data
    assert [url for url, _ in server.calls] == [
        "https://ossci-datasets.s3.amazonaws.com/mnist/" + name for name in payloads
    ]
    assert {t for _, t in server.calls} == {3.5}
    server.calls.clear()
    download_mnist(cache)
    assert server.calls == []  # every file present with the right checksum


def test_download_mnist_falls_back_to_second_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = fake_mnist_payloads(monkeypatch)
    server = FakeServer(payloads, fail_hosts=("ossci-datasets",))
    monkeypatch.setattr(urllib.request, "urlopen", server)
    download_mnist(tmp_path)
    assert (tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes() == payloads[
        "t10k-labels-idx1-ubyte.gz"
    ]
    assert server.calls[1][0] == "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz"


def test_download_mnist_offline_names_directory_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer({}, fail_hosts=("http",)))
    cache = tmp_path / "mnist_cache"
    with pytest.raises(DataError, match=r"download failed \(offline\?\)") as info:
        download_mnist(cache)
    message = str(info.value)
    assert f"put them in {cache}" in message
    for name in mnist_module.MNIST_MD5:
        assert name in message
    assert list(cache.iterdir()) == []


def test_download_mnist_rejects_wrong_checksum_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tampered = {name: b"not the real file" for name in mnist_module.MNIST_MD5}
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(tampered))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: checksum mismatch"):
        download_mnist(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_mnist_replaces_a_corrupt_cached_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = fake_mnist_payloads(monkeypatch)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"half a download")
    monkeypatch.setattr(urllib.request, "urlopen", FakeServer(payloads))
    download_mnist(tmp_path)
    assert (tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes() == payloads[
        "t10k-images-idx3-ubyte.gz"
    ]


@needs_data
def test_download_mnist_real_checksums_match_shared_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The three real files must pass the built-in md5s untouched and not be fetched again.
    for path in (DATA / "mnist").glob("*.gz"):
        shutil.copy(path, tmp_path / path.name)
    fake = b"stand-in for the 9.9 MB training images"
    monkeypatch.setitem(
        mnist_module.MNIST_MD5, "train-images-idx3-ubyte.gz", hashlib.md5(fake).hexdigest()
    )
    server = FakeServer({"train-images-idx3-ubyte.gz": fake})
    monkeypatch.setattr(urllib.request, "urlopen", server)
    download_mnist(tmp_path)
    assert [url.rsplit("/", 1)[1] for url, _ in server.calls] == ["train-images-idx3-ubyte.gz"]


# --- CIFAR-10 ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_fake_batches(tmp_path: Path, protocol: int) -> None:
    write_cifar_dir(tmp_path / "cifar-10-batches-py", protocol=protocol)
    train = load_cifar10_dir(tmp_path, split="train")  # finds the cifar-10-batches-py subfolder
    test = load_cifar10_dir(tmp_path / "cifar-10-batches-py", split="test")
    assert train.x.shape == (20, 3, 32, 32) and train.x.dtype == np.uint8
    assert test.x.shape == (4, 3, 32, 32)
    assert train.classes is not None and train.classes[0] == "airplane" and len(train.classes) == 10
    assert train.y[:4].tolist() == [0, 1, 2, 3] and test.y.tolist() == [5, 6, 7, 8]
    with (tmp_path / "cifar-10-batches-py" / "test_batch").open("rb") as f:
        raw = pickle.load(f)[b"data"]
    # Row layout: 1024 red, then green, then blue, each a row-major 32x32 plane.
    np.testing.assert_array_equal(test.x[1, 2, 0, :], raw[1, 2048 : 2048 + 32])
    np.testing.assert_array_equal(test.x[3, 0, 5, 7], raw[3, 5 * 32 + 7])


def test_cifar10_python2_style_pickles(tmp_path: Path) -> None:
    # The official batches come from python 2: str keys, str labels and dtype state all
    # unpickle as bytes under encoding="bytes".
    (tmp_path / "batches.meta").write_bytes(py2_pickle({"label_names": ["airplane", "bird"]}))
    data = (np.arange(2 * 3072) % 251).astype(np.uint8).reshape(2, 3072)
    batch = {"batch_label": "testing batch 1 of 1", "data": data, "labels": [1, 0]}
    raw = py2_pickle(batch)
    assert b"cnumpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    (tmp_path / "test_batch").write_bytes(raw)
    out = load_cifar10_dir(tmp_path, split="test")
    assert out.classes == ("airplane", "bird") and out.y.tolist() == [1, 0]
    np.testing.assert_array_equal(out.x.reshape(2, 3072), data)


def test_cifar10_str_keys(tmp_path: Path) -> None:
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a", "b"]}))
    data = np.zeros((2, 3072), dtype=np.uint8)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": [1, 0]}))
    out = load_cifar10_dir(tmp_path, split="test")
    assert out.classes == ("a", "b") and out.y.tolist() == [1, 0]


def test_cifar10_hostile_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    write_cifar_dir(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"data": Hostile(marker)}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3.*refusing to unpickle.*system"):
        load_cifar10_dir(tmp_path, split="train")
    assert not marker.exists()


def test_cifar10_missing_batch_is_named(tmp_path: Path) -> None:
    write_cifar_dir(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(DataError, match=r"missing data_batch_4 in"):
        load_cifar10_dir(tmp_path, split="train")


# Bytes that are no CIFAR batch, each raising another exception in the pickle machine. The last:
# BYTEARRAY8 of a length over 2**63, an OverflowError that random bytes hit now and then (the
# test drew os.urandom(64) and failed about once in 30 runs).
NOT_BATCHES = (b"", b"\x80\x02}q\x00(", b"\x00" * 64, b"\x80\x05\x96" + b"\xff" * 8)


@pytest.mark.parametrize("data", NOT_BATCHES, ids=["empty", "cut", "zeros", "bytearray8"])
def test_cifar10_bytes_that_are_no_batch_are_one_error(tmp_path: Path, data: bytes) -> None:
    write_cifar_dir(tmp_path)
    (tmp_path / "test_batch").write_bytes(data)
    with pytest.raises(DataError, match=r"test_batch.*not a readable CIFAR-10 python batch"):
        load_cifar10_dir(tmp_path, split="test")


def test_cifar10_misshapen_batches(tmp_path: Path) -> None:
    write_cifar_dir(tmp_path)
    bad = {b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match=r"test_batch.*shape \(2, 100\).*expected.*\(N, 3072\)"):
        load_cifar10_dir(tmp_path, split="test")
    bad = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 10]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match=r"test_batch.*label 10 is outside 0\.\.9"):
        load_cifar10_dir(tmp_path, split="test")


# --- image folders -------------------------------------------------------------------------


@needs_data
def test_real_cifar10_jpg_folder() -> None:
    data = load_image_folder(DATA / "cifar10_jpg" / "train")
    assert data.x.shape == (2000, 3, 32, 32) and data.x.dtype == np.uint8
    assert data.classes == (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    assert np.bincount(data.y).tolist() == [200] * 10
    # Spot check against a direct Pillow decode: (H, W, C) -> (C, H, W).
    first = np.asarray(Image.open(DATA / "cifar10_jpg/train/airplane/0000.jpg").convert("RGB"))
    np.testing.assert_array_equal(data.x[0], first.transpose(2, 0, 1))


@needs_data
def test_real_cats_dogs_varied_sizes_need_a_resize() -> None:
    root = DATA / "cats_dogs" / "test_set"
    with pytest.raises(DataError, match=r"cat\.\d+\.jpg.*all images must have the same size"):
        load_image_folder(root)
    data = load_image_folder(root, size=(64, 64))
    assert data.x.shape == (200, 3, 64, 64) and data.classes == ("cats", "dogs")
    assert np.bincount(data.y).tolist() == [100, 100]


@needs_data
def test_real_cats_center_crop_grayscale() -> None:
    data = load_image_folder(
        DATA / "cats_dogs" / "test_set",
        size=(48, 32),
        color="grayscale",
        classes=["cats"],
        crop="center",
    )
    assert data.x.shape == (100, 1, 48, 32) and data.classes == ("cats",)
    assert set(data.y.tolist()) == {0}


def test_image_folder_center_crop_keeps_the_middle(tmp_path: Path) -> None:
    # 30x10 image: red | green | blue thirds; a centre crop to a square keeps only green.
    img = np.zeros((10, 30, 3), dtype=np.uint8)
    img[:, :10, 0] = img[:, 10:20, 1] = img[:, 20:, 2] = 255
    (tmp_path / "a").mkdir()
    Image.fromarray(img).save(tmp_path / "a" / "x.PNG")  # upper-case suffix is an image too
    data = load_image_folder(tmp_path, size=(5, 5), crop="center")
    assert data.x.shape == (1, 3, 5, 5)
    assert data.x[0, 1].min() == 255 and data.x[0, 0].max() == 0 and data.x[0, 2].max() == 0
    stretched = load_image_folder(tmp_path, size=(5, 5))
    assert stretched.x[0, 0, :, 0].min() == 255  # without crop the red edge survives


@pytest.mark.parametrize("cache", ["ram", "none"])
def test_a_limit_decodes_only_the_images_it_keeps(
    tmp_path: Path, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train.data.limit` on an image folder takes its subset from the listing: only the kept
    files are decoded (before, all 3,000 CIFAR JPEGs were, for a limit of 200), and the samples
    are those of limiting the whole decoded folder with the same seed."""
    from netspec.data.sources import limited, load_source
    from netspec.train_data_spec import FolderData

    rng = np.random.default_rng(0)
    for i in range(40):
        path = tmp_path / ("cat", "dog", "eel")[i % 3] / f"{i:02d}.png"
        path.parent.mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, (6 + i % 3, 8, 3), np.uint8)  # sizes vary: resized
        Image.fromarray(pixels).save(path)
    whole = limited(load_image_folder(tmp_path, size=(5, 4)), 7, seed=3)
    read = decoded_images(monkeypatch)
    cfg = FolderData(source="folder", path=str(tmp_path), size=[5, 4], limit=7, cache=cache)
    data = load_source(cfg, None, seed=3)
    x = np.stack([data.x[i] for i in range(len(data))])  # a streamed x decodes when read
    assert len(set(read)) == 7  # streamed, the first is read once more for the samples' shape
    assert len(read) == 7 if cache == "ram" else len(read) <= 8
    assert np.array_equal(x, whole.x) and np.array_equal(data.y, whole.y)
    assert data.classes == whole.classes == ("cat", "dog", "eel")


def test_image_folder_size_mismatch_names_the_file(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "1.png", (8, 8), (255, 0, 0))
    write_png(tmp_path / "b" / "2.png", (8, 8), (0, 255, 0))
    write_png(tmp_path / "b" / "3.png", (9, 8), (0, 0, 255))
    with pytest.raises(DataError, match=r"b/3\.png.*9x8 \(width x height\) but a/1\.png is 8x8"):
        load_image_folder(tmp_path)


def test_image_folder_undecodable_jpg_named(tmp_path: Path) -> None:
    write_png(tmp_path / "cat" / "ok.png", (4, 4), (1, 2, 3))
    (tmp_path / "dog").mkdir()
    # Fixed bytes, the same every run (os.urandom made a CIFAR test fail once in ~30 runs).
    (tmp_path / "dog" / "broken.jpg").write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(DataError, match=r"dog/broken\.jpg.*cannot decode image"):
        load_image_folder(tmp_path)


def test_image_folder_classes_and_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing_root.*image folder not found"):
        load_image_folder(tmp_path / "missing_root")
    write_png(tmp_path / "cat" / "a.png", (4, 4), (1, 2, 3))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"class folder 'cats' not found \(did you mean 'cat'\?\)"):
        load_image_folder(tmp_path, classes=["cats"])
    data = load_image_folder(tmp_path)
    assert data.notes == ("skipped 1 non-image files: cat/notes.txt",)
    (tmp_path / "dog").mkdir()
    with pytest.raises(DataError, match=r"class folder 'dog' holds no image files"):
        load_image_folder(tmp_path)
    with pytest.raises(DataError, match=r"crop='center' needs a size"):
        load_image_folder(tmp_path, crop="center")


# --- numpy arrays --------------------------------------------------------------------------


def test_npz_images_with_five_channels(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(6, 5, 4, 4), dtype=np.uint8)
    y = np.array([0, 2, 1, 2, 0, 3])
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    data = load_arrays(tmp_path / "d.npz", x_key="images", y_key="labels")
    assert data.x.dtype == np.uint8 and data.x.shape == (6, 5, 4, 4)
    assert data.y.dtype == np.int64 and data.classes == ("0", "1", "2", "3")
    assert data.notes == ()


def test_npy_pair_regression(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(12, dtype=np.float64).reshape(4, 3))
    np.save(tmp_path / "y.npy", np.linspace(0, 1, 8).reshape(4, 2))
    data = load_arrays(tmp_path / "x.npy", y_path=tmp_path / "y.npy")
    assert data.classes is None and data.x.dtype == np.float32 and data.y.shape == (4, 2)
    assert data.y.dtype == np.float32
    with pytest.raises(DataError, match=r"x\.npy.*expected y_path"):
        load_arrays(tmp_path / "x.npy")


@needs_data
def test_real_sentinel_scenes_flagged_channels_last(tmp_path: Path) -> None:
    np.save(tmp_path / "y.npy", np.arange(5, dtype=np.float32))
    data = load_arrays(DATA / "eolearn_s2_lulc" / "REFERENCE_SCENES.npy", y_path=tmp_path / "y.npy")
    assert data.x.shape == (5, 101, 100, 13)
    assert "looks channels-last" in data.notes[0]


def test_npz_that_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "fake.npz"
    path.write_bytes(b"this is plain text, not a zip archive")
    with pytest.raises(DataError, match=r"fake\.npz.*not a \.npz archive: expected a zip"):
        load_arrays(path)


def test_npy_object_dtype_is_refused_not_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    np.save(tmp_path / "x.npy", np.array([Hostile(marker), 1], dtype=object), allow_pickle=True)
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    with pytest.raises(DataError, match=r"x\.npy.*object \(dtype=object\) array.*refusing"):
        load_arrays(tmp_path / "x.npy", y_path=tmp_path / "y.npy")
    assert not marker.exists()


def test_array_shape_and_key_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3)), y=np.zeros(5, dtype=np.int64))
    with pytest.raises(DataError, match=r"d\.npz.*y has shape \(5,\); expected \(4,\)"):
        load_arrays(tmp_path / "d.npz")
    np.savez(tmp_path / "named.npz", x=np.zeros((4, 3)), labels=np.zeros(4, dtype=np.int64))
    with pytest.raises(DataError, match=r"no array named 'lables'.*did you mean 'labels'"):
        load_arrays(tmp_path / "named.npz", y_key="lables")
    np.savez(tmp_path / "flat.npz", x=np.zeros(4), y=np.zeros(4, dtype=np.int64))
    with pytest.raises(DataError, match=r"flat\.npz.*x has shape \(4,\); expected \(N, F\)"):
        load_arrays(tmp_path / "flat.npz")
    with pytest.raises(DataError, match=r"gone\.npz.*array file not found"):
        load_arrays(tmp_path / "gone.npz")


# --- CSV tables ----------------------------------------------------------------------------


@needs_data
def test_real_iris_csv() -> None:
    data = load_csv(DATA / "iris" / "iris.csv", target="species")
    assert data.x.shape == (150, 4) and data.x.dtype == np.float32
    assert data.classes == ("setosa", "versicolor", "virginica")
    assert np.bincount(data.y).tolist() == [50, 50, 50] and data.notes == ()
    assert data.feature_names == ("sepal_length", "sepal_width", "petal_length", "petal_width")


@needs_data
def test_real_penguins_one_hot_and_dropped_rows() -> None:
    data = load_csv(DATA / "penguins" / "penguins.csv", target="species")
    assert data.classes == ("Adelie", "Chinstrap", "Gentoo")
    assert data.x.shape == (333, 9)  # 344 rows - 11 with a missing value
    assert data.notes[0].startswith("dropped 11 of 344 rows")
    assert data.feature_names is not None
    island = [i for i, n in enumerate(data.feature_names) if n.startswith("island=")]
    assert [data.feature_names[i] for i in island] == [
        "island=Biscoe",
        "island=Dream",
        "island=Torgersen",
    ]
    assert (data.x[:, island].sum(axis=1) == 1).all()  # exactly one island per row


@needs_data
def test_real_california_housing_regression() -> None:
    data = load_csv(DATA / "california_housing" / "housing.csv", target="median_house_value")
    assert data.classes is None and data.y.dtype == np.float32
    assert data.x.shape == (20640 - 207, 8 + 5)
    assert "dropped 207 of 20640 rows" in data.notes[0] and "total_bedrooms: 207" in data.notes[0]
    assert data.feature_names is not None and "ocean_proximity=ISLAND" in data.feature_names
    assert data.y[0] == 452600.0


@needs_data
def test_unknown_column_suggests_nearest() -> None:
    with pytest.raises(DataError, match=r"unknown target column 'specis' \(did you mean 'species'"):
        load_csv(DATA / "iris" / "iris.csv", target="specis")
    with pytest.raises(DataError, match=r"available columns: sepal_length, sepal_width"):
        load_csv(DATA / "iris" / "iris.csv", target="species", features=["petal"])


def test_csv_auto_task_and_numeric_classes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    rows = [f"{i},{i % 3 * 5},{i * 1.5}" for i in range(30)]
    path.write_text("a,grade,price\n" + "\n".join(rows) + "\n")
    grade = load_csv(path, target="grade")
    assert grade.classes == ("0", "5", "10") and grade.y[:4].tolist() == [0, 1, 2, 0]
    price = load_csv(path, target="price", features=["a"])
    assert price.classes is None and price.x.shape == (30, 1)
    forced = load_csv(path, target="grade", task="regression")
    assert forced.classes is None and forced.y[1] == 5.0


def test_csv_bad_inputs(tmp_path: Path) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b,label\n1,2,x\n3,y\n")
    with pytest.raises(DataError, match=r"ragged\.csv:3: error: row has 2 fields; expected 3"):
        load_csv(ragged, target="label")
    headless = tmp_path / "headless.csv"
    headless.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match=r"headless\.csv.*looks like data; expected a header row"):
        load_csv(headless, target="3")
    text_target = tmp_path / "text.csv"
    text_target.write_text("a,label\n1,cat\n2,dog\n")
    with pytest.raises(DataError, match=r"regression target 'label' holds non-numeric value"):
        load_csv(text_target, target="label", task="regression")
    all_missing = tmp_path / "missing.csv"
    all_missing.write_text("a,label\nNA,1\n?,2\n")
    with pytest.raises(DataError, match=r"missing\.csv.*no rows left after dropping 2 rows"):
        load_csv(all_missing, target="label")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"a,b\n\xff\xfe\x00\x01\n")
    with pytest.raises(DataError, match=r"binary\.csv.*not UTF-8 text"):
        load_csv(binary, target="b")


# --- builtin -------------------------------------------------------------------------------


def test_builtin_digits_are_load_digits_read_without_importing_scikit_learn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sklearn_datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn not installed")
    from netspec.data import builtin

    data = load_builtin("digits")
    assert data.x.shape == (1797, 1, 8, 8) and data.x.dtype == np.float32
    assert data.x.min() == 0.0 and data.x.max() == 16.0
    assert data.classes == tuple("0123456789") and data.y.dtype == np.int64
    # Read from scikit-learn's own file, not through its import: the very arrays load_digits gives.
    assert builtin._digits_file() is not None
    bunch = sklearn_datasets.load_digits()
    assert np.array_equal(data.x[:, 0], bunch.images) and np.array_equal(data.y, bunch.target)
    # Where that file is not as expected, load_digits reads it.
    monkeypatch.setattr(builtin, "_digits_file", lambda: None)
    builtin._digit_arrays.cache_clear()
    try:
        again = load_builtin("digits")
    finally:
        builtin._digit_arrays.cache_clear()  # the next caller reads the file again
    assert np.array_equal(again.x, data.x) and np.array_equal(again.y, data.y)
    assert again.x.dtype == np.float32 and again.y.dtype == np.int64


def test_builtin_unknown_and_missing_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"unknown builtin dataset 'digit' \(did you mean 'digits'"):
        load_builtin("digit")  # type: ignore[arg-type]
    for name in ("sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, name, None)  # makes finding and importing it fail
    from netspec.data import builtin

    builtin._digit_arrays.cache_clear()  # as in a process that has not read them yet
    try:
        with pytest.raises(DataError, match=r"needs scikit-learn(.|\n)*pip install scikit-learn"):
            load_builtin("digits")
    finally:
        builtin._digit_arrays.cache_clear()


# --- splits and statistics -----------------------------------------------------------------

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def test_split_is_deterministic_and_a_partition() -> None:
    data = toy_classification([50, 30, 15, 5])
    a = split_arrays(data, FRACTIONS, seed=7)
    b = split_arrays(data, FRACTIONS, seed=7)
    c = split_arrays(data, FRACTIONS, seed=8)
    for name in FRACTIONS:
        np.testing.assert_array_equal(a[name].x, b[name].x)
    assert not np.array_equal(a["train"].x, c["train"].x)
    ids = np.concatenate([part.x[:, 0] for part in a.values()])
    assert sorted(ids.tolist()) == list(range(100))
    assert [len(a[k]) for k in FRACTIONS] == [80, 10, 10]
    assert a["val"].classes == data.classes and "[val: 10 of 100]" in a["val"].source


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    fractions=st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.5), (0.7, 0.2, 0.1), (0.6, 0.25, 0.15)]),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_is_stratified(counts: list[int], fractions: tuple[float, ...], seed: int) -> None:
    data = toy_classification(counts)
    n = sum(counts)
    named = {f"s{i}": f for i, f in enumerate(fractions)}
    # A split gets floor or ceil of fraction * n samples, so only one whose exact share is below
    # one sample can be empty; every other split must get samples.
    may_be_empty = {name for name, f in named.items() if f * n < 1}
    try:
        parts = split_arrays(data, named, seed=seed)
    except DataError as e:
        match = re.search(r"split '(\w+)' would be empty: ([\d.]+) of (\d+) samples", str(e))
        assert match, str(e)
        name, fraction, total = match.groups()
        assert name in may_be_empty, (str(e), counts, fractions)
        assert (float(fraction), int(total)) == (named[name], n)
        return
    assert list(parts) == list(named)
    held = np.concatenate([part.x[:, 0] for part in parts.values()])
    assert sorted(held.tolist()) == list(range(n))  # every sample in exactly one split
    for (_, f), part in zip(named.items(), parts.values()):
        assert len(part) > 0
        got = np.bincount(part.y, minlength=len(counts))
        # Every class is cut in proportion: floor or ceil of its exact share.
        assert (np.abs(got - f * np.asarray(counts)) < 1).all()
        assert abs(len(part) - f * n) < 1
        assert (part.y == np.repeat(np.arange(len(counts)), counts)[part.x[:, 0].astype(int)]).all()


def test_split_regression_without_stratification() -> None:
    data = ArrayData(
        x=np.zeros((10, 2), np.float32), y=np.arange(10, dtype=np.float32), classes=None, source="r"
    )
    parts = split_arrays(data, {"train": 0.7, "test": 0.3}, seed=0)
    assert len(parts["train"]) == 7 and len(parts["test"]) == 3
    assert sorted(np.concatenate([p.y for p in parts.values()]).tolist()) == list(range(10))


def test_split_rejects_bad_fractions() -> None:
    data = toy_classification([5, 5])
    with pytest.raises(DataError, match=r"fractions sum to 0\.9 .*expected them to sum to 1"):
        split_arrays(data, {"train": 0.8, "test": 0.1}, seed=0)
    with pytest.raises(DataError, match=r"split 'test' has fraction -0\.1; expected a number"):
        split_arrays(data, {"train": 0.9, "test": -0.1, "val": 0.2}, seed=0)
    with pytest.raises(DataError, match=r"split 'test' would be empty: 0\.01 of 10 samples"):
        split_arrays(data, {"train": 0.99, "test": 0.01}, seed=0)


def test_dataset_stats_per_channel_in_chunks() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(5000, 3, 4, 4), dtype=np.uint8)  # > one 4096-sample chunk
    mean, std = dataset_stats(x)
    ref = x.astype(np.float64)
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-12)
    table_mean, _ = dataset_stats(np.array([[1.0, 10.0], [3.0, 30.0]], dtype=np.float32))
    assert table_mean.tolist() == [2.0, 20.0]
    with pytest.raises(DataError, match=r"shape \(0, 3\).*expected \(N, C, \.\.\.\) with N > 0"):
        dataset_stats(np.zeros((0, 3)))


def test_data_package_imports_no_torch_onnx_or_sklearn() -> None:
    # A fresh interpreter: this test process may already have torch loaded by other tests.
    code = (
        "import sys, netspec.data; print(sorted({'torch', 'onnx', 'sklearn'} & set(sys.modules)))"
    )
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"
