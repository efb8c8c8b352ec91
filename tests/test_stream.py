"""Data bigger than memory: `train.data.cache` (ram, disk, none, auto) and `workers`; streamed
image folders train exactly as in memory (same batches, same weights), the disk cache is reused
and never trusted when stale, bad files and dead workers are clear errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_trainer, module_state, same_state, tiny_spec, trains_as_in_memory
from PIL import Image
from test_stream_sources import seg_trainer

from netspec.backends.training.loader import Streamed
from netspec.data import cache_choice, parallel, stream
from netspec.data.cache_choice import choose_cache
from netspec.data.sources import load_source
from netspec.data.stream import Lazy
from netspec.errors import DataError, NetspecError

pytestmark = pytest.mark.usefixtures("no_plots", "cache_dir")


def image_folder(root: Path, n: int = 24, seed: int = 0) -> Path:
    """n small RGB PNG and JPEG images of varied sizes in two classes (resized by the source)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        cls = root / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        h, w = 10 + i % 5, 12 + i % 3
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pixels[..., 0] = 200 if i % 2 else pixels[..., 0] // 3  # a learnable difference
        Image.fromarray(pixels).save(cls / f"{i:03d}.{'png' if i % 3 else 'jpg'}")
    return root


SPEC = """\
name: streamed
input: [3, 8, 8]
layers:
  - conv2d: {{filters: 4, kernel: 3, activation: relu}}
  - flatten
  - dropout: {{rate: 0.2}}
  - dense: {{units: 2, activation: softmax}}
train:
  data: {{source: folder, path: {path}, size: [8, 8], val: 0.25, test: 0.2, cache: {cache},
          workers: {workers}}}
  preprocess: {{rescale: 1/255, normalize: dataset}}
  augment: {{flip: horizontal}}
  batch_size: 5
  epochs: {epochs}
  seed: 3
"""


def trainer(tmp_path: Path, cache: str, workers: int = 0, epochs: int = 2, **kw):
    folder = tmp_path / "images"
    if not folder.is_dir():
        image_folder(folder)
    text = SPEC.format(path=folder, cache=cache, workers=workers, epochs=epochs)
    return make_trainer(tmp_path, text, out=kw.pop("out", f"run_{cache}_{workers}"), **kw)


def test_streamed_folder_trains_bit_identically_to_memory(tmp_path: Path) -> None:
    def check(t, ram) -> None:
        # The same splits, samples and preprocessing record (statistics included).
        assert t.data.preprocessing == ram.data.preprocessing
        np.testing.assert_array_equal(t.data.val.y, ram.data.val.y)
        np.testing.assert_array_equal(np.asarray(t.data.test.x), ram.data.test.x)

    trains_as_in_memory(
        partial(trainer, tmp_path),
        check,
        runs=(("none", 0), ("none", 2), ("disk", 1)),
        same_history=("loss", "val_loss"),
    )


@pytest.mark.parametrize(
    "make", [trainer, partial(seg_trainer, tiles=True)], ids=["folder", "tiles"]
)
def test_streamed_resume_continues_bit_identically(tmp_path: Path, make) -> None:
    # tiles: random tiles of streamed scenes and masks, cut by the worker.
    whole = make(tmp_path, "none", workers=1, epochs=3, out="whole")
    whole.fit()
    first = make(tmp_path, "none", workers=1, epochs=2, out="split")
    first.fit()
    again = make(tmp_path, "none", workers=1, epochs=3, out="split", resume=True)
    assert again.state.epoch == 2
    again.fit()
    assert same_state(module_state(again), module_state(whole))


def test_disk_cache_reused_and_rebuilt_when_stale(tmp_path: Path, cache_dir: Path) -> None:
    folder = image_folder(tmp_path / "images")
    cfg = make_trainer(
        tmp_path, SPEC.format(path=folder, cache="disk", workers=0, epochs=1), out="c"
    ).spec.data
    shutil.rmtree(cache_dir)  # the trainer's setup wrote it
    first = load_source(cfg, None)
    assert any("written once" in n for n in first.notes)
    (npy,) = cache_dir.glob("*.npy")
    assert (npy.with_suffix(".done")).is_file()
    second = load_source(cfg, None)
    assert any("read from the disk cache" in n for n in second.notes)
    np.testing.assert_array_equal(second.x[:], first.x[:])
    # An edited file gives another key: a new cache, the old one never read for it.
    Image.new("RGB", (9, 9), (1, 2, 3)).save(folder / "a" / "001.png")
    third = load_source(cfg, None)
    assert any("written once" in n for n in third.notes)
    assert len(list(cache_dir.glob("*.npy"))) == 2
    # A half-written cache (no marker) and a foreign marker are rebuilt, never read.
    for done in cache_dir.glob("*.done"):
        done.unlink()
    assert any("written once" in n for n in load_source(cfg, None).notes)
    for done in cache_dir.glob("*.done"):
        want = json.loads(done.read_text())
        done.write_text(json.dumps({**want, "shape": [1, 2, 3]}))
    assert any("written once" in n for n in load_source(cfg, None).notes)


