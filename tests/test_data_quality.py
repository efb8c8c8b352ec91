"""Data that would train silently wrong: one class, bad CSV cells, constant features, unscaled targets.

Each test here failed before the fix it names (issue 12); the real datasets come from
../shared/data and tests that need them skip with a reason when it is absent.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import decoded_images, make_trainer
from PIL import Image

from netspec.compiler import compile_file
from netspec.data import load_csv, load_image_folder, load_mask_folder
from netspec.data.paths import resolve_path
from netspec.data.pipeline import Prepared, SplitOptions, prepare
from netspec.errors import DataError
from netspec.runs import TrainOptions, prepare_run


def prepared(tmp_path: Path, text: str) -> Prepared:
    """The data pipeline of a spec written to tmp_path/spec.yaml (paths beside it)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(text))
    graph = compile_file(spec)
    assert graph.train is not None
    return prepare(graph.train, SplitOptions.of(graph))


TABLE_SPEC = """\
name: table
input: [{features}]
layers:
  - dense: {{units: {units}}}
train:
  data: {{source: csv, path: t.csv, target: y, val: 0.0, test: 0.25{extra}}}
  preprocess: {{normalize: dataset}}
"""


def write_png(path: Path, size: tuple[int, int] = (4, 4), value: int = 9) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0]), value, np.uint8)).save(path)


# --- item 1: a folder with one class ------------------------------------------------------------


def test_training_on_one_class_folder_is_refused_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = decoded_images(monkeypatch)
    for cls in ("cats", "dogs"):
        for i in range(2):
            write_png(tmp_path / "data" / "test_set" / cls / f"{i}.png")
    spec = """\
        name: one
        input: [3, 4, 4]
        layers: [flatten, {dense: {units: 2, activation: softmax}}]
        train:
          data: {source: folder, path: data, val: 0.0}
        """
    with pytest.raises(DataError, match=r"1 class \(test_set\); expected at least 2 classes") as e:
        prepared(tmp_path, spec)
    assert e.value.problems[0].hint == f"did you mean path: {tmp_path / 'data' / 'test_set'}?"
    assert len(read) <= 1  # refused before the folder was decoded (the first image: its shape)


def test_a_separate_test_folder_of_one_class_is_loaded_as_before(tmp_path: Path) -> None:
    # Only the training folder is refused for one class (before decoding it); a test folder of
    # one class is decoded into memory as any other, its class aligned with the training's.
    for split, classes in (("train", ("cats", "dogs")), ("test", ("dogs",))):
        for cls in classes:
            for i in range(3):
                write_png(tmp_path / split / cls / f"{i}.png", value=40 * i)
    spec = """\
        name: two
        input: [3, 4, 4]
        layers: [flatten, {dense: {units: 2, activation: softmax}}]
        train:
          data: {source: folder, path: train, test_path: test, val: 0.0}
        """
    data = prepared(tmp_path, spec)
    assert isinstance(data.test.x, np.ndarray) and data.test.x.shape == (3, 3, 4, 4)
    assert data.test.y.tolist() == [1, 1, 1]


def test_real_cats_dogs_top_folder_is_refused(tmp_path: Path, shared_data: Path) -> None:
    root = shared_data / "cats_dogs"
    if not root.is_dir():
        pytest.skip(f"the shared datasets are not here: {root}")
    spec = f"""\
        name: one
        input: [3, 8, 8]
        layers: [flatten, {{dense: {{units: 2, activation: softmax}}}}]
        train:
          data: {{source: folder, path: {root}, size: [8, 8], val: 0.0}}
        """
    with pytest.raises(DataError, match=r"expected at least 2 classes") as e:
        prepared(tmp_path, spec)
    assert e.value.problems[0].hint == f"did you mean path: {root / 'test_set'}?"


# --- item 11: every corrupt image in one error, skipped files named ------------------------------


def test_every_corrupt_image_is_listed_in_one_error(tmp_path: Path) -> None:
    write_png(tmp_path / "cat" / "ok.png")
    write_png(tmp_path / "dog" / "ok.png")
    # Fixed bytes, the same every run (os.urandom made a CIFAR test fail once in ~30 runs).
    for seed, name in enumerate(("cat/bad1.jpg", "dog/bad2.png", "dog/bad3.png")):
        (tmp_path / name).write_bytes(np.random.default_rng(seed).bytes(64))
    with pytest.raises(DataError, match=r"cannot decode image") as e:
        load_image_folder(tmp_path)
    files = [Path(p.file).relative_to(tmp_path).as_posix() for p in e.value.problems]
    assert files == ["cat/bad1.jpg", "dog/bad2.png", "dog/bad3.png"]


