"""`netspec export --preprocess`: the graph takes uint8 images of any size and gives what
`netspec predict` gives on the same image files through the plain export."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import fails, invoke

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

# Two tiny image runs: every geometry step (a folder fit with its aspect crop, grayscale,
# resize, center crop, per-sample standardization), and an RGB one with none, whose images of
# other sizes `netspec predict` resizes to the input (dataset normalization). No pictures: drawing
# them takes longer than the training, and no test here looks at them.
GRAY_SPEC = """\
name: tiny_gray
input: [1, 8, 8]
layers:
  - conv2d: {filters: 4, kernel: 3, activation: relu}
  - flatten
  - dense: {units: 1, activation: sigmoid}
train:
  data: {source: folder, path: photos, size: [14, 12], crop: center, val: 0.0, test: 0.25}
  preprocess: {grayscale: true, resize: [10, 10], center_crop: [8, 8], normalize: per_sample}
  epochs: 1
  batch_size: 4
  loss: binary_cross_entropy
  metrics: [accuracy]
  log: {pictures: false}
"""
RGB_SPEC = """\
name: tiny_rgb
input: [3, 12, 12]
layers:
  - conv2d: {filters: 4, kernel: 3, activation: relu}
  - global_avgpool2d
  - dense: {units: 3, activation: softmax}
train:
  data: {source: folder, path: squares, val: 0.0, test: 0.25}
  preprocess: {rescale: 1/255, normalize: dataset}
  epochs: 1
  batch_size: 4
  metrics: [accuracy]
  log: {pictures: false}
"""


def _image(rng: np.random.Generator, h: int, w: int, tint: int, channels: int = 3) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    base = 110 + 90 * np.sin(yy / 3.0 + tint) * np.cos(xx / 4.0)
    img = base[..., None] + rng.normal(0, 20, (h, w, channels)) + 30 * tint
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _write(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two runs trained for one epoch, each exported plain and with --preprocess."""
    root = tmp_path_factory.mktemp("preprocess")
    rng = np.random.default_rng(0)
    for k, name in enumerate(("a", "b")):
        for i in range(8):  # photos of varied sizes and aspect ratios
            _write(root / "photos" / name / f"{i}.png", _image(rng, 15 + 3 * i, 30 - 2 * i, k))
    for k, name in enumerate(("x", "y", "z")):
        for i in range(4):
            _write(root / "squares" / name / f"{i}.png", _image(rng, 12, 12, k))
    out: dict[str, Path] = {}
    for name, spec in (("gray", GRAY_SPEC), ("rgb", RGB_SPEC)):
        (root / f"{name}.yaml").write_text(spec)
        run = root / f"run_{name}"
        result = invoke("train", root / f"{name}.yaml", "--out", run)
        assert result.exit_code == 0, result.output
        for flags, file in (((), "plain.onnx"), (("--preprocess",), "pre.onnx")):
            result = invoke("export", run, "-o", run / file, *flags)
            assert result.exit_code == 0, result.output
        out[name] = run
    return out


def _new_images(tmp_path: Path) -> list[Path]:
    """Images of sizes no run trained on: RGB, RGBA and gray PNGs."""
    rng = np.random.default_rng(7)
    return [
        _write(tmp_path / "wide.png", _image(rng, 9, 31, 0)),
        _write(tmp_path / "tall.png", _image(rng, 40, 17, 1)),
        _write(tmp_path / "alpha.png", _image(rng, 23, 23, 1, channels=4)),
        _write(tmp_path / "gray.png", _image(rng, 13, 26, 0, channels=1)),
    ]


def _pixels(path: Path) -> np.ndarray:
    """An image file as the decoded uint8 (H, W, C) any decoder gives."""
    from PIL import Image

    with Image.open(path) as im:
        x = np.asarray(im)
    return x[..., None] if x.ndim == 2 else x


