"""`netspec predict` and `Predictor` on an `export --preprocess` model: image files decoded to
uint8 pixels, fed unresized, give what predict gives through the plain export of the same run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import fails, invoke
from test_export_preprocess import _image, _new_images, _pixels, _write, runs  # noqa: F401

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

# docs/export.md: a grey level apart (a rounding tie) moves a score of these 8x8 and 12x12
# inputs by ~1e-3 (test_export_preprocess.py).
ATOL = 5e-3


def _more_images(tmp_path: Path) -> list[Path]:
    """Beyond _new_images: two of one size (one call), a palette image, an EXIF-turned one and
    a 16-bit one."""
    from PIL import Image

    rng = np.random.default_rng(11)
    files = _new_images(tmp_path)
    files.append(_write(tmp_path / "wide2.png", _image(rng, 9, 31, 1)))  # the size of wide.png
    palette = Image.fromarray(_image(rng, 19, 14, 0)).quantize(16)
    palette.save(tmp_path / "palette.png")
    turned = Image.fromarray(_image(rng, 12, 30, 1))
    exif = turned.getexif()
    exif[0x0112] = 6  # stored sideways: viewers turn it 90 degrees clockwise
    turned.save(tmp_path / "turned.png", exif=exif)
    deep = (_image(rng, 17, 21, 0, channels=1)[..., 0].astype(np.uint16) * 257) + 100
    Image.fromarray(deep).save(tmp_path / "deep.png")
    return [*files, tmp_path / "palette.png", tmp_path / "turned.png", tmp_path / "deep.png"]


def _json(*args: str | Path) -> list[dict]:
    result = invoke("predict", *args, "--json", "--top-k", "3")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _same(got: list[dict], want: list[dict]) -> None:
    assert [r["input"] for r in got] == [r["input"] for r in want]
    for a, b in zip(got, want):
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        np.testing.assert_allclose(
            [p["score"] for p in a["predictions"]],
            [p["score"] for p in b["predictions"]],
            atol=ATOL,
            err_msg=a["input"],
        )


@pytest.mark.parametrize("name", ["gray", "rgb"])
def test_predict_on_the_preprocess_export_equals_the_plain_export(
    runs: dict[str, Path],  # noqa: F811
    name: str,
    tmp_path: Path,
) -> None:
    files = _more_images(tmp_path)
    want = _json(runs[name] / "plain.onnx", *files)
    _same(_json(runs[name] / "pre.onnx", *files), want)
    _same(_json(runs[name] / "pre.onnx", *files, "--batch", "1"), want)
    if name == "rgb":  # a fixed-batch export: each size's images padded to its batch
        fixed = tmp_path / "b2.onnx"
        result = invoke("export", runs[name], "-o", fixed, "--preprocess", "--batch-dim", "2")
        assert result.exit_code == 0, result.output
        _same(_json(fixed, *files), want)


def test_images_of_one_size_run_together_and_the_order_is_kept(
    runs: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    from netspec.backends.predict.model import OnnxModel
    from netspec.backends.predict.predict import predict

    model = OnnxModel(runs["rgb"] / "pre.onnx", "cpu")
    assert model.info.in_graph and model.dtype == np.uint8
    calls: list[tuple[int, ...]] = []
    run = model.run
    model.run = lambda x: calls.append(x.shape) or run(x)  # type: ignore[method-assign]
    files = _more_images(tmp_path)
    results = list(predict(model, files))
    assert [r["input"] for r in results] == [str(f) for f in files]
    assert (2, 9, 31, 3) in calls and len(calls) == len(files) - 1  # wide.png with wide2.png


def test_predictor_takes_files_and_uint8_pixels(
    runs: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    from netspec import Predictor
    from netspec.errors import NetspecError

    files = _new_images(tmp_path)
    plain = Predictor(runs["rgb"] / "plain.onnx", device="cpu", top_k=3).predict(files)
    inside = Predictor(runs["rgb"] / "pre.onnx", device="cpu", top_k=3)
    _same(inside.predict(files), plain)
    pixels = [_pixels(f) for f in files]
    got = inside.predict(pixels)
    _same([{**r, "input": str(f)} for r, f in zip(got, files)], plain)
    batch = inside.predict(np.stack([pixels[0], pixels[0]]))
    assert [r["input"] for r in batch] == ["inputs[0][0]", "inputs[0][1]"]
    with pytest.raises(NetspecError, match="uint8"):
        inside.predict(np.zeros((3, 12, 12), dtype=np.float32))  # preprocessed values
    kept = inside.predict([np.zeros((4, 4, 2), dtype=np.uint8), files[0]], keep_going=True)
    assert "C = 1, 3 or 4" in kept[0]["error"]["message"] and "predictions" in kept[1]


def test_what_predict_does_not_do_for_such_a_model_is_refused(
    runs: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    model = runs["rgb"] / "pre.onnx"
    image = _new_images(tmp_path)[0]
    fails(invoke("predict", model, image, "--tta"), "--tta", "export --preprocess")
    fails(invoke("predict", model, image, "--overlap", "2"), "--overlap")
    fails(
        invoke("predict", model, image, "--ensemble", runs["rgb"] / "plain.onnx"),
        "export --preprocess",
        "without --preprocess",
    )
    np.save(tmp_path / "values.npy", np.zeros((3, 12, 12), dtype=np.float32))
    (tmp_path / "rows.csv").write_text("1,2,3\n")
    result = invoke("predict", model, tmp_path / "values.npy", tmp_path / "rows.csv", image)
    assert result.exit_code == 2  # the two inputs fail in their place; the image is predicted
    assert "not preprocessed values" in result.output and "not CSV rows" in result.output
    assert image.name in result.output


def test_bench_refuses_a_preprocess_export(runs: dict[str, Path]) -> None:  # noqa: F811
    fails(invoke("bench", runs["rgb"] / "pre.onnx"), "export --preprocess", "without --preprocess")


def test_a_segmentation_model_with_the_preprocessing_inside_is_refused(tmp_path: Path) -> None:
    """Its graph resizes a scene to one tile; predict segments scenes at their own size."""
    from netspec.backends.predict.errors import PredictError
    from netspec.backends.predict.model import ModelInfo, is_scene_model
    from netspec.backends.predict.predict import PredictOptions, _check_in_graph
    from netspec.data.preprocess import Preprocessing

    info = ModelInfo(
        path=tmp_path / "seg.onnx",
        input_name="image",
        input_type="tensor(uint8)",
        batch=None,
        input_shape=(None, None, None),
        output_name="out",
        output_shape=(2, 8, 8),
        raw_shape=(3, 8, 8),
        task="segmentation",
        pre=Preprocessing(input_shape=(3, 8, 8), raw_shape=(3, 8, 8), channel_order="RGB"),
        in_graph=True,
    )
    assert not is_scene_model(info)
    with pytest.raises(PredictError, match="tile by tile") as caught:
        _check_in_graph(info, PredictOptions())
    assert "without --preprocess" in str(caught.value.to_dict())
