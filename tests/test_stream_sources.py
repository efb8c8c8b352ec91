"""Streaming the sources beyond image folders and arrays: MNIST-format IDX files memory-mapped
(gzip ones gunzipped once into the disk cache) train exactly as in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import LINEAR, make_trainer, module_state, same_state, tiny_spec
from PIL import Image
from test_data import write_mnist_split

from netspec.backends.training.loader import Streamed
from netspec.data import stream
from netspec.errors import DataError

pytestmark = pytest.mark.usefixtures("no_plots", "cache_dir")


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
        assert same_state(module_state(t), module_state(ram)), (cache, workers)
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
    assert same_state(module_state(disk), module_state(ram))
    again = make_trainer(tmp_path, mnist_spec(folder, "disk"), out="again")
    assert any("gunzipped copy" in line for line in again.logs)
    # An edited file is another key: gunzipped again, the old copy never read for it.
    write_mnist_split(folder, "train", 44, gz=True)
    third = make_trainer(tmp_path, mnist_spec(folder, "disk"), out="third")
    assert len(third.data.train.x) + len(third.data.val.x) == 44
    assert len(list(cache_dir.glob("*.idx"))) == 3


def mask_folder(root: Path, n: int = 12, hw: int = 8) -> Path:
    """n RGB PNG scenes of hw x hw with their masks (class indices 0..2 as grayscale PNGs)."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = rng.integers(0, 3, (hw, hw), dtype=np.uint8)
        pixels = rng.integers(0, 256, (hw, hw, 3), dtype=np.uint8)
        pixels[..., 0] = mask * 100  # a learnable difference
        Image.fromarray(pixels).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    return root


def seg_spec(folder: Path, cache: str, workers: int = 0, hw: int = 8) -> str:
    data = (
        f"{{source: mask_folder, path: {folder}, classes: [a, b, c], val: 0.25, cache: {cache}, "
        f"workers: {workers}}}"
    )
    layers = ["conv2d: {filters: 3, kernel: 3, padding: same, activation: softmax}"]
    return tiny_spec(
        layers,
        input=f"[3, {hw}, {hw}]",
        data=data,
        batch_size=4,
        preprocess="{rescale: 1/255, normalize: dataset}",
        augment="{flip: horizontal}",
    )


def test_mask_folder_streams_its_images_bit_identically(tmp_path: Path, cache_dir: Path) -> None:
    folder = mask_folder(tmp_path / "seg")
    ram = make_trainer(tmp_path, seg_spec(folder, "ram"), out="ram")
    assert isinstance(ram.x_train, torch.Tensor)
    ram.fit()
    for cache, workers in (("none", 0), ("none", 1), ("disk", 1)):
        t = make_trainer(tmp_path, seg_spec(folder, cache, workers), out=f"{cache}{workers}")
        assert isinstance(t.x_train, Streamed)
        assert t.data.preprocessing == ram.data.preprocessing
        np.testing.assert_array_equal(t.data.val.y, ram.data.val.y)
        np.testing.assert_array_equal(np.asarray(t.data.val.x), ram.data.val.x)
        t.fit()
        assert same_state(module_state(t), module_state(ram)), (cache, workers)
    assert len(list(cache_dir.glob("*.npy"))) == 1
    # A scene that became unreadable mid-run is one error naming it.
    t = make_trainer(tmp_path, seg_spec(folder, "none"), out="bad")
    victim = Path(t.data.train.x.reader.files[int(t.data.train.x.index[2])])
    victim.write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image") as e:
        t.fit()
    assert str(victim) in e.value.format()


def test_scene_tiles_are_cut_from_streamed_scenes_bit_identically(tmp_path: Path) -> None:
    folder = mask_folder(tmp_path / "seg", n=8, hw=13)
    text = seg_spec(folder, "{cache}", workers=1, hw=8)
    text = text.replace("val: 0.25", "val: 0.25, tiles_per_scene: 3")
    ram = make_trainer(tmp_path, text.replace("{cache}", "ram"), out="ram")
    assert ram.data.random_tiles
    ram.fit()
    for cache in ("none", "disk"):
        t = make_trainer(tmp_path, text.replace("{cache}", cache), out=cache)
        assert isinstance(t.x_train, Streamed) and t.data.random_tiles
        # The validation scenes cut into the same tiles, each cut when read.
        assert isinstance(t.data.val.x, stream.Lazy) and t.data.val.x.shape == ram.data.val.x.shape
        np.testing.assert_array_equal(np.asarray(t.data.val.x), ram.data.val.x)
        np.testing.assert_array_equal(t.data.val.y, ram.data.val.y)
        t.fit()
        assert same_state(module_state(t), module_state(ram)), cache
        assert t.state.history[-1]["val_loss"] == ram.state.history[-1]["val_loss"]
