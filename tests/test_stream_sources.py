"""Streaming the sources beyond image folders and arrays: MNIST-format IDX files memory-mapped
(gzip ones gunzipped once into the disk cache) train exactly as in memory."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import LINEAR, make_trainer, module_state, same_state, tiny_spec, trains_as_in_memory
from PIL import Image
from test_data import write_mnist_split

from netspec.backends.training.loader import Streamed
from netspec.data import parallel, stream
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

    def check(t, ram) -> None:
        assert isinstance(t.data.train.x.reader.array, np.memmap)
        assert any("memory-mapped" in line for line in t.logs)
        np.testing.assert_array_equal(np.asarray(t.data.test.x), ram.data.test.x)

    def make(cache: str, workers: int = 0):
        return make_trainer(tmp_path, mnist_spec(folder, cache, workers), out=f"{cache}{workers}")

    trains_as_in_memory(make, check)
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
    """n RGB PNG scenes of hw x hw with their masks (class indices 0..2 as grayscale PNGs, and
    a few pixels of 9, the no-data value `seg_spec` ignores)."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = rng.integers(0, 3, (hw, hw), dtype=np.uint8)
        pixels = rng.integers(0, 256, (hw, hw, 3), dtype=np.uint8)
        pixels[..., 0] = mask * 100  # a learnable difference
        mask[i % hw, : i % 3] = 9
        Image.fromarray(pixels).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    return root


def seg_spec(folder: Path, cache: str, workers: int = 0, hw: int = 8, per_scene: int = 0) -> str:
    """A segmentation spec of `mask_folder`'s scenes; an input smaller than the scenes
    (`hw`) trains on `per_scene` random tiles of each (0: as many as cover it)."""
    data = (
        f"{{source: mask_folder, path: {folder}, classes: [a, b, c], ignore_value: 9, val: 0.25, "
        f"cache: {cache}, workers: {workers}"
        + (f", tiles_per_scene: {per_scene}}}" if per_scene else "}")
    )
    layers = ["conv2d: {filters: 3, kernel: 3, padding: same, activation: softmax}"]
    return tiny_spec(
        layers,
        input=f"[3, {hw}, {hw}]",
        data=data,
        batch_size=4,
        preprocess="{rescale: 1/255, normalize: dataset}",
        augment="{flip: horizontal}",
        loss="{name: cross_entropy, class_weights: balanced}",  # streamed: counted by chunks
    )


def seg_trainer(
    tmp_path: Path, cache: str, workers: int = 0, tiles: bool = False, epochs: int = 2, **kw
):
    """A trainer of `mask_folder`'s scenes (13x13 ones, cut into 3 random 8x8 tiles each per
    epoch, when `tiles`)."""
    folder = tmp_path / "seg"
    if not folder.is_dir():
        mask_folder(folder, n=8, hw=13) if tiles else mask_folder(folder)
    text = seg_spec(folder, cache, workers, hw=8, per_scene=3 if tiles else 0)
    text = text.replace("epochs: 2", f"epochs: {epochs}")
    return make_trainer(tmp_path, text, out=kw.pop("out", f"{cache}{workers}"), **kw)


@pytest.mark.parametrize("tiles", [False, True], ids=["scenes", "tiles"])
def test_mask_folder_streams_scenes_and_masks_bit_identically(
    tmp_path: Path, cache_dir: Path, tiles: bool
) -> None:
    def check(t, ram) -> None:
        # Masks stream as the scenes do: decoded (and tiles cut) where a batch is decoded.
        assert isinstance(t.y_train, Streamed)
        assert stream.is_streamed(t.data.val.x) and stream.is_streamed(t.data.val.y)
        assert t.data.val.x.shape == ram.data.val.x.shape
        assert t.data.preprocessing == ram.data.preprocessing
        assert torch.equal(t.loss_fn.class_weights, ram.loss_fn.class_weights)
        assert set(ram.data.notes) <= set(t.data.notes)  # the pixels ignored, counted too
        np.testing.assert_array_equal(np.asarray(t.data.val.y), ram.data.val.y)
        np.testing.assert_array_equal(np.asarray(t.data.val.x), ram.data.val.x)

    ram = trains_as_in_memory(
        partial(seg_trainer, tmp_path, tiles=tiles),
        check,
        runs=(("none", 0), ("none", 2), ("disk", 1)),
        same_history=("val_loss",),
    )
    assert ram.data.random_tiles == tiles
    # The disk cache: the scenes, and the class masks stored compactly (255: ignored).
    masks = [a for a in map(np.load, cache_dir.glob("*.npy")) if a.ndim == 3]
    assert len(list(cache_dir.glob("*.npy"))) == 2 and masks[0].dtype == np.uint8
    assert (masks[0] == 255).any() and masks[0][masks[0] != 255].max() == 2


def test_evaluating_a_streamed_run_scores_as_the_in_memory_one(tmp_path: Path) -> None:
    """`netspec evaluate` scores without worker processes: a streamed run's scenes and masks are
    decoded (and paired) in the process, and give what the in-memory run's arrays give."""
    from netspec.backends.training.evaluate import evaluate_run

    got = []
    for cache in ("ram", "none"):
        t = seg_trainer(tmp_path, cache, workers=1, epochs=1, out=f"ev_{cache}")
        t.fit()
        got.append(evaluate_run(t.run_dir, data=tmp_path / "seg", device="cpu"))
    assert got[0].keys() == got[1].keys() and got[0]["samples"] == 12
    for key, value in got[0].items():
        if key != "report":  # the per-class table: its numbers are the same counts
            assert got[1][key] == value, key


def test_streamed_scene_or_mask_unreadable_mid_run_names_it(tmp_path: Path) -> None:
    t = seg_trainer(tmp_path, "none", workers=1, out="bad")
    for lazy in (t.data.train.x, t.data.train.y):
        victim = Path(lazy.reader.files[int(lazy.index[2])])
        saved = victim.read_bytes()
        victim.write_bytes(b"not an image")
        with pytest.raises(DataError, match=r"cannot read (image|mask)") as e:
            t.fit()
        assert str(victim) in e.value.format()
        victim.write_bytes(saved)


def test_class_masks_cached_compactly_keep_the_ignored() -> None:
    masks = np.array([[-1, 0, 2], [1, -1, 0]])
    for classes, dtype in ((3, np.uint8), (254, np.uint8), (255, np.int16), (1024, np.int16)):
        stored = stream.label_store(classes)
        assert stored == dtype
        back = stream.widened(masks.astype(stored))
        assert back.dtype == np.int64 and np.array_equal(back, masks)


def test_mask_pass_in_worker_processes_learns_what_memory_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netspec.data.mask_folder import load_mask_folder

    folder = mask_folder(tmp_path / "seg")
    opts = {"classes": ["a", "b", "c"], "ignore_value": 9}
    ram = load_mask_folder(folder, **opts)
    monkeypatch.setattr(stream, "CHUNK_BYTES", 3 * 8 * 8 * stream.LABEL_BYTES)  # 3 masks a chunk
    monkeypatch.setattr(parallel, "pass_workers", lambda: 3)
    streamed = load_mask_folder(folder, **opts, stream=True)
    assert streamed.notes == ram.notes and streamed.classes == ram.classes
    np.testing.assert_array_equal(np.asarray(streamed.y), ram.y)
    (folder / "masks" / "07.png").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"masks/07\.png: error: cannot read mask"):
        load_mask_folder(folder, **opts, stream=True)
