"""netspec.data.preprocess: the one copy of the recorded steps, and photos through predict as in training."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from netspec.backends.predict.inputs import read_image  # noqa: E402
from netspec.backends.predict.model import ModelInfo  # noqa: E402
from netspec.data.arraydata import ArrayData  # noqa: E402
from netspec.data.pipeline import _geometry  # noqa: E402
from netspec.data.preprocess import (  # noqa: E402
    GRAY_WEIGHTS,
    CropError,
    Preprocessing,
    apply_values,
    geometry,
)
from netspec.errors import DataError  # noqa: E402


def test_grayscale_rounds_uint8_and_keeps_floats() -> None:
    x = np.array([[[[255]], [[0]], [[0]]], [[[10]], [[20]], [[30]]]], np.uint8)  # (2, 3, 1, 1)
    gray = geometry(x, grayscale=True)
    assert gray.dtype == np.uint8 and gray.shape == (2, 1, 1, 1)
    assert gray.ravel().tolist() == [76, 18]  # rint(0.299 * 255), rint(2.99 + 11.74 + 3.42)
    floats = geometry(x.astype(np.float32), grayscale=True)
    assert floats.dtype == np.float32
    np.testing.assert_allclose(floats[1].ravel(), [np.dot(GRAY_WEIGHTS, [10, 20, 30])], rtol=1e-6)
    one = np.zeros((1, 1, 4, 4), np.uint8)
    assert geometry(one, grayscale=True) is one  # one channel already: nothing to weigh


def test_resize_is_pillows_bilinear_per_channel_and_crop_the_middle() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 3, 13, 11), dtype=np.uint8)
    out = geometry(x, resize=(9, 10))
    assert out.shape == (2, 3, 9, 10) and out.dtype == np.uint8
    plane = Image.fromarray(x[1, 2].astype(np.float32)).resize((10, 9), Image.BILINEAR)
    np.testing.assert_array_equal(out[1, 2], np.clip(np.rint(np.asarray(plane)), 0, 255))
    # One sample (C, H, W) and a batch (N, C, H, W) take the same steps.
    np.testing.assert_array_equal(
        geometry(x[1], resize=(9, 10), center_crop=(5, 6)), out[1, :, 2:7, 2:8]
    )
    with pytest.raises(
        CropError, match=r"center crop \(14, 4\) is larger than the image \(13, 11\)"
    ):
        geometry(x, center_crop=(14, 4))


def test_values_scale_normalize_and_reshape() -> None:
    x = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)  # (N, C, 3)
    pre = Preprocessing((6,), (2, 3), scale=0.5, mean=(1.0, 2.0), std=(2.0, 4.0)).to_dict()
    out = apply_values(x, pre, (6,))
    expected = (x * 0.5 - np.array([1, 2])[None, :, None]) / np.array([2, 4])[None, :, None]
    np.testing.assert_allclose(out, expected.reshape(2, 6))
    per = apply_values(x, {"per_sample": True}, (None, 3))  # a dynamic input: no reshape
    assert per.shape == x.shape
    np.testing.assert_allclose(per.reshape(2, -1).mean(1), 0, atol=1e-6)


def test_training_pipeline_reports_a_crop_too_large() -> None:
    data = ArrayData(
        x=np.zeros((1, 1, 4, 4), np.uint8), y=np.zeros(1, np.int64), classes=None, source="t"
    )
    spec = SimpleNamespace(
        preprocess=SimpleNamespace(grayscale=False, resize=None, center_crop=[5, 3])
    )
    with pytest.raises(DataError, match=r"center_crop 5x3 is larger than the images \(4x4\)"):
        _geometry(data, spec)


@pytest.mark.parametrize(
    "steps",
    [
        {"grayscale": True, "resize": [9, 10], "center_crop": [6, 8], "scale": 1 / 255},
        {"resize": [7, 7], "mean": [0.1, 0.2, 0.3], "std": [2.0, 3.0, 4.0], "scale": 0.5},
        {"center_crop": [12, 10], "per_sample": True},
    ],
)
def test_a_photo_through_predict_equals_the_training_pipeline(tmp_path: Path, steps: dict) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (13, 11, 3), dtype=np.uint8)  # H=13, W=11
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    spec = SimpleNamespace(
        preprocess=SimpleNamespace(
            grayscale=steps.get("grayscale", False),
            resize=steps.get("resize"),
            center_crop=steps.get("center_crop"),
        )
    )
    data = ArrayData(
        x=rgb.transpose(2, 0, 1)[None], y=np.zeros(1, np.int64), classes=None, source="t"
    )
    trained = _geometry(data, spec).x  # what training did to the image
    raw_shape = tuple(int(d) for d in trained.shape[1:])
    record = Preprocessing(
        input_shape=(int(np.prod(raw_shape)),),
        raw_shape=raw_shape,
        channel_order={1: "L", 3: "RGB"}[raw_shape[0]],
        **{k: tuple(v) if isinstance(v, list) else v for k, v in steps.items()},
    )
    info = ModelInfo(
        path=tmp_path / "m.onnx",
        input_name="input",
        input_type="tensor(float)",
        batch=None,
        input_shape=record.input_shape,
        output_name="out",
        output_shape=(1,),
        raw_shape=raw_shape,
        pre=record,
    )
    raw = read_image(tmp_path / "photo.png", info)
    np.testing.assert_array_equal(raw, trained[0])
    np.testing.assert_array_equal(
        apply_values(raw[None], info.pre, info.input_shape),
        apply_values(trained, record, record.input_shape),
    )


def test_described_steps_match_what_the_code_does() -> None:
    """The sidecar's words for the steps (netspec.data.preprocess.describe) hold numerically."""
    from PIL import Image

    from netspec.data.preprocess import (
        PER_SAMPLE_DDOF,
        PER_SAMPLE_EPS,
        apply_values,
        describe,
        geometry,
    )

    x = np.random.default_rng(0).integers(0, 256, (2, 1, 12, 12)).astype(np.uint8)
    pre = {"input_shape": [1, 6, 6], "raw_shape": [1, 6, 6], "resize": [6, 6], "per_sample": True}
    steps = {s["step"]: s for s in describe(pre)}
    assert list(steps) == [
        "decode", "resize", "to_float32", "standardize_per_sample", "reshape"
    ]  # fmt: skip
    assert "Pillow" in steps["resize"]["method"] and "antialiased" in steps["resize"]["method"]
    # resize: Pillow bilinear of a float (mode F) image, rounded back to uint8
    small = geometry(x, resize=(6, 6))
    pil = Image.fromarray(x[0, 0].astype(np.float32)).resize((6, 6), Image.BILINEAR)
    np.testing.assert_array_equal(small[0, 0], np.clip(np.rint(np.asarray(pil)), 0, 255))
    # per-sample: (x - mean) / (std(ddof=1) + 1e-6) over the whole sample
    assert (steps["standardize_per_sample"]["ddof"], PER_SAMPLE_DDOF) == (1, 1)
    assert steps["standardize_per_sample"]["eps"] == PER_SAMPLE_EPS == 1e-6
    v = small.astype(np.float32).reshape(2, -1)
    by_hand = (v - v.mean(1, keepdims=True)) / (v.std(1, ddof=1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(
        apply_values(small, pre, (1, 6, 6)).reshape(2, -1), by_hand, rtol=1e-6
    )


def test_the_decode_step_says_what_predict_decodes_to(tmp_path: Path) -> None:
    """A grayscale model decodes to RGB, then makes the gray with its own weights (not Pillow's
    convert('L')); a gray model converts with Pillow's luma. The words say so."""
    from netspec.data.preprocess import GRAY_WEIGHTS, describe

    rgb = np.random.default_rng(1).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    for grayscale, mode in ((True, "RGB"), (False, "L")):
        record = Preprocessing(
            input_shape=(1, 6, 6), raw_shape=(1, 6, 6), channel_order="L", grayscale=grayscale
        )
        decode = describe(record)[0]
        assert f"convert('{mode}')" in decode["definition"]
        assert ("grayscale step" in decode["definition"]) == grayscale
        info = ModelInfo(
            path=tmp_path / "m.onnx",
            input_name="input",
            input_type="tensor(float)",
            batch=None,
            input_shape=(1, 6, 6),
            output_name="out",
            output_shape=(1,),
            raw_shape=(1, 6, 6),
            pre=record,
        )
        got = read_image(tmp_path / "p.png", info)[0]
        if grayscale:
            gray = rgb.astype(np.float32) @ np.array(GRAY_WEIGHTS, np.float32)
            np.testing.assert_array_equal(got, np.clip(np.rint(gray), 0, 255))
        else:
            luma = (rgb.astype(np.int64) @ np.array([19595, 38470, 7471]) + 32768) >> 16
            np.testing.assert_array_equal(got, luma)


def test_an_image_of_another_size_has_its_step(tmp_path: Path) -> None:
    """`resize_to_input`: what predict does to an image that is not the input's size, when the
    record has no geometry step that fixes the size (and never for tiled segmentation)."""
    from netspec.data.preprocess import describe

    def names(tiled: bool = False, **steps: object) -> list[str]:
        record = {"input_shape": [3, 5, 7], "raw_shape": [3, 5, 7], "channel_order": "RGB"}
        return [s["step"] for s in describe({**record, **steps}, tiled=tiled)]

    assert names()[:2] == ["decode", "resize_to_input"]
    assert "resize_to_input" not in names(resize=[5, 7])
    assert "resize_to_input" not in names(tiled=True)
    assert "resize_to_input" not in [
        s["step"] for s in describe({"input_shape": [4], "raw_shape": [4]})
    ]
    step = describe({"input_shape": [3, 5, 7], "raw_shape": [3, 5, 7], "channel_order": "RGB"})[1]
    assert step["size"] == [5, 7] and "Pillow" in step["method"]
    # the words hold: predict's image of another size is the float resize, rounded
    rgb = np.random.default_rng(2).integers(0, 256, (9, 4, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    record = Preprocessing(input_shape=(3, 5, 7), raw_shape=(3, 5, 7), channel_order="RGB")
    info = ModelInfo(
        path=tmp_path / "m.onnx",
        input_name="input",
        input_type="tensor(float)",
        batch=None,
        input_shape=(3, 5, 7),
        output_name="out",
        output_shape=(1,),
        raw_shape=(3, 5, 7),
        pre=record,
    )
    said: list[str] = []
    got = read_image(tmp_path / "p.png", info, said.append)
    for c in range(3):
        plane = Image.fromarray(rgb[..., c].astype(np.float32)).resize((7, 5), Image.BILINEAR)
        np.testing.assert_array_equal(got[c], np.clip(np.rint(np.asarray(plane)), 0, 255))
    assert said and "resized" in said[0]
