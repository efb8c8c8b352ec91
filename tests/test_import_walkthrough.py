"""docs/import.md's retraining walk-through, run as written: its Keras script, then every
`netspec` command of its shell blocks (import, summary, export, train with a frozen base and
`init: {from: IMPORTED_RUN}`, export, predict) on the cats and dogs photos; then the imported
run with every other command, the round trip to ONNX against Keras, and a second import's bytes."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras itself: conftest's keras_module
pytest.importorskip("torch")
pytest.importorskip("h5py")
pytest.importorskip("onnxruntime")

from helpers import REPO, SHARED_DATA, predict_one_class, runner

from netspec.cli import app
from netspec.runs import read_run

PAGE = REPO / "docs" / "import.md"
SECTION = "## Retraining an imported model"
PHOTOS = SHARED_DATA / "cats_dogs" / "test_set"
FENCE = re.compile(r"(?:<!-- ([a-z ]+): (.*?) -->\n)?```(\w*)\n(.*?)^```", re.S | re.M)

pytestmark = pytest.mark.skipif(
    not PHOTOS.is_dir(), reason=f"the cats and dogs photos are not at {PHOTOS} (SOURCES.md)"
)


def section_blocks() -> list[tuple[str | None, str, str, str]]:
    """The walk-through's fenced blocks: (marker, its argument, language, body), in order."""
    text = PAGE.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    part = text[start : end if end > 0 else len(text)]
    return [(m[1], m[2] or "", m[3], m[4]) for m in FENCE.finditer(part)]


