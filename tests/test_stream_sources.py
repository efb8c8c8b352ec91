"""Streaming the sources beyond image folders and arrays: MNIST-format IDX files memory-mapped
(gzip ones gunzipped once into the disk cache) train exactly as in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import LINEAR, make_trainer, tiny_spec
from test_data import write_mnist_split

from netspec.backends.training.loader import Streamed
from netspec.data import stream
from netspec.errors import DataError

pytestmark = pytest.mark.usefixtures("no_plots")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(stream.CACHE_ENV, str(folder))
    return folder


def weights(t) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in t.module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def mnist_spec(folder: Path, cache: str, workers: int = 0) -> str:
    data = f"{{source: mnist, path: {folder}, val: 0.25, cache: {cache}, workers: {workers}}}"
    return tiny_spec(LINEAR, input="[1, 28, 28]", data=data, batch_size=6, preprocess=None)


def mnist_folder(root: Path, gz: bool) -> Path:
    root.mkdir()
    write_mnist_split(root, "train", 40, gz=gz)
    write_mnist_split(root, "t10k", 12, gz=gz)
    return root


def test_raw_idx_streams_memory_mapped_bit_identically(tmp_path: Path) -> None:
    folder = mnist_folder(tmp_path / "mnist", gz=False)
    ram = make_trainer(tmp_path, mnist_spec(folder, "ram"), out="ram")
    assert isinstance(ram.x_train, torch.Tensor)
    ram.fit()
    for cache, workers in (("none", 0), ("none", 1), ("disk", 0)):
        t = make_trainer(tmp_path, mnist_spec(folder, cache, workers), out=f"{cache}{workers}")
        assert isinstance(t.x_train, Streamed)
        assert isinstance(t.data.train.x.reader.array, np.memmap)
        assert any("memory-mapped" in line for line in t.logs)
        np.testing.assert_array_equal(np.asarray(t.data.test.x), ram.data.test.x)
        t.fit()
        assert same(weights(t), weights(ram)), (cache, workers)
    assert not (tmp_path / "cache").exists()  # raw IDX needs no cache


def test_gzip_idx_is_gunzipped_once_into_the_disk_cache(tmp_path: Path, cache_dir: Path) -> None:
    folder = mnist_folder(tmp_path / "mnist", gz=True)
    with pytest.raises(DataError, match="gzip-compressed") as e:
        make_trainer(tmp_path, mnist_spec(folder, "none"), out="none")
    assert "gunzip the IDX files" in e.value.format()
    ram = make_trainer(tmp_path, mnist_spec(folder, "ram"), out="ram")
    ram.fit()
    disk = make_trainer(tmp_path, mnist_spec(folder, "disk", workers=1), out="disk")
    assert isinstance(disk.x_train, Streamed)
    assert any("gunzipped once" in line for line in disk.logs)
    assert len(list(cache_dir.glob("*.idx"))) == 2  # the train and the test images
    disk.fit()
    assert same(weights(disk), weights(ram))
    again = make_trainer(tmp_path, mnist_spec(folder, "disk"), out="again")
    assert any("gunzipped copy" in line for line in again.logs)
    # An edited file is another key: gunzipped again, the old copy never read for it.
    write_mnist_split(folder, "train", 44, gz=True)
    third = make_trainer(tmp_path, mnist_spec(folder, "disk"), out="third")
    assert len(third.data.train.x) + len(third.data.val.x) == 44
    assert len(list(cache_dir.glob("*.idx"))) == 3