def test_many_corrupt_images_are_counted_after_twenty(tmp_path: Path) -> None:
    write_png(tmp_path / "dog" / "ok.png")
    for i in range(25):
        (tmp_path / "cat" / f"bad{i:02}.png").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "cat" / f"bad{i:02}.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"cannot decode image") as e:
        load_image_folder(tmp_path)
    assert len(e.value.problems) == 21
    assert e.value.problems[-1].message == "... and 5 more files that cannot be read"


def test_corrupt_masks_and_images_are_all_listed(tmp_path: Path) -> None:
    for stem in ("a", "b", "c"):
        write_png(tmp_path / "images" / f"{stem}.png")
        write_png(tmp_path / "masks" / f"{stem}.png", value=255)
    (tmp_path / "images" / "a.png").write_bytes(b"broken")
    (tmp_path / "masks" / "c.png").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"cannot read") as e:
        load_mask_folder(tmp_path)
    files = [Path(p.file).relative_to(tmp_path).as_posix() for p in e.value.problems]
    assert files == ["images/a.png", "masks/c.png"]


def test_skipped_files_are_named(tmp_path: Path) -> None:
    write_png(tmp_path / "cat" / "a.png")
    write_png(tmp_path / "dog" / "b.png")
    for name in ("cat/x.txt", "dog/Thumbs.db", "dog/y.csv", "dog/z.md", "cat/w.txt", "cat/v.doc"):
        (tmp_path / name).write_text("-")
    data = load_image_folder(tmp_path)
    assert data.notes == (
        "skipped 6 non-image files: cat/v.doc, cat/w.txt, cat/x.txt, dog/Thumbs.db, dog/y.csv, "
        "... (6 in all)",
    )


def test_one_class_csv_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,y\n" + "".join(f"{i},cat\n" for i in range(8)))
    with pytest.raises(DataError, match=r"1 class \(cat\); expected at least 2 classes"):
        prepared(tmp_path, TABLE_SPEC.format(features=1, units=2, extra=""))


# --- items 2 and 14: CSV cells ------------------------------------------------------------------