def invoke(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
    assert "Traceback" not in result.output
    return result.output


def pictures_off(mp: pytest.MonkeyPatch) -> None:
    """history.png and the classification report's pictures named but not drawn: drawing them
    took 10 s of the walk-through's 17 (train and evaluate, 2 busy cores), the one epoch far
    less; test_classify.py and test_train_cli.py draw real ones."""
    import netspec.backends.training.plots as plots
    import netspec.backends.training.report_plots as report_plots

    def plot_class_report(out_dir, report, *, images, **kwargs) -> list[Path]:
        return [
            Path(out_dir) / n
            for n in report_plots.report_pictures(report, images=images is not None)
        ]

    mp.setattr(plots, "plot_history", lambda *a, **k: None)
    mp.setattr(report_plots, "plot_class_report", plot_class_report)


@pytest.fixture(scope="module")
def walked(tmp_path_factory, keras_module: Any) -> dict:
    """The walk-through run in a fresh folder, its photos as `cats_dogs/`: what each command
    printed, by its first two words (`train retrain.yaml`)."""
    folder = tmp_path_factory.mktemp("walkthrough")
    (folder / "cats_dogs").symlink_to(PHOTOS)
    blocks = section_blocks()
    printed: dict[str, str] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        pictures_off(mp)
        for marker, arg, lang, body in blocks:
            if lang == "python":
                with warnings.catch_warnings():  # Keras' writer trips numpy 2's deprecation
                    warnings.simplefilter("ignore", DeprecationWarning)
                    exec(compile(body, "make_convnet.py", "exec"), {"__name__": "walkthrough"})
            elif marker == "file":
                (folder / arg).write_text(body, encoding="utf-8")
            elif marker == "output":
                args = shlex.split(arg)[1:]
                assert invoke(args).rstrip("\n") == body.rstrip("\n")
            elif lang == "bash":
                for line in body.splitlines():
                    words = shlex.split(line, comments=True)
                    if words:
                        assert words[0] == "netspec", line
                        printed[" ".join(words[1:3])] = invoke(words[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = keras_module.models.load_model(folder / "small_convnet.keras")
    return {"folder": folder, "printed": printed, "model": model}


def test_the_walkthrough_has_every_step() -> None:
    langs = [(marker, lang) for marker, _, lang, _ in section_blocks()]
    assert langs[0] == ("not run", "python")
    assert ("file", "yaml") in langs and ("output", "text") in langs
    commands = " ".join(body for _, _, lang, body in section_blocks() if lang == "bash")
    for step in ("import", "summary", "train", "export", "predict"):
        assert f"netspec {step} " in commands, step


def test_retraining_keeps_the_frozen_base_and_exports(walked) -> None:
    """init loads the three imported convolutions; after training they are Keras' kernels to
    the bit (HWIO to OIHW), the head learned; the exported model predicts the photos."""
    folder, printed, model = walked["folder"], walked["printed"], walked["model"]
    assert "init: loaded 3 layers" in printed["train retrain.yaml"]
    run = read_run(folder / "runs" / "retrained")
    for name in ("conv1", "conv2", "conv3"):
        kernel, bias = (w.value.detach().cpu().numpy() for w in model.get_layer(name).weights)
        np.testing.assert_array_equal(run.weights[f"{name}.weight"], kernel.transpose(3, 2, 0, 1))
        np.testing.assert_array_equal(run.weights[f"{name}.bias"], bias)
    assert run.meta.classes == ("cats", "dogs")
    assert "matches PyTorch" in printed["export runs/retrained"]
    answers = printed["predict runs/retrained/model.onnx"]
    assert answers.count("cats (score") == 2 and answers.count("dogs (score") == 2


def _keras(model, x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # Keras' torch backend trips numpy 2's deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        return model.predict(x, verbose=0)


def _photo_batch(size: int) -> np.ndarray:
    """Two real photos as the Keras model takes them: (N, H, W, 3) pixels 0..255."""
    from PIL import Image

    paths = [PHOTOS / "cats" / "cat.4001.jpg", PHOTOS / "dogs" / "dog.4001.jpg"]
    return np.stack(
        [
            np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR))
            for p in paths
        ]
    ).astype(np.float32)


def test_round_trip_import_export_equals_keras(walked) -> None:
    """.keras -> import -> export: onnxruntime gives Keras' outputs (random and real inputs,
    NHWC as Keras took them); predict on the image files gives the same as on the arrays."""
    import onnxruntime as ort

    from netspec.predictor import Predictor

    folder, model = walked["folder"], walked["model"]
    onnx_file = folder / "runs" / "imported" / "model.onnx"
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for x in (rng.uniform(0, 255, (3, 64, 64, 3)).astype(np.float32), _photo_batch(64)):
        want = _keras(model, x)
        feed = (x / 255).transpose(0, 3, 1, 2).astype(np.float32)  # the record's x * 1/255
        got = session.run(None, {session.get_inputs()[0].name: feed})[0]
        np.testing.assert_allclose(got, want, atol=1e-5)
    photos = _photo_batch(64)
    arrays = Predictor(onnx_file).predict(photos)
    labels = [a["predictions"][0]["label"] for a in arrays]
    assert labels == [str(k) for k in _keras(model, photos).argmax(1)]


def test_a_second_import_is_byte_identical(walked, tmp_path: Path) -> None:
    folder = walked["folder"]
    again = tmp_path / "again"
    invoke(["import", str(folder / "small_convnet.keras"), "-o", str(again)])
    first = folder / "runs" / "imported"
    for name in ("spec.yaml", "model.safetensors", "model.json", "summary.txt"):
        assert (again / name).read_bytes() == (first / name).read_bytes(), name


def test_imported_run_with_every_command(
    walked, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """summary and graph of the run directory, export fp16, inspect, predict of image files,
    visualize; evaluate and int8 (which need data the import has not) refused in one line."""
    from netspec.backends import visualize

    folder, model = walked["folder"], walked["model"]
    run = folder / "runs" / "imported"
    assert f"Total params: {model.count_params():,}" in invoke(["summary", str(run)])
    assert "8 nodes" in invoke(["graph", str(run), "-o", str(tmp_path / "g.svg")])
    invoke(["export", str(run), "--fp16", "-o", str(tmp_path / "m16.onnx")])
    card = invoke(["inspect", str(tmp_path / "m16.onnx")])
    assert "input_layout: NHWC" in card and "small_convnet.keras" in card
    photo = str(PHOTOS / "cats" / "cat.4001.jpg")
    out = invoke(["predict", str(run / "model.onnx"), photo, "--json"])
    top = json.loads(out)[0]["predictions"][0]
    want = _keras(model, _photo_batch(64)[:1])[0]
    assert int(top["label"]) == int(want.argmax())
    assert abs(top["score"] - want.max()) < 1e-5
    # The default layers' maps computed, not drawn: their 16 + 32 + 32 tiles took 13 s to draw
    # on 2 busy cores (tests/test_visualize.py draws feature maps).
    with monkeypatch.context() as mp:
        mp.setattr(visualize, "plot_activations", lambda *a: None)
        maps = invoke(
            ["visualize", str(run), "--activations", photo, "-o", str(tmp_path / "a.png")]
        )
    assert "conv1 (16 maps), conv2 (32 maps), conv3 (64 maps)" in maps
    assert "16 filters" in invoke(
        ["visualize", str(run), "--filters", "conv1", "-o", str(tmp_path / "f.png")]
    )
    saliency = invoke(["visualize", str(run), "--saliency", photo, "-o", str(tmp_path / "s.png")])
    assert f"predicted '{int(want.argmax())}'" in saliency  # a softmax head: multiclass
    for args in (
        ["evaluate", str(run)],
        ["evaluate", str(run), "--data", str(PHOTOS)],
        ["export", str(run), "--int8", "-o", str(tmp_path / "q.onnx")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert "has no data of its own" in result.output and "train: {data:" in result.output
    # with a data section its photos are read, as the Keras model took them; a 10-class head
    # does not score 2-class data (five photos of each class: the refusal needs no more)
    photos = tmp_path / "photos"
    for label in ("cats", "dogs"):
        (photos / label).mkdir(parents=True)
        for p in sorted((PHOTOS / label).iterdir())[:5]:
            (photos / label / p.name).symlink_to(p)
    copy = tmp_path / "with_data"
    shutil.copytree(run, copy)
    (copy / "spec.yaml").write_text(
        (copy / "spec.yaml").read_text()
        + f"train:\n  data: {{source: folder, path: {photos}, size: [64, 64], test: 0.2}}\n"
    )
    result = runner.invoke(app, ["evaluate", str(copy)])
    assert result.exit_code == 2 and "the data has 2 classes (cats, dogs)" in result.output


@pytest.mark.slow  # evaluates and quantizes on 200 decoded photos (~2 s)
def test_retrained_run_evaluates_and_quantizes_on_its_photos(
    walked, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retrained run is an ordinary run: evaluate on new data, int8 checked on its test
    split."""
    from netspec.backends.export import int8_check

    pictures_off(monkeypatch)
    # The int8 model still runs in every runtime installed, the onnx reference evaluator (numpy)
    # on a sample or two rather than the 20 s' worth it gets in a real export (8 s here):
    # tests/test_int8.py checks the runtimes.
    monkeypatch.setattr(int8_check, "SLOW_SECONDS", 0.5)
    run = walked["folder"] / "runs" / "retrained"
    out = invoke(["evaluate", str(run), "--data", str(PHOTOS), "--json"])
    metrics = json.loads(out[out.index("{") :])  # after the report's line (stderr)
    assert metrics["samples"] == 200 and 0.0 <= metrics["accuracy"] <= 1.0
    # The head stays near chance (docs/import.md), where int8 rounding can flip a photo (2.5
    # points of 40): the gate is checked on a copy that predicts one class by a margin int8
    # cannot close, so its drop is 0 by construction, whatever the training reached.
    copy = tmp_path / "retrained"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("model.onnx", "model.onnx.json"))
    predict_one_class(copy, label=0)
    out = invoke(["export", str(copy), "--int8", "--max-drop", "0", "-o", str(tmp_path / "q.onnx")])
    assert (tmp_path / "q.onnx").is_file(), out
    assert re.search(r"drop -?0\.0+ points", out), out


def test_image_record_and_task_of_an_import() -> None:
    """Channels-last inputs of 1 or 3 channels and a fixed size are images (decoded 0..255,
    resized as training's folders are); other inputs keep the record as it was. A softmax head
    is multiclass, one sigmoid unit binary, anything else unknown."""
    from netspec.backends.importing.write import image_input, task_of

    gray = image_input(None, "NHWC", (1, 28, 28))
    assert gray == {
        "input_shape": [1, 28, 28],
        "raw_shape": [1, 28, 28],
        "channel_order": "L",
        "image_size": [28, 28],
        "raw_range": [0.0, 255.0],
    }
    scaled = {"input_shape": [3, 8, 8], "raw_shape": [3, 8, 8], "scale": 0.5}
    assert image_input(scaled, "NHWC", (3, 8, 8))["scale"] == 0.5
    assert image_input(scaled, "NHWC", (3, 8, 8))["channel_order"] == "RGB"
    assert image_input(scaled, None, (3, 8, 8)) is scaled  # channels first: not known as images
    assert image_input(None, "NHWC", (5, 8, 8)) is None  # 5 channels: not a picture
    assert image_input(None, "NHWC", (3, None, None)) is None
    assert task_of("softmax", (10,)) == "multiclass"
    assert task_of("sigmoid", (1,)) == "binary"
    assert task_of("sigmoid", (4,)) is None and task_of(None, (3,)) is None
    assert task_of("softmax", (4, 4)) is None
