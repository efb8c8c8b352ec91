"""`netspec predict` on many inputs: folders and globs, resizing to a fixed input, per-input
errors that leave the other inputs' results, and CSV rows in the training file's own format."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
Image = pytest.importorskip("PIL.Image")

from helpers import invoke, needs_digits  # noqa: E402

from netspec.data.preprocess import geometry  # noqa: E402


def ort_probs(model: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": np.asarray(x, dtype=np.float32)})[0]


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 8x8 digit PNGs, a README the folder also holds, and no other inputs."""
    needs_digits()
    from netspec.data.builtin import load_builtin

    folder = tmp_path_factory.mktemp("digits")
    for i, sample in enumerate(load_builtin("digits").x[:3]):
        Image.fromarray(sample[0].astype(np.uint8)).save(folder / f"d{i}.png")
    (folder / "README.txt").write_text("not an input")
    return folder


def test_predict_takes_a_folder_and_a_quoted_glob(quickstart_onnx: Path, digit_folder: Path):
    pngs = [str(p) for p in sorted(digit_folder.glob("*.png"))]
    doc = json.loads(invoke("predict", quickstart_onnx, digit_folder, "--json").output)
    assert [r["input"] for r in doc] == pngs  # sorted, the README skipped
    doc = json.loads(
        invoke("predict", quickstart_onnx, digit_folder / "d[12].png", "--json").output
    )
    assert [r["input"] for r in doc] == pngs[1:]
    result = invoke("predict", quickstart_onnx, digit_folder / "*.jpg")
    assert result.exit_code == 2
    assert "*.jpg: error: no input files (images, .npy or .csv) match this pattern" in result.output


def test_predict_resizes_images_to_a_fixed_input_with_a_note(quickstart_onnx: Path, tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 17, (16, 16)).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "a.png")
    Image.fromarray(big).save(tmp_path / "b.png")
    result = invoke("predict", quickstart_onnx, tmp_path, "--json", "--top-k", "10")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert result.stderr.count("note: the model records no resize step") == 1  # once, not per file
    # The training pipeline's own resize (geometry, bilinear), then the recorded rescale.
    x = geometry(big[None], resize=(8, 8)).astype(np.float32)[None] * 0.0625
    p = ort_probs(quickstart_onnx, x)[0]
    scores = {d["label"]: d["score"] for d in doc[0]["predictions"]}
    assert [scores[str(k)] for k in range(10)] == pytest.approx(p, abs=1e-6)


def test_one_bad_input_does_not_stop_the_others(quickstart_onnx: Path, digit_folder, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    good = sorted(digit_folder.glob("*.png"))
    args = [good[0], tmp_path / "broken.png", tmp_path / "gone.npy", good[1]]
    result = invoke("predict", quickstart_onnx, *args, "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert [r["input"] for r in doc] == [str(a) for a in args]  # each in its place
    assert "predictions" in doc[0] and "predictions" in doc[3]
    assert doc[1]["error"]["kind"] == "data"
    assert doc[1]["error"]["file"] == str(tmp_path / "broken.png")
    assert "cannot decode the image" in doc[1]["error"]["message"]
    assert doc[2]["error"]["message"] == "no such npy file"
    text = invoke("predict", quickstart_onnx, *args)
    assert text.exit_code == 2
    assert f"{tmp_path / 'broken.png'}: error: cannot decode the image" in text.stderr
    assert text.stdout.startswith(f"{good[0]}\n") and f"\n\n{good[1]}\n" in text.stdout
    assert "2 of 4 inputs failed" in text.stderr


PENGUINS_SPEC = """
name: penguins_mlp
input: [9]
layers:
  - dense: {units: 8, activation: relu}
  - dense: {units: 3, activation: softmax}
train:
  data: {source: csv, path: PATH, target: species, val: 0.2}
  preprocess: {normalize: dataset}
  batch_size: 64
  epochs: 1
  seed: 0
  log: {pictures: false}  # trained in a module fixture, before any no_plots: none looked at
"""


@pytest.fixture(scope="module")
def penguins_model(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A one-epoch penguins classifier (one-hot island and sex), exported."""
    pytest.importorskip("torch")
    csv = shared_data / "penguins" / "penguins.csv"
    if not csv.is_file():
        pytest.skip(f"{csv} is absent")
    from netspec.backends.export.run import export_run

    tmp = tmp_path_factory.mktemp("penguins")
    spec = tmp / "penguins.yaml"
    spec.write_text(textwrap.dedent(PENGUINS_SPEC).replace("PATH", str(csv)))
    result = invoke("train", spec, "--out", tmp / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    return export_run(tmp / "run").path


def test_csv_model_predicts_rows_in_the_training_files_format(penguins_model: Path, tmp_path):
    meta = json.loads((penguins_model.parent / "model.json").read_text())
    assert meta["table"]["target"] == "species"
    assert meta["table"]["columns"][0] == {
        "name": "island",
        "categories": ["Biscoe", "Dream", "Torgersen"],
    }
    assert meta["features"][:3] == ["island=Biscoe", "island=Dream", "island=Torgersen"]
    shown = invoke("inspect", penguins_model).stdout  # the ONNX metadata carries both
    assert "  features: 9: island=Biscoe, island=Dream, island=Torgersen, bill_length_mm" in shown
    assert "  table: island (Biscoe, Dream, Torgersen), bill_length_mm," in shown
    assert shown.rstrip().endswith("sex (FEMALE, MALE); target species")
    # Columns reordered, the target kept (ignored), raw category names; one unknown island.
    (tmp_path / "raw.csv").write_text(
        "sex,island,body_mass_g,species,bill_length_mm,bill_depth_mm,flipper_length_mm\n"
        "MALE,Torgersen,3750,Adelie,39.1,18.7,181\n"
        "FEMALE,Atlantis,3800,Adelie,39.5,17.4,186\n"
        "FEMALE,Biscoe,4500,Gentoo,46.1,13.2,211\n"
    )
    encoded = np.array(
        [
            [0, 0, 1, 39.1, 18.7, 181, 3750, 0, 1],
            [1, 0, 0, 46.1, 13.2, 211, 4500, 1, 0],
        ],
        dtype=np.float32,
    )
    np.save(tmp_path / "encoded.npy", encoded)
    result = invoke("predict", penguins_model, tmp_path / "raw.csv", "--json", "--top-k", "3")
    assert result.exit_code == 2  # the unknown island
    rows = json.loads(result.stdout)
    assert [r["input"] for r in rows] == [f"{tmp_path / 'raw.csv'}:{n}" for n in (2, 3, 4)]
    assert "'Atlantis', a category the model was not trained on" in rows[1]["error"]["message"]
    same = json.loads(invoke("predict", penguins_model, tmp_path / "encoded.npy", "--json").output)
    for row, ref in zip([rows[0], rows[2]], same):
        assert [d["label"] for d in row["predictions"]] == [d["label"] for d in ref["predictions"]]
        scores = [d["score"] for d in row["predictions"]]
        assert scores == pytest.approx([d["score"] for d in ref["predictions"]], abs=1e-6)
    (tmp_path / "short.csv").write_text("island,bill_length_mm\nDream,40\n")
    result = invoke("predict", penguins_model, tmp_path / "short.csv")
    assert result.exit_code == 2
    assert "header has no column 'bill_depth_mm'" in result.stderr
