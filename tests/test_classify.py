"""A classification run's report: classification_report.txt/.json, confusion_matrix.png,
mistakes.png and roc.png after training and from `netspec evaluate`, their sizes and contents."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import inside, invoke, make_trainer, tiny_spec
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from netspec.backends.training.report_plots import (
    confusion_figure,
    mistakes_figure,
    roc_figure,
)
from netspec.classreport import confusion, render_report

DIGITS = [str(i) for i in range(10)]


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def mistakes_size(wrong: int, title: str) -> tuple[int, int]:
    """mistakes.png's pixels for `wrong` mistakes (16 at most, 8 a row; 100 dpi) of short class
    names: 1.7 in a tile, and at least as wide as the figure's title (`title`: most confident
    mistakes) needs, ~0.11 in a character."""
    n = min(16, wrong)
    cols = min(8, n)
    rows = math.ceil(n / cols)
    heading = f"{title}: most confident mistakes"
    width = max(1.7 * cols + 0.3, 0.11 * len(heading) + 0.4)
    return round(100 * width), round(100 * (1.95 * rows + 0.7))


def test_training_leaves_the_report_of_its_test_split(quickstart_copy: Path) -> None:
    run = quickstart_copy
    report = json.loads((run / "classification_report.json").read_text())
    test = json.loads((run / "metrics.json").read_text())["test"]
    cm = np.asarray(report["confusion"])
    assert report["split"] == "test" and report["samples"] == 359 == cm.sum()
    assert [r["class"] for r in report["classes"]] == DIGITS
    assert [r["support"] for r in report["classes"]] == cm.sum(axis=1).tolist()
    assert report["accuracy"] == pytest.approx(test["accuracy"], abs=1e-9)
    assert report["macro"]["f1"] == pytest.approx(test["f1"], abs=1e-6)  # f1 is macro F1
    assert (run / "classification_report.txt").read_text() == render_report(report)
    assert png_size(run / "confusion_matrix.png") == (1520, 810)  # 10 classes, two panels
    wrong = int(cm.sum() - np.trace(cm))
    assert wrong > 0  # one epoch of training: mistakes to show
    assert png_size(run / "mistakes.png") == mistakes_size(wrong, "quickstart: test (359 samples)")
    assert not (run / "roc.png").exists()  # 10 classes: no ROC curve


def test_evaluate_writes_the_same_report_and_prints_the_table(
    quickstart_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    result = invoke("evaluate", quickstart_copy, "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)  # stdout stays one JSON object
    trained = json.loads((quickstart_copy / "classification_report.json").read_text())
    assert json.loads((out / "classification_report.json").read_text()) == trained
    assert got["report"] == trained
    assert render_report(trained) in result.stderr  # the per-class table, for people
    assert f"test report: accuracy {trained['accuracy']:.4f}" in result.stderr
    assert f"mistakes.png in {out})" in result.stderr
    assert png_size(out / "confusion_matrix.png") == (1520, 810)
    assert (out / "mistakes.png").read_bytes() == (quickstart_copy / "mistakes.png").read_bytes()


BINARY = tiny_spec(
    ("flatten", "dense: {units: 8, activation: relu}", "dense: {units: 1, activation: sigmoid}"),
    name="binimg",
    input="[1, 6, 6]",
    data="{source: arrays, path: binimg.npz, val: 0.2, test: 0.3}",
    preprocess=None,
    batch_size=16,
    seed=None,
    optimizer="{name: adam, lr: 0.01}",
)


def binary_data(tmp_path: Path, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, *shape)).astype(np.float32)
    y = (x.reshape(200, -1)[:, :4].mean(1) + 0.3 * rng.normal(size=200) > 0).astype(np.int64)
    np.savez(tmp_path / "binimg.npz", x=x, y=y)


def test_binary_images_get_a_roc_curve_at_the_predict_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import netspec.backends.training.plots

    monkeypatch.setattr(netspec.backends.training.plots, "plot_history", lambda *a, **k: None)
    binary_data(tmp_path, (1, 6, 6))
    t = make_trainer(tmp_path, BINARY)
    t.fit()
    report = json.loads((t.run_dir / "classification_report.json").read_text())
    # The confusion matrix is of `p >= 0.5`, the rule `netspec predict` labels with.
    p = t.probabilities(t.data.test)
    true = t.data.test.y
    assert p.shape == (len(true),) and report["samples"] == len(true) == 60
    assert report["confusion"] == confusion(true, (p >= 0.5).astype(int), 2).tolist()
    roc = report["roc"]
    assert roc["threshold"] == 0.5 and roc["thresholds"][0] is None  # +inf: nothing positive
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0, 0, 1, 1)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    assert roc["auc"] == pytest.approx(sklearn_metrics.roc_auc_score(true, p), abs=1e-9)
    assert png_size(t.run_dir / "roc.png") == (560, 540)
    assert png_size(t.run_dir / "confusion_matrix.png") == (780, 440)
    wrong = report["samples"] - np.trace(report["confusion"])
    assert png_size(t.run_dir / "mistakes.png") == mistakes_size(wrong, "binimg: test (60 samples)")
    assert any("test report: accuracy" in line and "roc.png" in line for line in t.logs)


def test_a_run_without_matplotlib_finishes_with_notes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # matplotlib is optional: absent, the run keeps its data and says what was not drawn.
    import sys

    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # every import of it now fails
    binary_data(tmp_path, (1, 6, 6))
    t = make_trainer(tmp_path, BINARY)
    t.fit()
    files = {p.name for p in t.run_dir.iterdir()}
    assert {"classification_report.json", "metrics.csv"} <= files
    assert not [name for name in files if name.endswith(".png")]
    assert "note: matplotlib is not installed; history.png was not drawn" in t.logs
    assert "note: matplotlib is not installed; the report's pictures were not drawn" in t.logs


def test_no_pictures_leaves_the_data_only(tmp_path: Path, no_plots: list[Path]) -> None:
    # `log: {pictures: false}`: the report's text and JSON, metrics.csv, and not one picture.
    binary_data(tmp_path, (1, 6, 6))
    t = make_trainer(tmp_path, BINARY, "train.log.pictures=false")
    t.fit()
    assert no_plots == []  # neither history.png nor a report picture was asked for
    files = {p.name for p in t.run_dir.iterdir()}
    assert {"classification_report.json", "classification_report.txt", "metrics.csv"} <= files
    assert not [name for name in files if name.endswith(".png")]
    assert any("test report: accuracy" in line for line in t.logs)


@pytest.mark.usefixtures("no_plots")
def test_tabular_data_get_no_mistakes_picture(tmp_path: Path, no_plots: list[Path]) -> None:
    binary_data(tmp_path, (6,))
    t = make_trainer(tmp_path, BINARY.replace("[1, 6, 6]", "[6]").replace("  - flatten\n", ""))
    t.fit()
    names = sorted(p.name for p in no_plots)
    assert names == ["confusion_matrix.png", "history.png", "roc.png"]
    assert (t.run_dir / "classification_report.json").is_file()
    # evaluate --data: a report of other data goes beside the run's, not over it.
    from netspec.backends.training.evaluate import evaluate_run

    result = evaluate_run(t.run_dir, data=tmp_path / "binimg.npz", device="cpu")
    folder = t.run_dir / "evaluate" / "binimg"
    report = json.loads((folder / "classification_report.json").read_text())
    assert report["samples"] == result["samples"] == 200 == sum(map(sum, report["confusion"]))
    assert report["split"] == str(tmp_path / "binimg.npz")
    assert result["report"]["roc_auc"] == report["roc"]["auc"]
    assert no_plots[-2:] == [folder / "confusion_matrix.png", folder / "roc.png"]


def test_confusion_figure_names_and_numbers_every_cell() -> None:
    cm = np.array([[5, 1, 0], [0, 4, 0], [2, 0, 0]])  # class "c": all wrong, never predicted
    fig = confusion_figure(cm, ["cat", "dog", "c"], title="t")
    counts, shares = fig.axes
    for ax in (counts, shares):
        assert [tick.get_text() for tick in ax.get_xticklabels()] == ["cat", "dog", "c"]
        assert [tick.get_text() for tick in ax.get_yticklabels()] == ["cat", "dog", "c"]
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert [t.get_text() for t in counts.texts] == [str(v) for v in cm.ravel()]
    # Rows as shares: 5/6, 1/6; 4/4; 2/2 (empty cells left blank).
    assert [t.get_text() for t in shares.texts if t.get_text()] == ["83%", "17%", "100%", "100%"]


def test_mistakes_figure_titles_and_no_mistakes() -> None:
    images = np.random.default_rng(0).integers(0, 255, (2, 3, 8, 8), dtype=np.uint8)
    fig = mistakes_figure(images, [(0, 1, 0.93), (1, 0, 0.61)], ["cat", "dog"], title="t")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["true: cat\npred: dog (93%)", "true: dog\npred: cat (61%)"]
    assert fig.axes[0].get_images()[0].get_array().shape == (8, 8, 3)  # RGB shown as RGB
    assert fig.get_suptitle() == "t: most confident mistakes"
    bands = np.random.default_rng(0).normal(size=(1, 13, 8, 8))
    fig = mistakes_figure(bands, [(0, 1, 0.5)], ["cat", "dog"], title="t", rgb=[4, 3, 2])
    assert fig.get_suptitle() == "t: most confident mistakes (input bands 4, 3, 2 of 13 as RGB)"
    empty = mistakes_figure(images[:0], [], ["cat", "dog"], title="t")
    assert empty.texts[-1].get_text() == "no wrong predictions"


@pytest.mark.parametrize(
    ("n", "classes"),
    [(1, ["cat", "dog"]), (9, ["an_airplane_with_a_long_name", "automobile"])],
    ids=["one, under a long figure title", "two rows of long class names"],
)
def test_mistakes_figure_titles_fit_and_keep_apart(n: int, classes: list[str]) -> None:
    """The grid is laid out by fixed margins (drawn once, not twice as a constrained layout
    is): the figure's title and every tile's title lie inside the figure, no two overlap.
    One mistake under a long figure title cut that title at both ends before."""
    images = np.random.default_rng(0).random((n, 1, 8, 8))
    fig = mistakes_figure(images, [(0, 1, 0.93)] * n, classes, title="quickstart: test")
    assert fig.get_layout_engine() is None
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = [fig._suptitle, *(ax.title for ax in fig.axes)]
    assert all(inside(fig, title) for title in titles)
    boxes = [title.get_window_extent(renderer) for title in titles]
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1 :])
    # Nor does a title run into the picture under it.
    for ax in fig.axes:
        assert ax.title.get_window_extent(renderer).y0 >= ax.get_window_extent(renderer).y1 - 1


def test_roc_figure_marks_the_threshold_used() -> None:
    from netspec.backends.training.classify import class_report_of

    true = np.array([0, 0, 1, 1, 1])
    report, _ = class_report_of(true, np.array([0.2, 0.6, 0.4, 0.7, 0.9]), ["no", "yes"], split="t")
    fig = roc_figure(report, ["no", "yes"], title="t")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels[0] == f"ROC curve (AUC {report['roc']['auc']:.3f})"
    # At 0.5: 1 of 2 negatives called yes (FPR 0.5), 2 of 3 positives found (TPR 0.67).
    assert "threshold 0.5 (used): FPR 0.50, TPR 0.67" in labels
    assert fig.axes[0].get_ylabel() == "true positive rate (recall of yes)"