@pytest.mark.parametrize("name", ["gray", "rgb"])
def test_the_graph_predicts_what_netspec_predict_does(
    runs: dict[str, Path], name: str, tmp_path: Path
) -> None:
    import onnxruntime as ort

    run = runs[name]
    files = _new_images(tmp_path)
    result = invoke("predict", run / "plain.onnx", *files, "--json", "--top-k", "3")
    assert result.exit_code == 0, result.output
    want = json.loads(result.stdout)
    session = ort.InferenceSession(str(run / "pre.onnx"), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(uint8)"]
    side = json.loads((run / "pre.onnx.json").read_text())
    for path, expected in zip(files, want):
        out = session.run(None, {"image": _pixels(path)[None]})[0][0]
        if len(out) == 1:  # binary: the score of the predicted class
            score = max(out[0], 1 - out[0])
            label = side["classes"][int(out[0] >= 0.5)]
        else:
            label, score = side["classes"][int(out.argmax())], out.max()
        assert label == expected["predictions"][0]["label"], path.name
        # A pixel may differ by 1 grey level (a rounding tie, preprocess_check.py): on 8x8
        # inputs that moves a score by ~1e-3; on real photos by 2e-4 at most (docs/export.md).
        assert abs(score - expected["predictions"][0]["score"]) < 5e-3, path.name


def test_a_batch_of_same_size_images_is_one_call(runs: dict[str, Path], tmp_path: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(runs["gray"] / "pre.onnx"), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(3)
    batch = np.stack([_image(rng, 21, 33, k % 2) for k in range(3)])
    together = session.run(None, {"image": batch})[0]
    alone = np.concatenate([session.run(None, {"image": b[None]})[0] for b in batch])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_sidecar_and_card_say_the_preprocessing_is_inside(runs: dict[str, Path]) -> None:
    import onnx

    run = runs["gray"]
    plain = json.loads((run / "plain.onnx.json").read_text())
    inside = json.loads((run / "pre.onnx.json").read_text())
    assert plain["preprocessing_in_graph"] is False and "raw_input" not in plain
    assert inside["preprocessing_in_graph"] is True and inside["opset"] >= 18
    assert inside["inputs"] == [
        {"name": "image", "dtype": "uint8", "shape": ["batch", "height", "width", "channels"]}
    ]
    assert inside["raw_input"]["layout"] == "NHWC" and inside["raw_input"]["channels"] == [1, 3, 4]
    assert inside["preprocessing"] == plain["preprocessing"]  # the record, for reference
    pytest.importorskip("jsonschema")
    from test_sidecar_schema import assert_valid

    assert_valid(plain)
    assert_valid(inside)
    props = {p.key: p.value for p in onnx.load(run / "pre.onnx").metadata_props}
    assert props["netspec.preprocessing_in_graph"] == "true"
    shown = invoke("inspect", run / "pre.onnx")
    assert shown.exit_code == 0 and "uint8" in shown.output


def test_the_in_graph_steps_match_netspec_within_one_grey_level(runs: dict[str, Path]) -> None:
    from netspec.backends.export.preprocess_check import check_against_numpy
    from netspec.runs import read_run

    for run in runs.values():
        pre = read_run(run).meta.preprocessing
        worst, mean = check_against_numpy(pre)
        assert worst <= 1.0 and mean < 0.05


def test_every_precision_and_a_fixed_batch_take_images(runs: dict[str, Path]) -> None:
    import onnxruntime as ort

    run = runs["rgb"]
    x = _image(np.random.default_rng(5), 19, 27, 2)[None]
    ref = ort.InferenceSession(str(run / "pre.onnx"), providers=["CPUExecutionProvider"])
    expected = ref.run(None, {"image": x})[0]
    for flags, atol in ((("--fp16",), 1e-2), (("--fp16", "--fp16-io"), 1e-2), (("--int8",), 0.2)):
        out = run / "flavour.onnx"
        result = invoke("export", run, "-o", out, "--preprocess", *flags)
        assert result.exit_code == 0, result.output
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {"image": x})[0].astype(np.float32)
        np.testing.assert_allclose(got, expected, atol=atol, err_msg=str(flags))
    result = invoke("export", run, "-o", run / "b2.onnx", "--preprocess", "--batch-dim", "2")
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(run / "b2.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"image": np.concatenate([x, x])})[0].shape == (2, 3)


def test_refusals_are_located_messages(runs: dict[str, Path]) -> None:
    from netspec.backends.export.emitter import ExportError
    from netspec.backends.export.preprocess_graph import check_preprocessable
    from netspec.data.preprocess import Preprocessing

    run = runs["gray"]
    fails(invoke("export", run, "-o", run / "x.onnx", "--preprocess", "--opset", "13"), "opset 18")
    fails(
        invoke("export", run, "-o", run / "x.onnx", "--preprocess", "--ensemble", run),
        "--preprocess are not supported for ensembles",
    )
    with pytest.raises(ExportError, match="for image models"):
        check_preprocessable(Preprocessing(input_shape=(4,), raw_shape=(4,)))
    sixteen = Preprocessing(
        input_shape=(1, 8, 8), raw_shape=(1, 8, 8), channel_order="L", image_bits=16
    )
    with pytest.raises(ExportError, match="8-bit images"):
        check_preprocessable(sixteen)


# --- JavaScript consumers (docs/js) ----------------------------------------------------------

JS = Path(__file__).resolve().parents[1] / "docs" / "js"


def _node_with(*modules: str) -> str:
    """The node binary when it resolves every module from docs/js (or NODE_PATH), else skip."""
    import shutil

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    for module in modules:
        if not _resolves(node, module):
            pytest.skip(f"{module} is not installed: cd docs/js && npm install")
    return node


@functools.cache
def _resolves(node: str, module: str) -> bool:
    """node finds `module` from docs/js: asked once per module (a node process each)."""
    import os
    import subprocess

    probe = [node, "-e", f"require.resolve('{module}')"]
    return subprocess.run(probe, cwd=JS, capture_output=True, env=os.environ).returncode == 0


def _predict_mjs(node: str, model: Path, *inputs: Path) -> list[dict]:
    import subprocess

    done = subprocess.run(
        [node, str(JS / "predict.mjs"), str(model), *map(str, inputs), "--top-k", "3"],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _same_predictions(js: list[dict], py: list[dict], atol: float) -> None:
    assert len(js) == len(py)
    for a, b in zip(js, py):
        assert a["predictions"][0]["label"] == b["predictions"][0]["label"], (a, b)
        np.testing.assert_allclose(
            [p["score"] for p in a["predictions"]],
            [p["score"] for p in b["predictions"]],
            atol=atol,
        )


@pytest.mark.parametrize("name", ["gray", "rgb"])
def test_js_fed_raw_pixels_predicts_what_netspec_predicts(
    runs: dict[str, Path], name: str, tmp_path: Path
) -> None:
    """The issue's test: a JS consumer given raw image bytes (uint8 .npy pixels, no image code)
    of an in-graph-preprocessing export matches `netspec predict --json` on the image files."""
    node = _node_with("onnxruntime-node")
    files = _new_images(tmp_path)
    arrays = []
    for path in files:
        arrays.append(tmp_path / f"{path.stem}.npy")
        np.save(arrays[-1], _pixels(path))
    result = invoke("predict", runs[name] / "plain.onnx", *files, "--json", "--top-k", "3")
    assert result.exit_code == 0, result.output
    # 8x8 inputs: a 1-grey-level rounding tie moves a score by ~1e-3 (see above)
    _same_predictions(
        _predict_mjs(node, runs[name] / "pre.onnx", *arrays), json.loads(result.stdout), 5e-3
    )


def test_js_decodes_png_files_itself(runs: dict[str, Path], tmp_path: Path) -> None:
    """pngjs decodes exactly: the same predictions as from the pixels (RGBA, gray: any PNG)."""
    node = _node_with("onnxruntime-node", "pngjs")
    files = _new_images(tmp_path)
    result = invoke("predict", runs["gray"] / "plain.onnx", *files, "--json", "--top-k", "3")
    assert result.exit_code == 0, result.output
    _same_predictions(
        _predict_mjs(node, runs["gray"] / "pre.onnx", *files), json.loads(result.stdout), 5e-3
    )


@pytest.mark.parametrize("runtime", ["onnxruntime-node", "onnxruntime-web"])
def test_javascript_runtimes_run_the_preprocessing(
    runs: dict[str, Path], runtime: str, tmp_path: Path
) -> None:
    """uint8 Resize with antialias (opset 18) in onnxruntime-node and -web's wasm backend gives
    Python onnxruntime's outputs."""
    import os
    import subprocess

    import onnxruntime as ort

    node = _node_with(runtime)
    model = runs["rgb"] / "pre.onnx"
    x = _image(np.random.default_rng(9), 29, 18, 1, channels=4)[None]
    expected = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(
        None, {"image": x}
    )[0]
    script = f"""
const ort = require({json.dumps(runtime)});
if (ort.env && ort.env.wasm) ort.env.wasm.numThreads = 1;
(async () => {{
  const session = await ort.InferenceSession.create({json.dumps(str(model))});
  const x = new ort.Tensor("uint8", Uint8Array.from({json.dumps(x.ravel().tolist())}), {list(x.shape)});
  const out = await session.run({{ image: x }});
  process.stdout.write(JSON.stringify(Array.from(out[session.outputNames[0]].data)));
}})();
"""
    done = subprocess.run(
        [node, "-e", script], cwd=JS, capture_output=True, text=True, env=os.environ
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.array(json.loads(done.stdout)), expected.ravel(), atol=1e-5)


def test_the_onnx_reference_evaluator_runs_the_preprocessing(runs: dict[str, Path]) -> None:
    """The export is standard ONNX: the onnx package's reference implementation agrees on an
    image the graph shrinks (enlarging a smaller one, it differs: docs/export.md)."""
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    model = runs["gray"] / "pre.onnx"
    x = _image(np.random.default_rng(4), 31, 26, 0, channels=3)[None]  # >= (14, 12)
    expected = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(
        None, {"image": x}
    )[0]
    got = ReferenceEvaluator(onnx.load(model)).run(None, {"image": x})[0]
    np.testing.assert_allclose(got, expected, atol=5e-3)  # a grey level apart at most
