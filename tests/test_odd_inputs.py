"""Inputs that trained or predicted silently wrong, or crashed (issue 20): one test per item.

Each test failed before its fix. The corpus of odd files (tests/test_corpus.py) widens these
to every loader; this file keeps the one reproduction of each reported case.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import inside, needs_digits
from PIL import Image

from netspec.data import load_image_folder
from netspec.data.folder import SIXTEEN_TO_8

# --- item 2: 16-bit grayscale images keep their range ------------------------------------------


def write_16bit(path: Path, value: int, size: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint16)).save(path)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_grayscale_class_folders_keep_their_range(tmp_path: Path, suffix: str) -> None:
    # Both classes are above 255: Pillow's convert("L") made them one blank class.
    write_16bit(tmp_path / "dim" / f"0{suffix}", 1000)
    write_16bit(tmp_path / "bright" / f"0{suffix}", 60000)
    for color, channels in (("grayscale", 1), ("rgb", 3)):
        data = load_image_folder(tmp_path, color=color)  # type: ignore[arg-type]
        assert data.x.dtype == np.float32 and data.x.shape == (2, channels, 4, 4)
        assert data.bit_depth == 16 and "16-bit" in data.source
        by_class = {data.classes[int(y)]: float(x.max()) for x, y in zip(data.x, data.y)}
        assert by_class["bright"] == pytest.approx(60000 * SIXTEEN_TO_8, rel=1e-6)
        assert by_class["dim"] == pytest.approx(1000 * SIXTEEN_TO_8, rel=1e-6)
    resized = load_image_folder(tmp_path, color="grayscale", size=(2, 2))
    assert float(resized.x.max()) == pytest.approx(60000 * SIXTEEN_TO_8, rel=1e-5)


def test_8bit_folders_stay_uint8(tmp_path: Path) -> None:
    for name, value in (("a", 3), ("b", 200)):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((4, 4), value, np.uint8)).save(tmp_path / name / "0.png")
    data = load_image_folder(tmp_path, color="grayscale")
    assert data.x.dtype == np.uint8 and data.bit_depth == 8


def test_32bit_images_are_refused_by_name(tmp_path: Path) -> None:
    from netspec.errors import DataError

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((4, 4), 70000.5, np.float32)).save(tmp_path / name / "0.tif")
    with pytest.raises(DataError, match=r"0\.tif.*32-bit float image"):
        load_image_folder(tmp_path, color="grayscale")


def test_predict_reads_16bit_images_as_training_did(tmp_path: Path) -> None:
    from netspec.backends.predict.inputs import read_image
    from netspec.backends.predict.model import ModelInfo
    from netspec.data.preprocess import Preprocessing

    write_16bit(tmp_path / "scan.png", 40000, size=8)
    for order, resize in (("L", None), ("RGB", [4, 4])):
        pre = Preprocessing(
            input_shape=(1, 8, 8),
            raw_shape=(1, 8, 8),
            channel_order=order,
            image_size=tuple(resize) if resize else None,
        )
        c = 1 if order == "L" else 3
        h = 4 if resize else 8
        info = ModelInfo(
            tmp_path / "m.onnx", "input", "tensor(float)", None, (c, h, h), "out", (2,),
            (c, h, h), pre=pre,
        )  # fmt: skip
        x = read_image(tmp_path / "scan.png", info)
        assert x.shape == (c, h, h)
        assert float(x.max()) == pytest.approx(40000 * SIXTEEN_TO_8, rel=1e-5)


# --- item 4: NaN and infinities in predict inputs are per-input failures; JSON stays strict -----


def strict_json(text: str) -> object:
    """json.loads that refuses NaN, Infinity and -Infinity (Python's json accepts them)."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in JSON output: not valid JSON")

    return json.loads(text, parse_constant=refuse)


def test_predict_fails_the_nan_inputs_only_and_prints_strict_json(
    quickstart_onnx: Path, tmp_path: Path
) -> None:
    from helpers import invoke

    good = np.full((1, 8, 8), 4.0, np.float32)
    batch = np.stack([good, good, good])
    batch[1, 0, 2, 3] = np.nan
    np.save(tmp_path / "x.npy", batch)
    bad = good.copy()
    bad[0, 0, 0] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    (tmp_path / "rows.csv").write_text(
        ",".join(f"p{i}" for i in range(64)) + "\n" + ",".join(["1"] * 63 + ["nan"]) + "\n"
    )
    result = invoke(
        "predict", quickstart_onnx, tmp_path / "x.npy", tmp_path / "inf.npy", tmp_path / "rows.csv",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    doc = strict_json(result.stdout)
    assert isinstance(doc, list)
    errors = {r["input"]: r["error"]["problems"][0]["message"] for r in doc if "error" in r}
    assert [r["input"] for r in doc if "predictions" in r] == [
        f"{tmp_path / 'x.npy'}[0]",
        f"{tmp_path / 'x.npy'}[2]",
    ]
    assert "1 NaN value (the first at index (0, 2, 3))" in errors[f"{tmp_path / 'x.npy'}[1]"]
    assert "1 infinite value" in errors[str(tmp_path / "inf.npy")]
    assert len(errors) == 3 and any("rows.csv:2" in name for name in errors)


def test_the_python_api_refuses_a_nan_array_by_name(quickstart_onnx: Path) -> None:
    import netspec
    from netspec.errors import NetspecError

    x = np.full((1, 8, 8), np.nan, np.float32)
    with pytest.raises(NetspecError, match=r"inputs\[0\].*64 NaN values"):
        netspec.Predictor(quickstart_onnx).predict(x)


# --- item 6: float labels with a classifier head are classes (or an error naming the file) -----

ARRAY_SPEC = """\
name: arrays
input: [4]
layers:
  - dense: {{units: 3, activation: softmax}}
train:
  data: {{source: arrays, path: d.npz, val: 0.0, test: 0.25{extra}}}
"""


def csv_spec(features: int, units: int) -> str:
    """ARRAY_SPEC reading t.csv (target column y) with `features` inputs and `units` classes."""
    spec = ARRAY_SPEC.replace("[4]", f"[{features}]").replace("units: 3", f"units: {units}")
    return spec.replace(
        "source: arrays, path: d.npz", "source: csv, path: t.csv, target: y"
    ).format(extra="")


def write_npz(path: Path, y: np.ndarray, n: int = 12) -> None:
    x = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    np.savez(path, x=x, y=y)


def prepared(tmp_path: Path, text: str):
    """The Trainer's data (it tells prepare the activation the network ends in)."""
    from helpers import make_trainer

    return make_trainer(tmp_path, text).data


def test_integral_float_labels_with_a_softmax_head_are_classes(tmp_path: Path) -> None:
    write_npz(tmp_path / "d.npz", np.arange(12, dtype=np.float64) % 3)
    p = prepared(tmp_path, ARRAY_SPEC.format(extra=""))
    assert p.task == "multiclass" and p.classes == ("0", "1", "2")
    assert p.train.y.dtype == np.int64


def test_integral_float_csv_labels_with_a_softmax_head_are_classes(tmp_path: Path) -> None:
    # More than 20 distinct integral values: auto would call it regression; the head says classes.
    rows = [f"{i % 7}.5,{i % 3}.0,{i},{float(i % 25)}" for i in range(50)]
    (tmp_path / "t.csv").write_text("a,b,c,y\n" + "\n".join(rows) + "\n")
    p = prepared(tmp_path, csv_spec(features=3, units=25))
    assert p.task == "multiclass" and len(p.classes or ()) == 25


def test_non_integral_float_labels_with_a_softmax_head_name_the_file(tmp_path: Path) -> None:
    from netspec.errors import DataError

    write_npz(tmp_path / "d.npz", np.linspace(0, 2, 12))
    with pytest.raises(DataError) as err:
        prepared(tmp_path, ARRAY_SPEC.format(extra=""))
    message = str(err.value)
    assert "d.npz" in message and "ends in softmax" in message and "0.18" in message


def test_float_targets_of_a_linear_head_stay_regression(tmp_path: Path) -> None:
    write_npz(tmp_path / "d.npz", np.arange(12, dtype=np.float64) % 3)
    spec = ARRAY_SPEC.replace("units: 3, activation: softmax", "units: 1")
    p = prepared(tmp_path, spec.format(extra=""))
    assert p.task == "regression"


def test_integral_float_labels_of_named_classes_are_classes(tmp_path: Path) -> None:
    from netspec.data import load_arrays

    write_npz(tmp_path / "d.npz", np.arange(12, dtype=np.float64) % 3)
    data = load_arrays(tmp_path / "d.npz", classes=["a", "b", "c"])
    assert data.classes == ("a", "b", "c") and data.y.dtype == np.int64


# --- item 7: headers claiming huge shapes, and labels that are ids ------------------------------


def huge_npy(shape: tuple[int, ...] = (10**12,)) -> bytes:
    """A .npy file whose header claims `shape` of float32 and holds 16 bytes of data."""
    import io

    f = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(f, header)
    return f.getvalue() + bytes(16)


@pytest.mark.parametrize("compress", [False, True])
def test_an_npz_header_claiming_terabytes_is_refused_before_allocating(
    tmp_path: Path, compress: bool
) -> None:
    import zipfile

    from netspec.data import load_arrays
    from netspec.errors import DataError

    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr("x.npy", huge_npy())
        buf = __import__("io").BytesIO()
        np.save(buf, np.zeros(3, np.int64))
        z.writestr("y.npy", buf.getvalue())
    with pytest.raises(DataError, match=r"big\.npz.*claims shape \(1000000000000,\) of float32"):
        load_arrays(path)


def test_an_npy_header_claiming_terabytes_is_refused_in_training_and_predict(
    tmp_path: Path,
) -> None:
    from netspec.backends.predict.inputs import load_npy
    from netspec.data import load_arrays
    from netspec.errors import NetspecError

    (tmp_path / "x.npy").write_bytes(huge_npy((10**6, 10**6)))
    np.save(tmp_path / "y.npy", np.zeros(3, np.int64))
    with pytest.raises(NetspecError, match=r"x\.npy.*4\.0 TB"):
        load_arrays(tmp_path / "x.npy", y_path=tmp_path / "y.npy")
    with pytest.raises(NetspecError, match=r"x\.npy.*4\.0 TB"):
        load_npy(tmp_path / "x.npy")


def test_labels_that_are_ids_are_refused_before_anything_is_sized_by_them(tmp_path: Path) -> None:
    from netspec.data import load_arrays
    from netspec.errors import DataError

    x = np.zeros((3, 2), np.float32)
    np.savez(tmp_path / "ids.npz", x=x, y=np.array([5, 10**12, 7]))
    with pytest.raises(DataError, match=r"ids\.npz.*labels go up to 1000000000000.*look like ids"):
        load_arrays(tmp_path / "ids.npz")
    np.savez(tmp_path / "fids.npz", x=x, y=np.array([5.0, 1e12, 7.0]))
    spec = ARRAY_SPEC.replace("[4]", "[2]").replace("d.npz", "fids.npz")
    with pytest.raises(
        DataError, match=r"fids\.npz.*labels go up to 99999\d+: more than 65536 classes"
    ):
        prepared(tmp_path, spec.format(extra=""))


# --- item 8: CSV dialects, separators, infinities, one-hot notes, header-only files -------------


def csv_file(tmp_path: Path, text: str, name: str = "t.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_quoted_numbers_with_thousands_separators_are_numbers(tmp_path: Path) -> None:
    from netspec.data import load_csv

    rows = "".join(f'"{1 + i},{234 + i}",{i},{i % 2}\n' for i in range(6))
    data = load_csv(csv_file(tmp_path, "price,rooms,y\n" + rows), target="y")
    assert data.x.shape == (6, 2) and data.x[0, 0] == 1234.0 and data.x[5, 0] == 6239.0
    assert any("thousands separators: '1,234' is read as 1234" in n for n in data.notes)


def test_a_column_of_infinities_is_refused_by_name_not_one_hot_encoded(tmp_path: Path) -> None:
    from netspec.data import load_csv
    from netspec.errors import DataError

    rows = "".join(f"{'inf' if i else 1.5},{i},{i % 2}\n" for i in range(6))
    with pytest.raises(DataError) as err:
        load_csv(csv_file(tmp_path, "a,b,y\n" + rows), target="y")
    message = str(err.value)
    assert "t.csv:3" in message and "column 'a' holds 'inf', an infinite value" in message


def test_a_semicolon_csv_with_decimal_commas_is_read(tmp_path: Path) -> None:
    from netspec.data import load_csv

    rows = "".join(f"{i},5;{i};{'ab'[i % 2]}\n" for i in range(6))
    path = csv_file(tmp_path, "a;b;label\n" + rows)
    data = load_csv(path, target="label")
    assert data.x.shape == (6, 2) and data.x[3].tolist() == [3.5, 3.0]
    assert data.classes == ("a", "b")
    assert any("decimal commas: '0,5' is read as 0.5" in n for n in data.notes)
    same = load_csv(path, target="label", delimiter=";")
    assert np.array_equal(same.x, data.x)


def test_a_semicolon_csv_with_a_wrong_target_lists_its_columns(tmp_path: Path) -> None:
    from netspec.data import load_csv
    from netspec.errors import DataError

    path = csv_file(tmp_path, "a;b;c;label\n1;2;3;x\n4;5;6;y\n")
    with pytest.raises(DataError) as err:
        load_csv(path, target="species")
    assert "available columns: a, b, c, label" in str(err.value)
    assert "a;b" not in str(err.value)


def test_text_columns_become_one_hot_with_a_note_saying_why(tmp_path: Path) -> None:
    from netspec.data import load_csv

    rows = "".join(f"{i},{'red' if i % 2 else 'blue'},{i % 2}\n" for i in range(6))
    data = load_csv(csv_file(tmp_path, "a,color,y\n" + rows), target="y")
    assert data.x.shape == (6, 3)
    assert any(
        "one-hot encoded 1 text column: color (2 categories; e.g. 'blue' is not a number)" in n
        for n in data.notes
    )


def test_a_header_only_csv_says_it_has_no_data_rows(tmp_path: Path) -> None:
    from netspec.data import load_csv
    from netspec.errors import DataError

    with pytest.raises(DataError) as err:
        load_csv(csv_file(tmp_path, "a,b,y\n"), target="y")
    assert "t.csv: error: CSV file has a header (a, b, y) but no data rows" in str(err.value)
    assert "dropping 0 rows" not in str(err.value)


def test_a_delimiter_in_the_spec_reaches_the_loader(tmp_path: Path) -> None:
    from test_data_quality import TABLE_SPEC
    from test_data_quality import prepared as prepare_spec

    rows = "".join(f"{i}|{i * 2}|{i % 2}\n" for i in range(8))
    csv_file(tmp_path, "a|b|y\n" + rows)
    extra = ", delimiter: '|'"
    p = prepare_spec(tmp_path, TABLE_SPEC.format(features=2, units=2, extra=extra))
    assert p.train.x.shape[1] == 2


def test_predict_reads_semicolon_rows_with_decimal_commas(tmp_path: Path) -> None:
    from netspec.backends.predict.model import ModelInfo
    from netspec.backends.predict.rows import csv_rows

    path = csv_file(tmp_path, "a;b\n1,5;2\n3;4,25\n")
    info = ModelInfo(path, "input", "tensor(float)", None, (2,), "out", (1,), (2,))
    assert [x.tolist() for _, x in csv_rows(path, info)] == [[1.5, 2.0], [3.0, 4.25]]


# --- item 9: errors name the mask file, and the weights file --------------------------------


def test_a_mask_value_outside_the_classes_names_the_mask_file(tmp_path: Path) -> None:
    from netspec.data import load_mask_folder
    from netspec.errors import DataError

    for i in range(6):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.full((4, 4), 9, np.uint8)).save(tmp_path / "images" / f"s{i}.png")
        mask = np.zeros((4, 4), np.uint8)
        mask[0, 0] = 1
        if i == 5:
            mask[1, 1] = 7  # the one bad mask
        Image.fromarray(mask).save(tmp_path / "masks" / f"s{i}.png")
    with pytest.raises(DataError) as err:
        load_mask_folder(tmp_path, classes=["bg", "fg"])
    message = str(err.value)
    assert "masks/s5.png: error: masks hold class index 7" in message
    with pytest.raises(DataError) as err:
        load_mask_folder(tmp_path, mask_values=[0, 1])
    assert "masks/s5.png: error: masks hold value 7 not in mask_values" in str(err.value)


def test_weights_of_another_network_name_the_weights_file(quickstart_copy: Path) -> None:
    from helpers import invoke
    from safetensors.numpy import save_file

    weights = quickstart_copy / "model.safetensors"
    save_file({"other.weight": np.zeros((3, 3), np.float32)}, str(weights))
    for command in (("export", quickstart_copy), ("evaluate", quickstart_copy)):
        result = invoke(*command)
        assert result.exit_code == 2, result.output
        assert f"{weights}: error: the weights do not fit the network" in result.output, command


# --- item 10: counts in messages -------------------------------------------------------------


def test_class_counts_say_which_classes_occur(tmp_path: Path) -> None:
    from netspec.data import load_arrays
    from netspec.errors import DataError

    write_npz(tmp_path / "d.npz", np.array([0, 1, 2, 5] * 3))
    assert load_arrays(tmp_path / "d.npz").notes == ("classes 3, 4 never occur in y",)
    with pytest.raises(DataError) as err:
        prepared(tmp_path, ARRAY_SPEC.format(extra=""))
    assert (
        "6 classes (0, 1, 2, 5; 3, 4 never occur in the labels), but the network's output is (3,)"
        in str(err.value)
    )


def test_no_class_is_0_classes() -> None:
    from netspec.data.arraydata import ArrayData
    from netspec.data.labels import classes_said

    empty = ArrayData(np.zeros((0, 2)), np.zeros(0, np.int64), (), "none")
    one = ArrayData(np.zeros((2, 2)), np.zeros(2, np.int64), ("a",), "one")
    assert classes_said(empty) == "0 classes" and classes_said(one) == "1 class (a)"


@pytest.mark.slow
def test_evaluate_on_a_csv_lacking_columns_names_them(tmp_path: Path, no_plots) -> None:
    from helpers import invoke

    rows = "".join(f"{i},{i % 3},{i * 2},{'ab'[i % 2]}\n" for i in range(40))
    (tmp_path / "t.csv").write_text("a,b,c,y\n" + rows)
    (tmp_path / "less.csv").write_text("a,c,d,y\n" + rows)
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: t\ninput: [3]\nlayers:\n  - dense: {units: 2, activation: softmax}\n"
        "train:\n  data: {source: csv, path: t.csv, target: y, val: 0.0, test: 0.25}\n"
        "  epochs: 1\n"
    )
    assert invoke("train", spec, "--out", tmp_path / "run").exit_code == 0
    result = invoke("evaluate", tmp_path / "run", "--data", tmp_path / "less.csv")
    assert result.exit_code == 2
    assert "less.csv: error: the CSV lacks column b that the model was trained on" in result.output
    assert "it has d instead" in result.output


# --- item 12: facts about a built-in data set are not notes -----------------------------------


def test_the_builtin_digits_say_their_range_in_the_source_not_a_note() -> None:
    needs_digits()
    from netspec.data.builtin import load_builtin

    digits = load_builtin("digits")
    assert digits.notes == () and "pixel values 0..16" in digits.source
    assert float(digits.x.max()) == 16.0


# --- item 13: a clone named netspec in the current folder (documented, not fixable) ---------


def test_a_clone_named_netspec_in_the_current_folder_fails_as_the_readme_says(
    tmp_path: Path,
) -> None:
    """Python imports the folder as a namespace package before the editable install's finder
    runs, so netspec's code cannot speak; the README says what happened and what to do."""
    import subprocess
    import sys

    from helpers import REPO

    (tmp_path / "netspec" / "netspec").mkdir(parents=True)  # the clone's layout, no __init__.py
    (tmp_path / "netspec" / "backends").mkdir()
    run = subprocess.run(
        [sys.executable, "-c", "import netspec; netspec.load_spec"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    said = "AttributeError: module 'netspec' has no attribute 'load_spec'"
    readme = " ".join((REPO / "README.md").read_text().split())
    if run.returncode == 0:  # a regular install (site-packages) is found first: no trap
        return
    assert said in run.stderr
    assert f"fails with `{said}`" in readme and "Run scripts from inside the clone" in readme


# --- item 14: pictures ---------------------------------------------------------------------


def test_the_iris_confusion_matrix_titles_fit(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from netspec.backends.training.plots import save_png
    from netspec.backends.training.report_plots import confusion_figure

    cm = np.array([[9, 1, 0], [1, 9, 0], [0, 10, 0]])
    fig = confusion_figure(cm, ["setosa", "versicolor", "virginica"], title="iris_dnn: test")
    save_png(fig, tmp_path / "confusion_matrix.png")  # drawn: titles have their extents
    assert all(inside(fig, ax.title) for ax in fig.axes)


def test_the_tune_history_has_whole_trial_ticks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    from types import SimpleNamespace

    import netspec.backends.training.plots as plots
    from netspec.backends.tune.report import plot

    drawn = []

    class Drawn(Exception):
        pass

    def keep(fig, path) -> None:
        drawn.append(fig)
        fig.savefig(tmp_path / "history.png")
        raise Drawn  # history.png only: the importance plot needs a real study

    monkeypatch.setattr(plots, "save_png", keep)
    rows = [{"state": "complete", "value": v, "number": i} for i, v in enumerate([0.5, 0.3])]
    plan = SimpleNamespace(direction="minimize", monitor="val_loss", study="s", folder=tmp_path)
    with pytest.raises(Drawn):
        plot(None, rows, plan)
    ticks = drawn[0].axes[0].get_xticks()
    assert len(ticks) and all(float(t).is_integer() for t in ticks)


def test_a_dollar_mae_in_a_history_title_has_no_four_decimals(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from netspec.backends.training.plots import history_figure, save_png

    history = [
        {"epoch": e, "loss": 1.0 / e, "mae": 9e4 / e, "val_mae": 9.5e4 / e} for e in (1, 2, 3)
    ]
    fig = history_figure(history, title="california_housing", test={"mae": 45123.4567, "loss": 0.3})
    save_png(fig, tmp_path / "history.png")
    title = fig.get_suptitle()
    assert "mae 45,123" in title and "45123.4567" not in title and "loss 0.3000" in title


def test_evaluate_of_diverged_weights_prints_strict_json(quickstart_copy: Path, no_plots) -> None:
    from helpers import invoke
    from safetensors.numpy import load_file, save_file

    path = quickstart_copy / "model.safetensors"
    weights = {k: np.full_like(v, np.nan) for k, v in load_file(str(path)).items()}
    save_file(weights, str(path))
    result = invoke("evaluate", quickstart_copy)
    assert result.exit_code == 0, result.output
    doc = strict_json(result.stdout)
    assert isinstance(doc, dict) and doc["loss"] is None


def test_sparse_integral_csv_labels_with_a_softmax_head_are_their_values(tmp_path: Path) -> None:
    # 25 distinct whole values: auto reads a regression target; the softmax head says classes.
    rows = [f"{i},{i % 4},{10 * (i % 25)}.0" for i in range(50)]
    (tmp_path / "t.csv").write_text("a,b,y\n" + "\n".join(rows) + "\n")
    p = prepared(tmp_path, csv_spec(features=2, units=25))
    assert p.task == "multiclass" and p.classes == tuple(str(10 * i) for i in range(25))


def test_a_test_folder_lacking_a_class_keeps_the_training_classes(tmp_path: Path) -> None:
    from netspec.errors import DataError

    for split, names in (("train", "abc"), ("test", "bc"), ("odd", "bz")):
        for name in names:
            value = 40 * "abcz".index(name)
            for i in range(4):
                folder = tmp_path / split / name
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((4, 4), value + i, np.uint8)).save(folder / f"{i}.png")
    spec = """\
name: f
input: [1, 4, 4]
layers:
  - flatten: {{}}
  - dense: {{units: 3, activation: softmax}}
train:
  data: {{source: folder, path: train, test_path: {test}, color: grayscale, val: 0.0}}
"""
    p = prepared(tmp_path, spec.format(test="test"))
    assert p.classes == ("a", "b", "c")
    assert p.test is not None and sorted(set(p.test.y.tolist())) == [1, 2]  # b and c, not a and b
    assert p.test.x[p.test.y == 1].min() == 40
    with pytest.raises(DataError, match=r"the test data has class z that the training data lacks"):
        prepared(tmp_path, spec.format(test="odd"))


def test_a_non_finite_model_output_is_a_failure_not_a_nan_score(tmp_path: Path) -> None:
    from netspec.backends.predict.inputs import Failed, Sample
    from netspec.backends.predict.model import ModelInfo
    from netspec.backends.predict.outputs import Interpreter

    info = ModelInfo(
        tmp_path / "m.onnx", "input", "tensor(float)", None, (2,), "out", (3,), (2,),
        task="multiclass", head="softmax", classes=("a", "b", "c"),
    )  # fmt: skip
    interpret = Interpreter(info)
    sample = Sample("row.csv:2", "row_2", np.zeros(2, np.float32))
    assert interpret.failed(sample, np.array([0.2, 0.3, 0.5])) is None
    bad = interpret.failed(sample, np.array([np.nan, 0.3, 0.5]))
    assert isinstance(bad, Failed) and "output for this input is NaN or infinite" in str(bad.error)
