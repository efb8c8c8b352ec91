"""`netspec predict` on segmentation scenes of any size: tiles, stitching, TTA, TIFF and errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
Image = pytest.importorskip("PIL.Image")

from helpers import fails, invoke, preprocessing_record  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from netspec.backends.predict.errors import PredictError  # noqa: E402
from netspec.backends.predict.model import OnnxModel  # noqa: E402
from netspec.backends.predict.predict import PredictOptions, predict  # noqa: E402
from netspec.data.preprocess import apply_values  # noqa: E402
from netspec.data.scenes import (  # noqa: E402
    SceneSegmenter,
    blend_window,
    probabilities,
    segment_scene,
    transform,
    tta_variants,
    untransform,
)
from netspec.data.tiles import grid  # noqa: E402

NAMES = ["background", "road", "car", "tree", "water", "roof"]


def record(bands: int, size: Sequence[int | None], **steps) -> dict:
    """netspec.preprocessing as the trainer writes it (raw tiles (C, h, w))."""
    return preprocessing_record((bands, *size), **steps)


class Conv:
    """A same-padded conv from C bands to K class maps, as ONNX and in numpy."""

    def __init__(self, bands: int, classes: int, kernel: int = 1, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.w = rng.standard_normal((classes, bands, kernel, kernel)).astype(np.float32)
        self.b = (0.1 * rng.standard_normal(classes)).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits (K, H, W) of preprocessed values (C, H, W), zero padding as ONNX's Conv."""
        k = self.w.shape[-1]
        p = k // 2
        h, w = x.shape[1:]
        xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p)))
        out = np.zeros((len(self.b), h, w)) + self.b[:, None, None]
        for i in range(k):
            for j in range(k):
                out += np.einsum("kc,chw->khw", self.w[:, :, i, j], xp[:, i : i + h, j : j + w])
        return out

    def save(
        self,
        path: Path,
        size: Sequence[int | None] = (32, 32),
        *,
        softmax: bool = False,
        sigmoid: bool = False,
        batch: int | str = "N",
        pre: dict | None = None,
        names: Sequence[str] | None = None,
    ) -> Path:
        k, c, kernel, _ = self.w.shape
        p = kernel // 2
        spatial = [d if d is not None else name for d, name in zip(size, ("H", "W"))]
        nodes = [helper.make_node("Conv", ["input", "w", "b"], ["z"], pads=[p, p, p, p])]
        if softmax:
            nodes.append(helper.make_node("Softmax", ["z"], ["output"], axis=1))
        elif sigmoid:
            nodes.append(helper.make_node("Sigmoid", ["z"], ["output"]))
        else:
            nodes.append(helper.make_node("Identity", ["z"], ["output"]))
        graph = helper.make_graph(
            nodes,
            "seg",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, c, *spatial])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, k, *spatial])],
            initializer=[
                numpy_helper.from_array(self.w, "w"),
                numpy_helper.from_array(self.b, "b"),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        head = "softmax" if softmax else "sigmoid" if sigmoid else "none"
        props = {
            "netspec.task": "segmentation",
            "netspec.classes": json.dumps(list(names or NAMES[: max(k, 2)])),
            "netspec.head": head,
            "netspec.preprocessing": json.dumps(pre or record(c, size)),
            "netspec.input_shape": json.dumps([c, *size]),
            "netspec.output_shape": json.dumps([k, *size]),
        }
        helper.set_model_props(model, props)
        onnx.save(model, path)
        return path


def mask_file(result: dict, size: tuple[int, int]) -> np.ndarray:
    """The mask PNG of a result: a palette image of the scene's size; its class ids."""
    mask = Image.open(result["mask"])
    assert mask.mode == "P"
    assert mask.size == (size[1], size[0])  # width x height
    assert mask.getpalette()[:6] == [31, 119, 180, 255, 127, 14]  # netspec.palette's first two
    assert result["size"] == list(size)
    return np.asarray(mask)


def run_json(*args: str | Path) -> list[dict]:
    result = invoke("predict", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --- tiled prediction equals the whole scene -----------------------------------------------------


@pytest.mark.parametrize(("softmax", "overlap"), [(True, None), (False, 0), (True, 13)])
def test_pointwise_tiles_equal_the_whole_scene(
    tmp_path: Path, softmax: bool, overlap: int | None
) -> None:
    conv = Conv(bands=3, classes=4, seed=1)
    pre = record(3, (32, 32), scale=1 / 255, mean=[0.5, 0.4, 0.3], std=[0.25, 0.2, 0.3])
    model = conv.save(tmp_path / "seg.onnx", softmax=softmax, pre=pre)
    rng = np.random.default_rng(2)
    scene = rng.integers(0, 256, (3, 100, 77)).astype(np.float32)
    np.save(tmp_path / "scene.npy", scene)
    extra = [] if overlap is None else ["--overlap", str(overlap)]
    (result,) = run_json(model, tmp_path / "scene.npy", "--out", tmp_path / "masks", *extra)
    expected = conv(apply_values(scene[None], pre, (3, 100, 77))[0]).argmax(0)
    assert len(np.unique(expected)) >= 3
    np.testing.assert_array_equal(mask_file(result, (100, 77)), expected)
    used = 8 if overlap is None else overlap  # default: a quarter of the tile side
    assert result["tiles"] == len(grid((100, 77), (32, 32), used)) > 6
    assert result["tta"] == 1
    ids, counts = np.unique(expected, return_counts=True)
    assert result["pixels"] == {NAMES[i]: int(c) for i, c in zip(ids, counts)}
    assert result["mask"] == str(tmp_path / "masks" / "scene_mask.png")


def test_a_3x3_conv_differs_only_on_tile_seams(tmp_path: Path) -> None:
    conv = Conv(bands=2, classes=3, kernel=3, seed=3)
    model = conv.save(tmp_path / "seg3.onnx", pre=record(2, (32, 32)))
    scene = np.random.default_rng(4).standard_normal((2, 100, 77)).astype(np.float32)
    predictor = OnnxModel(model, "cpu")
    seg = predictor.segmenter(overlap=6).segment(scene)
    z = conv(scene)
    p = np.exp(z - z.max(0))
    p /= p.sum(0)
    # A tile's edge pixels see zero padding where the scene goes on; all others are exact.
    starts = grid((100, 77), (32, 32), 6)
    rows = {r for t, _ in starts for r in (t, t + 31)} - {0, 99}
    cols = {c for _, s in starts for c in (s, s + 31)} - {0, 76}
    inner = np.ones((100, 77), bool)
    inner[sorted(rows)] = False
    inner[:, sorted(cols)] = False
    np.testing.assert_allclose(seg.probs[:, inner], p[:, inner], atol=1e-5)
    assert not np.allclose(seg.probs, p, atol=1e-5)  # the seams do differ a little...
    assert (seg.mask == p.argmax(0)).mean() > 0.99  # ...but hardly ever change the class


@pytest.mark.parametrize("shape", [(20, 15), (20, 77), (32, 32), (33, 40)])
def test_scenes_smaller_than_a_tile_are_padded_and_cropped(tmp_path: Path, shape) -> None:
    conv = Conv(bands=1, classes=3, seed=5)
    model = conv.save(tmp_path / "seg.onnx", softmax=True, pre=record(1, (32, 32), scale=0.01))
    scene = np.random.default_rng(6).integers(0, 256, shape).astype(np.uint8)
    Image.fromarray(scene).save(tmp_path / "small.png")  # an 8-bit image: as any scene
    (result,) = run_json(model, tmp_path / "small.png", "--out", tmp_path / "masks")
    expected = conv(scene[None] * np.float32(0.01)).argmax(0)
    np.testing.assert_array_equal(mask_file(result, shape), expected)
    assert result["tiles"] == len(grid((max(32, shape[0]), max(32, shape[1])), (32, 32), 8))


def test_a_mask_folder_holding_a_users_file_is_refused(tmp_path: Path) -> None:
    conv = Conv(bands=1, classes=3, seed=5)
    model = conv.save(tmp_path / "seg.onnx", softmax=True, pre=record(1, (32, 32), scale=0.01))
    Image.fromarray(np.zeros((20, 15), np.uint8)).save(tmp_path / "small.png")
    out = tmp_path / "masks"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    result = invoke("predict", model, tmp_path / "small.png", "--out", out)
    assert result.exit_code == 2
    assert "will not write into" in result.output and "notes.txt" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    # A folder of its own masks is fine: predicting again replaces them.
    (out / "notes.txt").unlink()
    run_json(model, tmp_path / "small.png", "--out", out)
    (result,) = run_json(model, tmp_path / "small.png", "--out", out)
    assert sorted(p.name for p in out.iterdir()) == ["small_mask.png"]


def test_a_users_file_named_like_a_mask_is_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv = Conv(bands=1, classes=3, seed=5)
    model = conv.save(tmp_path / "seg.onnx", softmax=True, pre=record(1, (32, 32), scale=0.01))
    Image.fromarray(np.zeros((20, 15), np.uint8)).save(tmp_path / "small.png")
    mine = tmp_path / "small_mask.png"  # the user's own mask, in the default folder (here)
    Image.fromarray(np.full((20, 15), 7, np.uint8)).save(mine)
    before = mine.read_bytes()
    monkeypatch.chdir(tmp_path)
    fails(invoke("predict", model, "small.png"), "will not replace", "small_mask.png")
    assert mine.read_bytes() == before
    mine.unlink()
    run_json(model, "small.png")
    (result,) = run_json(model, "small.png")  # its own mask: replaced
    assert result["mask"] == "small_mask.png" and mine.read_bytes() != before


def test_dynamic_models_run_the_scene_whole(tmp_path: Path) -> None:
    conv = Conv(bands=3, classes=4, kernel=3, seed=7)
    # Trained on 32x32 tiles (the record), exported with a dynamic height and width.
    model = conv.save(tmp_path / "dyn.onnx", size=(None, None), pre=record(3, (32, 32)))
    scene = np.random.default_rng(8).standard_normal((2, 3, 45, 61)).astype(np.float32)
    np.save(tmp_path / "scenes.npy", scene)  # (N, C, H, W): two scenes
    doc = run_json(model, tmp_path / "scenes.npy", "--out", tmp_path / "plain")
    assert [r["input"] for r in doc] == [f"{tmp_path / 'scenes.npy'}[{i}]" for i in range(2)]
    for r, x in zip(doc, scene):
        assert (r["tiles"], r["tta"]) == (1, 1)
        np.testing.assert_array_equal(mask_file(r, (45, 61)), conv(x).argmax(0))
    # TTA of a model that is not symmetric: the mean of its views, each turned back.
    doc = run_json(model, tmp_path / "scenes.npy", "--out", tmp_path / "tta", "--tta")
    for r, x in zip(doc, scene):
        assert (r["tiles"], r["tta"]) == (1, 4)  # the whole 45x61 scene: a rectangle
        views = [
            untransform(probabilities(conv(transform(x, v))[None])[0], v)
            for v in tta_variants((45, 61))
        ]
        expected = np.mean(views, axis=0).argmax(0)
        assert (expected != conv(x).argmax(0)).any()
        np.testing.assert_array_equal(mask_file(r, (45, 61)), expected)


def test_fixed_batch_exports_and_single_unit_maps(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    scene = rng.standard_normal((2, 70, 50)).astype(np.float32)
    np.save(tmp_path / "scene.npy", scene)
    conv = Conv(bands=2, classes=1, seed=10)
    z = conv(scene)[0]
    for name, kw in [("logit", {}), ("sigmoid", {"sigmoid": True}), ("b1", {"batch": 1})]:
        model = conv.save(tmp_path / f"{name}.onnx", names=["ground", "water"], **kw)
        (r,) = run_json(model, tmp_path / "scene.npy", "--out", tmp_path / name)
        mask = mask_file(r, (70, 50))
        np.testing.assert_array_equal(mask, (z >= 0).astype(np.uint8))
        assert set(r["pixels"]) == {"ground", "water"}


# --- test-time augmentation ----------------------------------------------------------------------


def test_the_symmetries_invert() -> None:
    x = np.random.default_rng(11).standard_normal((2, 3, 5, 5))
    square = tta_variants((5, 5))
    assert len(square) == 8 and tta_variants((5, 5), tta=False) == ((0, False),)
    seen = [transform(x, v) for v in square]
    assert all(not np.array_equal(a, b) for i, a in enumerate(seen) for b in seen[i + 1 :])
    assert any(np.array_equal(s, x.swapaxes(-1, -2)) for s in seen)  # the transpose is one
    for v, y in zip(square, seen):
        np.testing.assert_array_equal(untransform(y, v), x)
    rect = np.random.default_rng(12).standard_normal((1, 1, 4, 6))
    for v in tta_variants((4, 6)):
        assert transform(rect, v).shape == rect.shape
        np.testing.assert_array_equal(untransform(transform(rect, v), v), rect)
    assert len(tta_variants((4, 6))) == 4


class Recorder:
    """A `run` callable that keeps every batch it is given."""

    def __init__(self, run) -> None:
        self.run, self.batches = run, []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(x.copy())
        return self.run(x)


def test_tta_runs_every_symmetry_and_keeps_a_pointwise_model(tmp_path: Path) -> None:
    conv = Conv(bands=3, classes=5, seed=13)
    model = conv.save(tmp_path / "seg.onnx", pre=record(3, (32, 32), scale=0.5))
    predictor = OnnxModel(model, "cpu")
    scene = np.random.default_rng(14).standard_normal((3, 80, 60)).astype(np.float32)
    prepare = predictor.segmenter().prepare
    plain = Recorder(predictor.run_prepared)
    tta = Recorder(predictor.run_prepared)
    kw = {"overlap": 8, "prepare": prepare, "batch_size": 12}
    p0 = segment_scene(plain, scene, (32, 32), **kw)
    p8 = segment_scene(tta, scene, (32, 32), tta=True, **kw)
    np.testing.assert_allclose(p8, p0, atol=1e-5)
    n = len(grid((80, 60), (32, 32), 8))
    assert sum(map(len, plain.batches)) == n and max(map(len, plain.batches)) <= 12
    assert sum(map(len, tta.batches)) == 8 * n
    assert max(map(len, tta.batches)) <= 12
    # The first tile's 8 inputs are its 8 symmetries (tiles are batched variant-major).
    inputs = np.concatenate(tta.batches)
    first = prepare(scene[None, :, :32, :32])
    per_call = 12 // 8  # one tile per call: its variants fill it
    assert per_call == 1
    for i, v in enumerate(tta_variants((32, 32))):
        np.testing.assert_array_equal(inputs[i], transform(first, v)[0])


def test_tta_through_the_cli_square_and_rectangular_tiles(tmp_path: Path) -> None:
    conv = Conv(bands=1, classes=3, seed=15)
    scene = np.random.default_rng(16).standard_normal((1, 50, 70)).astype(np.float32)
    np.save(tmp_path / "scene.npy", scene)
    expected = conv(scene[0:1]).argmax(0)
    for size, variants in [((32, 32), 8), ((32, 24), 4)]:
        model = conv.save(tmp_path / f"m{size[1]}.onnx", size=size, pre=record(1, size))
        out = tmp_path / f"out{size[1]}"
        (r,) = run_json(model, tmp_path / "scene.npy", "--tta", "--out", out)
        assert r["tta"] == variants
        np.testing.assert_array_equal(mask_file(r, (50, 70)), expected)


def test_tta_averages_a_model_that_is_not_symmetric() -> None:
    # A "model" marking the left half of each tile: TTA averages its mirrored views.
    def left_half(x: np.ndarray) -> np.ndarray:
        p = np.zeros((len(x), 2, *x.shape[2:]), np.float32)
        p[:, 0, :, : x.shape[3] // 2] = 1
        p[:, 1] = 1 - p[:, 0]
        return p

    scene = np.zeros((1, 8, 8), np.float32)
    p1 = segment_scene(left_half, scene, (8, 8), head="softmax")
    p8 = segment_scene(left_half, scene, (8, 8), tta=True, head="softmax")
    assert p1[0, :, :4].min() == 1 and p1[0, :, 4:].max() == 0
    np.testing.assert_allclose(p8, 0.5)  # each pixel is on the left in half of the variants


# --- stitching details ----------------------------------------------------------------------------


def test_blend_window_and_probabilities() -> None:
    w = blend_window((10, 12), 3)
    assert w.shape == (10, 12) and w.min() > 0 and w[3:7, 3:9].min() == 1
    np.testing.assert_allclose(w[5, :4], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(w[5, 9:] + w[5, :3], 1.0)  # overlapping neighbours' ramps sum to 1
    assert blend_window((4, 4), 0).min() == 1
    z = np.array([[[[0.0]], [[np.log(3.0)]]]])
    np.testing.assert_allclose(probabilities(z)[0, :, 0, 0], [0.25, 0.75])
    np.testing.assert_array_equal(probabilities(z, "softmax"), z.astype(np.float32))
    np.testing.assert_allclose(probabilities(np.array([[[[-1e4, 0, 1e4]]]]))[0, 0, 0], [0, 0.5, 1])


def test_each_tile_is_standardized_on_its_own(tmp_path: Path) -> None:
    conv = Conv(bands=2, classes=3, seed=17)
    pre = record(2, (16, 16), per_sample=True)
    model = conv.save(tmp_path / "ps.onnx", size=(16, 16), pre=pre)
    predictor = OnnxModel(model, "cpu")
    recorder = Recorder(predictor.run_prepared)
    seg = predictor.segmenter(overlap=4)
    segmenter = SceneSegmenter(recorder, seg.tile, 4, prepare=seg.prepare, head=seg.head)
    rng = np.random.default_rng(18)
    scene = (rng.standard_normal((2, 40, 40)) * 50 + np.arange(40)[:, None] * 10).astype(np.float32)
    result = segmenter.segment(scene)
    tiles = np.concatenate(recorder.batches)
    assert len(tiles) == result.tiles == 9
    flat = tiles.reshape(len(tiles), -1)
    np.testing.assert_allclose(flat.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(flat.std(1, ddof=1), 1, atol=1e-3)


def test_python_api_errors() -> None:
    def run(x):
        return x

    with pytest.raises(ValueError, match="overlap 8"):
        SceneSegmenter(run, (8, 8), overlap=8)
    with pytest.raises(ValueError, match="batch size"):
        SceneSegmenter(run, (8, 8), batch_size=0)
    with pytest.raises(ValueError, match="only when the output has the input's size"):
        segment_scene(lambda x: x[:, :, ::2, ::2], np.zeros((1, 20, 20), np.float32), (8, 8))


# --- TIFF scenes ----------------------------------------------------------------------------------


def test_uint16_multiband_tiff_scenes(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    conv = Conv(bands=4, classes=3, seed=19)
    pre = record(4, (32, 32), scale=1 / 65535, mean=[0.5] * 4, std=[0.2, 0.3, 0.25, 0.3])
    model = conv.save(tmp_path / "ms.onnx", softmax=True, pre=pre)
    scene = np.random.default_rng(20).integers(0, 65536, (4, 90, 64)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "planar.tif", scene, photometric="minisblack")  # (bands, H, W)
    tifffile.imwrite(tmp_path / "interleaved.tiff", scene.transpose(1, 2, 0))  # (H, W, bands)
    doc = run_json(
        model, tmp_path / "planar.tif", tmp_path / "interleaved.tiff", "--out", tmp_path / "masks"
    )
    expected = conv(apply_values(scene[None].astype(np.float32), pre, (4, 90, 64))[0]).argmax(0)
    assert len(np.unique(expected)) == 3
    for r in doc:
        np.testing.assert_array_equal(mask_file(r, (90, 64)), expected)

    one = Conv(bands=1, classes=2, seed=21)
    gray = one.save(tmp_path / "one.onnx", pre=record(1, (32, 32), scale=1e-4))
    tifffile.imwrite(tmp_path / "band.tif", scene[2])  # (H, W): one band of 16 bits
    (r,) = run_json(gray, tmp_path / "band.tif", "--out", tmp_path / "masks")
    expected = one(scene[2:3].astype(np.float32) * np.float32(1e-4)).argmax(0)
    np.testing.assert_array_equal(mask_file(r, (90, 64)), expected)


def test_8bit_tiffs_take_the_model_channel_order(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    conv = Conv(bands=1, classes=3, seed=22)
    model = conv.save(tmp_path / "l.onnx", pre=record(1, (32, 32), scale=1 / 255))
    rgb = np.random.default_rng(23).integers(0, 256, (40, 36, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    doc = run_json(model, tmp_path / "rgb.tif", tmp_path / "rgb.png", "--out", tmp_path / "masks")
    luma = np.asarray(Image.fromarray(rgb).convert("L"), np.float32)[None] / np.float32(255)
    for r in doc:
        np.testing.assert_array_equal(mask_file(r, (40, 36)), conv(luma).argmax(0))


# --- errors ---------------------------------------------------------------------------------------


def classifier(path: Path) -> Path:
    w = np.ones((4, 3), np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])],
        "cls",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"netspec.task": "multiclass"})
    onnx.save(model, path)
    return path


def test_errors(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    conv = Conv(bands=4, classes=3, seed=24)
    model = conv.save(tmp_path / "ms.onnx")
    rng = np.random.default_rng(25)
    np.save(tmp_path / "three.npy", rng.standard_normal((3, 40, 40)).astype(np.float32))
    np.save(tmp_path / "flat.npy", rng.standard_normal((40, 40)).astype(np.float32))
    tifffile.imwrite(tmp_path / "two.tif", rng.integers(0, 9, (2, 40, 40)).astype(np.uint16))
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    (tmp_path / "rows.csv").write_text("1,2,3,4\n")
    predict_ = ("predict", model)
    fails(invoke(*predict_, tmp_path / "three.npy"), "a scene of 3 bands", "the model takes 4")
    fails(invoke(*predict_, tmp_path / "two.tif"), "a scene of 2 bands", "takes 4")
    fails(invoke(*predict_, tmp_path / "p.png"), "4-band scenes, not 8-bit images", ".tif")
    fails(invoke(*predict_, tmp_path / "flat.npy"), "expected a scene (C, H, W)")
    fails(invoke(*predict_, tmp_path / "bad.tif"), "cannot read the TIFF")
    fails(invoke(*predict_, tmp_path / "rows.csv"), "not CSV rows")
    scene = tmp_path / "three.npy"
    fails(invoke(*predict_, scene, "--overlap", "-1"), "--overlap -1: expected 0 or more")
    fails(invoke(*predict_, scene, "--overlap", "32"), "--overlap 32", "32x32", "less than")
    usage = invoke(*predict_, scene, "--overlap", "x")  # Typer's own usage error
    assert usage.exit_code == 2 and "--overlap" in usage.output
    cls = classifier(tmp_path / "cls.onnx")
    np.save(tmp_path / "row.npy", np.ones(4, np.float32))
    fails(invoke("predict", cls, tmp_path / "row.npy", "--tta"), "--tta", "segmentation")
    fails(invoke("predict", cls, tmp_path / "row.npy", "--overlap", "2"), "--overlap")
    with pytest.raises(PredictError, match="--overlap 40"):
        list(predict(model, [scene], PredictOptions(overlap=40)))


def test_masks_of_several_scenes_do_not_collide(tmp_path: Path) -> None:
    conv = Conv(bands=3, classes=4, seed=26)
    model = conv.save(tmp_path / "seg.onnx")
    rng = np.random.default_rng(27)
    inputs = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        rgb = rng.integers(0, 256, (45, 50, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / folder / "street.png")
        inputs.append(tmp_path / folder / "street.png")
    out = tmp_path / "masks"
    doc = run_json(model, *inputs, "--out", out, "--batch", "3")
    assert [r["mask"] for r in doc] == [
        str(out / "street_mask.png"),
        str(out / "street_1_mask.png"),
    ]
    text = invoke("predict", model, inputs[0], "--out", out)
    assert text.output.splitlines() == [str(inputs[0]), str(out / "street_mask.png")]