def test_a_typo_in_a_numeric_column_names_file_line_column_and_value(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    rows = [f"{i}.5,{i % 2}" for i in range(10)]
    rows[6] = "3.O,0"
    path.write_text("x,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(
        DataError, match=r"t\.csv:8: error: column 'x' holds numbers, but this row has '3\.O'"
    ):
        load_csv(path, target="label")


def test_a_typo_in_a_numeric_target_is_an_error_not_a_class(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    rows = [f"{i},{i * 1.5}" for i in range(10)]
    rows[2] = "2,oops"
    path.write_text("x,price\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"t\.csv:4: error: column 'price' holds numbers.*'oops'"):
        load_csv(path, target="price")


@pytest.mark.parametrize("marker", ["NA", "N/A", "n/a", "NaN", "null", "?", "", "None"])
def test_missing_markers_drop_the_row(tmp_path: Path, marker: str) -> None:
    path = tmp_path / "t.csv"
    rows = [f"{i}.5,{i % 2}" for i in range(6)]
    rows[3] = f"{marker},1"
    path.write_text("x,label\n" + "\n".join(rows) + "\n")
    data = load_csv(path, target="label")
    assert data.x[:, 0].tolist() == [0.5, 1.5, 2.5, 4.5, 5.5]  # numeric, not one-hot
    assert data.notes[0] == "dropped 1 of 6 rows with a missing value (x: 1)"


def test_a_mostly_text_column_is_categorical(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("size,label\nS,0\nM,1\nL,0\n10,1\n")
    data = load_csv(path, target="label")
    assert data.feature_names == ("size=10", "size=L", "size=M", "size=S")


def test_a_first_row_of_numbers_with_a_gap_is_data_not_a_header(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("5.1,3.5,,0.2\n4.9,3.0,1.4,0.2\n")
    with pytest.raises(DataError, match=r"t\.csv:1: error: the first row .* looks like data"):
        load_csv(path, target="0.2")


# --- item 3: constant features ------------------------------------------------------------------


def test_a_constant_feature_gets_std_1_and_a_note(tmp_path: Path) -> None:
    rows = [f"{i * 0.37:.2f},0.1,{i % 2}" for i in range(40)]
    (tmp_path / "t.csv").write_text("a,const,y\n" + "\n".join(rows) + "\n")
    p = prepared(tmp_path, TABLE_SPEC.format(features=2, units=2, extra=""))
    assert p.preprocessing.std is not None and p.preprocessing.std[1] == 1.0
    assert p.preprocessing.std[0] == pytest.approx(p.train.x[:, 0].std(), rel=1e-5)
    assert p.preprocessing.mean[1] == pytest.approx(0.1)
    assert (
        "1 feature(s) constant in the training split (const): normalized with std 1, "
        "as scikit-learn does" in p.notes
    )


# --- item 13: one rule for relative paths -------------------------------------------------------

ARRAYS_SPEC = """\
name: paths
input: [2]
layers: [{dense: {units: 1}}]
train:
  data: {source: arrays, path: d.npz, val: 0.0}
"""


def write_npz(path: Path, value: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=np.full((4, 2), value, np.float32), y=np.arange(4, dtype=np.float32))


def test_spec_paths_are_relative_to_the_spec_file_wherever_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "specs").mkdir()
    spec = tmp_path / "specs" / "s.yaml"
    spec.write_text(ARRAYS_SPEC)
    write_npz(tmp_path / "specs" / "d.npz", 1.0)
    write_npz(tmp_path / "d.npz", 2.0)  # a decoy at the same relative path from the cwd
    monkeypatch.chdir(tmp_path)
    graph, *_ = prepare_run(spec, [], tmp_path / "run", False)
    assert graph.train is not None
    p = prepare(graph.train, SplitOptions.of(graph))
    assert p.train.x[0].tolist() == [1.0, 1.0]
    assert graph.train.data.path == str(tmp_path / "specs" / "d.npz")


def test_set_paths_are_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "specs").mkdir()
    spec = tmp_path / "specs" / "s.yaml"
    spec.write_text(ARRAYS_SPEC)
    write_npz(tmp_path / "specs" / "mine.npz", 1.0)
    write_npz(tmp_path / "work" / "mine.npz", 3.0)
    monkeypatch.chdir(tmp_path / "work")
    graph, *_ = prepare_run(spec, ["train.data.path=mine.npz"], tmp_path / "run", False)
    assert graph.train is not None
    assert graph.train.data.path == str(tmp_path / "work" / "mine.npz")


def test_a_missing_data_file_is_named_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "s.yaml").write_text(ARRAYS_SPEC)
    monkeypatch.chdir(tmp_path)
    graph, *_ = prepare_run(tmp_path / "specs" / "s.yaml", [], tmp_path / "run", False)
    assert graph.train is not None
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "specs" / "d.npz"))):
        prepare(graph.train, SplitOptions.of(graph))