def test_disk_cache_unwritable_goes_on_without_it(tmp_path: Path, cache_dir: Path) -> None:
    cache_dir.write_text("a file where the cache folder should be")
    folder = image_folder(tmp_path / "images")
    t = trainer(tmp_path, "disk")
    assert isinstance(t.x_train, Streamed)
    assert any("could not be written" in line for line in t.logs)
    assert folder.is_dir()


def test_auto_streams_only_past_a_quarter_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_choice, "available_memory", lambda: 1000)
    notes: list[str] = []
    assert choose_cache("auto", 250, notes) == "ram" and not notes
    assert choose_cache("auto", 251, notes) == "disk"
    assert "over a quarter" in notes[0]
    assert choose_cache("none", 1, []) == "none"


def test_cache_none_refused_for_sources_read_whole(tmp_path: Path) -> None:
    with pytest.raises(NetspecError, match="read whole"):
        make_trainer(
            tmp_path,
            """\
            name: x
            input: [64]
            layers: [{dense: {units: 10, activation: softmax}}]
            train: {data: {source: builtin, cache: none}, epochs: 1}
            """,
        )


def test_file_deleted_or_corrupt_mid_run_names_it(tmp_path: Path) -> None:
    for workers in (0, 1):
        t = trainer(tmp_path, "none", workers, out=f"bad{workers}")
        victim = Path(t.data.train.x.reader.files[int(t.data.train.x.index[3])])
        saved = victim.read_bytes()
        victim.write_bytes(b"not an image")
        with pytest.raises(DataError, match="cannot decode image") as e:
            t.fit()
        assert str(victim) in e.value.format()
        victim.unlink()
        with pytest.raises(DataError, match="disappeared") as e:
            t.fit()
        assert str(victim) in e.value.format()
        victim.write_bytes(saved)


def test_killed_worker_is_a_clear_error(tmp_path: Path) -> None:
    t = trainer(tmp_path, "none", workers=1)
    batches = t.x_train.batches([np.arange(3), np.arange(3, 6)])
    next(batches)
    for pid in t.scorer.feeder.loader._iterator._workers:  # type: ignore[union-attr]
        os.kill(pid.pid, signal.SIGKILL)
    with pytest.raises(DataError, match="data worker process stopped") as e:
        list(batches)
        list(t.x_train.batches([np.arange(3)] * 50))
    assert re.search(r"worker process \d+ was killed by signal 9", e.value.format())


def test_lazy_views_decode_nothing_until_indexed(tmp_path: Path) -> None:
    calls: list[int] = []

    class Counting:
        def __len__(self) -> int:
            return 10

        def read(self, i: int) -> np.ndarray:
            calls.append(i)
            return np.full((1, 2, 2), i, dtype=np.uint8)

    x = Lazy(Counting())
    assert x.shape == (10, 1, 2, 2) and x.nbytes == 40
    calls.clear()
    part = x.view(np.array([7, 2, 5]))
    assert calls == []
    np.testing.assert_array_equal(part[1:][:, 0, 0, 0], [2, 5])
    assert calls == [2, 5]


def arrays_spec(path: Path, extra: str, cache: str, workers: int) -> str:
    """A small classifier of (N, 4) arrays, streamed or not."""
    data = f"{{source: arrays, path: {path}, {extra}val: 0.2, cache: {cache}, workers: {workers}}}"
    layers = ["dense: {units: 8, activation: relu}", "dense: {units: 3, activation: softmax}"]
    return tiny_spec(
        layers, input="[4]", data=data, preprocess="{normalize: dataset}", batch_size=7
    )


@pytest.mark.parametrize("form", ["npz", "npy"])
def test_npy_and_npz_stream_memory_mapped(tmp_path: Path, form: str) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)).astype(np.float64), rng.integers(0, 3, 60)
    if form == "npz":
        np.savez(tmp_path / "d.npz", x=x, y=y)
        path, extra = tmp_path / "d.npz", ""
    else:
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", y)
        path, extra = tmp_path / "x.npy", f"y_path: {tmp_path / 'y.npy'}, "
    runs = {}
    for cache, workers in (("ram", 0), ("none", 0), ("none", 1)):
        text = arrays_spec(path, extra, cache, workers)
        t = make_trainer(tmp_path, text, out=f"{cache}{workers}")
        assert isinstance(t.x_train, Streamed) == (cache == "none")
        if cache == "none":
            assert any("memory-mapped" in line for line in t.logs)
            assert isinstance(t.data.train.x.reader.array, np.memmap)
        t.fit()
        runs[cache, workers] = module_state(t)
    assert same_state(runs["none", 0], runs["ram", 0]) and same_state(
        runs["none", 1], runs["ram", 0]
    )


def test_compressed_npz_cannot_stream(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez_compressed(tmp_path / "d.npz", x=rng.normal(size=(30, 4)), y=rng.integers(0, 3, 30))
    text = arrays_spec(tmp_path / "d.npz", "", "none", 0)
    with pytest.raises(DataError, match="cannot be memory-mapped"):
        make_trainer(tmp_path, text)
    auto = make_trainer(tmp_path, text.replace("cache: none", "cache: auto"), out="auto")
    assert isinstance(auto.x_train, torch.Tensor)


def test_chunked_passes_read_ahead_in_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netspec.data.folder import list_image_folder
    from netspec.data.stats import channel_stats

    folder = image_folder(tmp_path / "images", n=30)
    x = Lazy(list_image_folder(folder, (8, 8), "rgb", None, None).reader)
    monkeypatch.setattr(stream, "CHUNK_BYTES", 8 * 3 * 8 * 8 * 4)  # 4 samples a chunk
    monkeypatch.setattr(parallel, "pass_workers", lambda: 1)
    alone = channel_stats(x, 0.5), stream.value_range(x)
    monkeypatch.setattr(parallel, "pass_workers", lambda: 3)
    pooled = channel_stats(x, 0.5), stream.value_range(x)
    for a, b in zip(alone[0], pooled[0]):
        np.testing.assert_array_equal(a, b)
    assert alone[1] == pooled[1]
    (folder / "b" / "010.png").write_bytes(b"broken")
    with pytest.raises(DataError, match="cannot decode image") as e:
        stream.value_range(x)
    assert "010.png" in e.value.format()


def test_streaming_refuses_what_needs_whole_arrays(tmp_path: Path) -> None:
    from netspec.train_data_spec import ArraysData

    folder = image_folder(tmp_path / "images")
    text = SPEC.format(path=folder, cache="none", workers=0, epochs=1)
    with pytest.raises(DataError, match="image completion is read whole"):
        make_trainer(tmp_path, text.replace("cache: none", "cache: none, complete: lower_half"))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "seg.npz", x=rng.random((20, 3, 8, 8)), y=rng.integers(0, 2, (20, 8, 8)))
    arrays = ArraysData(source="arrays", path=str(tmp_path / "seg.npz"), cache="none")
    with pytest.raises(DataError, match="cannot be memory-mapped"):
        load_source(arrays, None)


def test_preprocess_geometry_is_applied_per_streamed_sample(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "images")
    geometry = (
        "preprocess: {rescale: 1/255, normalize: dataset, grayscale: true, center_crop: [6, 6]}"
    )
    runs = {}
    for cache in ("ram", "none"):
        text = SPEC.format(path=folder, cache=cache, workers=1, epochs=1)
        text = text.replace("input: [3, 8, 8]", "input: [1, 6, 6]").replace(
            "preprocess: {rescale: 1/255, normalize: dataset}", geometry
        )
        t = make_trainer(tmp_path, text, out=cache)
        t.fit()
        runs[cache] = t
    assert runs["none"].data.train.x.shape[1:] == (1, 6, 6)
    assert runs["none"].data.preprocessing == runs["ram"].data.preprocessing
    assert same_state(module_state(runs["none"]), module_state(runs["ram"]))


@pytest.mark.slow  # Optuna's imports and SQLite study: 12-20 s alone on 2 busy cores (3 s after others)
def test_tune_trials_reuse_one_disk_cache(tmp_path: Path, cache_dir: Path) -> None:
    pytest.importorskip("optuna")
    from helpers import invoke

    folder = image_folder(tmp_path / "images")
    text = SPEC.format(path=folder, cache="disk", workers=0, epochs=1).replace(
        "seed: 3", "seed: 3\n  optimizer: {name: adam, lr: {search: float, low: 0.001, high: 0.01}}"
    )
    spec = tmp_path / "search.yaml"
    spec.write_text(text)
    out = tmp_path / "study"
    result = invoke("tune", spec, "--trials", 2, "--out", out, "--pruner", "none", "--json")
    assert result.exit_code == 0, result.output
    assert [t["state"] for t in json.loads(result.stdout)["trials"]] == ["complete"] * 2
    # The first trial writes the cache, the second reads it: one cache for the study (a study
    # prints each note once, whichever trial meets it).
    (npy,) = cache_dir.glob("*.npy")
    assert npy.with_suffix(".done").is_file()
    notes = [line for line in result.stderr.splitlines() if "disk cache" in line]
    assert len(notes) == 2, notes
    assert f"written once to the disk cache {npy}" in notes[0]
    assert f"read from the disk cache {npy}" in notes[1]