def test_shipped_specs_find_the_shared_data_from_any_directory(
    repo_root: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not shared_data.is_dir():
        pytest.skip(f"the shared datasets are not here: {shared_data}")
    monkeypatch.chdir(tmp_path)
    for spec in sorted((repo_root / "specs").glob("*.yaml")):
        train = (yaml.safe_load(spec.read_text()).get("train") or {}).get("data") or {}
        for key in ("path", "test_path"):
            if key in train:
                assert resolve_path(train[key], str(spec)).exists(), (spec.name, train[key])


# --- item 4: regression targets are standardized, and reported in their own units ---------------

REGRESSION_SPEC = """\
name: big
input: [3]
layers:
  - dense: {{units: 8, activation: relu}}
  - dense: {{units: 1}}
train:
  data: {{source: arrays, path: big.npz, val: 0.0, test: 0.25{extra}}}
  preprocess: {{normalize: dataset}}
  batch_size: 16
  epochs: 3
  optimizer: {{name: adam, lr: 0.01}}
  metrics: [mae, rmse]
"""


def regression_trainer(tmp_path: Path, extra: str = ""):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (200_000 + 50_000 * x @ np.array([1.0, -0.5, 0.25])).astype(np.float32)  # house prices
    np.savez(tmp_path / "big.npz", x=x, y=y)
    return make_trainer(tmp_path, REGRESSION_SPEC.format(extra=extra))


@pytest.mark.slow
def test_regression_targets_are_standardized_and_reported_in_their_units(
    tmp_path: Path, no_plots: list[Path]
) -> None:
    import json

    import onnxruntime as ort
    import torch

    from netspec.backends.export.run import export_run
    from netspec.backends.predict.predict import predict

    t = regression_trainer(tmp_path)
    y = t.data.train.y.astype(np.float64)
    pre = t.data.preprocessing
    assert pre.target_mean == pytest.approx((y.mean(),)) and pre.target_std == pytest.approx(
        (y.std(),)
    )
    result = t.fit()
    assert result["history"][0]["loss"] < 10  # standardized units, not 1e10
    recorded = json.loads((t.run_dir / "model.json").read_text())["preprocessing"]
    assert recorded["target_mean"] == list(pre.target_mean)
    # Metrics are in the data's units: the MAE of the un-scaled outputs on the test split.
    test = t.data.test
    assert test is not None
    with torch.no_grad():
        out = t.module(t.norm(torch.from_numpy(test.x))).numpy()[:, 0]
    values = out * pre.target_std[0] + pre.target_mean[0]
    assert result["test"]["mae"] == pytest.approx(np.abs(values - test.y).mean(), rel=1e-4)
    assert result["test"]["mae"] > 100  # dollars, not standard deviations
    # The ONNX graph un-scales by itself (parity passed on export), and predict needs nothing.
    export_run(t.run_dir)
    session = ort.InferenceSession(str(t.run_dir / "model.onnx"))
    x = ((test.x - np.asarray(pre.mean)) / np.asarray(pre.std)).astype(np.float32)
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0][:, 0]
    assert onnx_out == pytest.approx(values, rel=1e-4)
    np.save(tmp_path / "x.npy", test.x)
    predicted = [r["values"][0] for r in predict(t.run_dir / "model.onnx", [tmp_path / "x.npy"])]
    assert predicted == pytest.approx(values, rel=1e-4)


def test_scale_targets_false_keeps_the_units(tmp_path: Path) -> None:
    t = regression_trainer(tmp_path, extra=", scale_targets: false")
    assert t.data.preprocessing.target_mean is None and t.data.preprocessing.target_std is None
    assert float(t.y_train.mean()) > 1e5  # learned as given


# --- item 5: evaluate --data says when it overlaps the training split ---------------------------


@pytest.mark.slow
def test_evaluate_on_the_training_data_says_so(tmp_path: Path, no_plots: list[Path]) -> None:
    from helpers import invoke

    from netspec.backends.training.evaluate import evaluate_run

    t = regression_trainer(tmp_path)
    t.fit()
    result = evaluate_run(t.run_dir, data=tmp_path / "big.npz", device="cpu")
    assert result["in_training_split"] == 48  # all but the 16 test samples of 64
    assert result["notes"] == ["48 of 64 samples were in the run's training split"]
    out = invoke("evaluate", t.run_dir, "--data", tmp_path / "big.npz", "--device", "cpu")
    assert out.exit_code == 0, out.output
    assert "note: 48 of 64 samples were in the run's training split" in out.output
    rng = np.random.default_rng(9)
    fresh = rng.normal(size=(10, 3)).astype(np.float32)
    np.savez(tmp_path / "new.npz", x=fresh, y=np.ones(10, np.float32))
    clean = evaluate_run(t.run_dir, data=tmp_path / "new.npz", device="cpu")
    assert clean["in_training_split"] == 0 and "notes" not in clean


def test_targets_of_a_bounded_output_are_not_standardized(tmp_path: Path) -> None:
    from netspec.backends.training.loop import Trainer

    text = REGRESSION_SPEC.replace("{{units: 1}}", "{{units: 1, activation: sigmoid}}")
    (tmp_path / "big.yaml").write_text(text.format(extra=""))
    np.savez(tmp_path / "big.npz", x=np.zeros((8, 3), np.float32), y=np.linspace(0, 1, 8))
    run = prepare_run(tmp_path / "big.yaml", [], tmp_path / "run", False)
    logs: list[str] = []
    t = Trainer(run, TrainOptions("cpu", progress=False), log=logs.append)
    t.setup()
    assert t.data.preprocessing.target_mean is None
    assert (
        "note: regression targets are not standardized: the output ends in sigmoid, whose "
        "range the targets must fit" in logs
    )
