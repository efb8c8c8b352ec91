"""Tests for netspec.backends.training.plots: valid PNGs, one subplot per metric family, atomic writes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("matplotlib")

from netspec.backends.training.plots import history_figure, metric_families, plot_history
from netspec.backends.training.seg_plots import IGNORED_COLOR, plot_predictions, predictions_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def history(epochs: int, *, val: bool = True) -> list[dict[str, float]]:
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "loss": 1 / e, "accuracy": 1 - 0.5 / e, "lr": 1e-3 * 0.5**e}
        if val:
            row |= {"val_loss": 1.2 / e, "val_accuracy": 1 - 0.6 / e, "iou": 0.5, "val_iou": 0.4}
        rows.append(row)
    return rows


def check_png(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
    assert 300 <= w <= 3000 and 200 <= h <= 3000
    return w, h


@pytest.mark.parametrize("epochs", [1, 20])
def test_writes_png(tmp_path: Path, epochs: int) -> None:
    path = tmp_path / "curves.png"
    plot_history(history(epochs), path, title="mnist_cnn")
    check_png(path)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temp file left behind


def test_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "history.png"  # parent folders are created
    # Loss only, one panel: the file is under test here, not the figure (a fourth of the drawing).
    plot_history([{"loss": 1.0}, {"loss": 0.5}], path, title="a")
    first = path.read_bytes()
    plot_history([{"loss": 1.0}, {"loss": 0.4}, {"loss": 0.2}], path, title="b")
    assert path.read_bytes() != first
    check_png(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["history.png"]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    def boom(*_: object, **__: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(OSError, match="disk full"):
        plot_history(history(2), tmp_path / "h.png", title="x")
    assert list(tmp_path.iterdir()) == []


def test_one_subplot_per_family() -> None:
    h = history(6)
    assert metric_families(h) == ["loss", "accuracy", "iou", "lr"]
    fig = history_figure(h, title="t")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy", "iou", "learning rate"]
    loss_ax = fig.axes[0]
    assert [line.get_label() for line in loss_ax.get_lines()] == ["training", "validation"]
    assert list(loss_ax.get_lines()[1].get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert loss_ax.get_legend() is not None
    assert fig.axes[3].get_yscale() == "log"  # lr spans 32x: log scale
    assert fig.get_suptitle() == "t"


def test_without_validation_keys(tmp_path: Path) -> None:
    h = history(3, val=False)
    fig = history_figure(h, title="no val")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["training"]
    plot_history(h, tmp_path / "h.png", title="no val")
    check_png(tmp_path / "h.png")


def test_validation_only_in_some_epochs_and_nan() -> None:
    h = [
        {"epoch": 1, "loss": 1.0},
        {"epoch": 2, "loss": math.nan, "val_loss": 0.5},
        {"epoch": 3, "loss": 0.3},
    ]
    fig = history_figure(h, title="gaps")
    train, val = fig.axes[0].get_lines()
    assert list(val.get_xdata()) == [2]
    assert list(train.get_xdata()) == [1, 2, 3]
    assert math.isnan(train.get_ydata()[1])


def test_epoch_defaults_to_row_number() -> None:
    fig = history_figure([{"loss": 2.0}, {"loss": 1.0}], title="t")
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [1, 2]


def test_empty_history_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        plot_history([], tmp_path / "h.png", title="t")
    assert list(tmp_path.iterdir()) == []


def test_pyplot_state_untouched() -> None:
    was_imported = "matplotlib.pyplot" in sys.modules
    history_figure(history(2), title="t")
    assert ("matplotlib.pyplot" in sys.modules) == was_imported


def test_single_epoch_has_integer_ticks() -> None:
    fig = history_figure(history(1), title="t")
    for ax in fig.axes:
        assert list(ax.get_xticks()) == [1.0]


# --- plot_predictions: segmentation grids -------------------------------------------------------

CLASSES = ["background", "water", "forest"]


def seg_tiles(n: int, bands: int, size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw-looking tiles (uint16-like counts) with a square of class 1, a stripe of class 2."""
    rng = np.random.default_rng(bands)
    true = np.zeros((n, size, size), dtype=np.int64)
    true[:, 4:14, 4:14] = 1
    true[:, 20:26, :] = 2
    images = rng.normal(1000, 50, size=(n, bands, size, size)) + 300 * true[:, None]
    pred = true.copy()
    pred[:, 4:14, 4:9] = 0  # half the square missed
    return images.astype(np.float32), true, pred


@pytest.mark.parametrize("bands", [1, 3, 8])
def test_predictions_png(tmp_path: Path, bands: int) -> None:
    images, true, pred = seg_tiles(3, bands)
    path = tmp_path / "preds" / "grid.png"  # parent folders are created
    plot_predictions(images, true, pred, path, classes=CLASSES, title=f"{bands} bands")
    w, h = check_png(path)
    assert w > h / 2  # 4 columns of 3 rows: roughly square, neither a strip nor a column
    assert 10_000 < path.stat().st_size < 2_000_000
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temp file left behind


@pytest.mark.parametrize(
    ("bands", "ndim", "named"),
    [
        (1, 2, "grey"),
        (2, 2, "band 1 of 2, grey"),
        (3, 3, "RGB"),
        (8, 3, "bands 1, 2, 3 of 8 as RGB"),
    ],
)
def test_predictions_input_display(bands: int, ndim: int, named: str) -> None:
    images, true, pred = seg_tiles(2, bands)
    fig = predictions_figure(images, true, pred, classes=CLASSES, title="t")
    assert len(fig.axes) == 2 * 4
    shown = fig.axes[0].get_images()[0].get_array()
    assert shown.ndim == ndim  # grey for 1 (and 2) bands, RGB of the first 3 otherwise
    assert shown.min() >= 0 and shown.max() <= 1  # stretched from counts around 1000
    assert shown.max() - shown.min() > 0.5
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles[:2] == [f"input\n{named}", "true mask"]  # the bands shown are named
    assert titles[2].startswith("predicted mask\nIoU ")
    assert titles[3].startswith("errors\n")
    assert fig.get_suptitle() == "t"


def test_predictions_iou_and_colours() -> None:
    images, true, pred = seg_tiles(2, 3)
    pred[1] = true[1]  # the second row is perfect
    fig = predictions_figure(images, true, pred, classes=CLASSES, title="t")
    # Row 0: class 1 IoU 50/100, class 0 and 2 as computed below; row 1: 1.0.
    t, p = true[0], pred[0]
    ious = [((t == c) & (p == c)).sum() / ((t == c) | (p == c)).sum() for c in range(3)]
    assert fig.axes[2].get_title().endswith(f"IoU {np.mean(ious):.2f}")
    assert fig.axes[6].get_title() == "IoU 1.00"
    true_img = fig.axes[1].get_images()[0].get_array()
    pred_img = fig.axes[2].get_images()[0].get_array()
    same = true[0] == pred[0]
    assert np.array_equal(true_img[same], pred_img[same])  # one colour per class, both columns
    assert len({tuple(c) for c in true_img.reshape(-1, 3)}) == 3
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [*CLASSES, "wrong (errors)"]


def test_predictions_ignored_pixels(tmp_path: Path) -> None:
    images, true, pred = seg_tiles(2, 8)
    true[:, :, :9] = -1  # the missed half of the square is ignored: no error left
    fig = predictions_figure(images, true, pred, classes=CLASSES, title="t")
    assert fig.axes[2].get_title().endswith("IoU 1.00")
    true_img = fig.axes[1].get_images()[0].get_array()
    assert np.allclose(true_img[0, 0], IGNORED_COLOR)
    assert "ignored" in [t.get_text() for t in fig.legends[0].get_texts()]
    true[1] = -1  # a tile with nothing to score
    fig = predictions_figure(images, true, pred, classes=CLASSES, title="t")
    assert fig.axes[6].get_title() == "IoU n/a"
    plot_predictions(images, true, pred, tmp_path / "p.png", classes=CLASSES, title="t")
    check_png(tmp_path / "p.png")


def test_predictions_bad_input(tmp_path: Path) -> None:
    images, true, pred = seg_tiles(2, 3)
    path = tmp_path / "p.png"
    bad = [
        (images[0], true, pred, "images must be"),  # no batch axis
        (images, true[:1], pred, "true must be"),  # fewer masks than tiles
        (images, true, pred[:, :16], "pred must be"),  # another size
        (images, true.astype(np.float32), pred, "integer"),
        (images, true, pred + 2, "values from"),  # class 4 of 3
        (images, true - 2, pred, "values from"),  # -2 is neither a class nor ignored
        (images[:0], true[:0], pred[:0], "no tiles"),
    ]
    for args in bad:
        with pytest.raises(ValueError, match=args[3]):
            plot_predictions(*args[:3], path, classes=CLASSES, title="t")
    with pytest.raises(ValueError, match="class name"):
        plot_predictions(images, true, pred, path, classes=[], title="t")
    assert list(tmp_path.iterdir()) == []


def test_predictions_many_classes_and_wide_tiles() -> None:
    rng = np.random.default_rng(0)
    true = rng.integers(0, 25, size=(1, 16, 48))
    images = rng.normal(size=(1, 4, 16, 48))
    fig = predictions_figure(images, true, true, classes=[f"c{i}" for i in range(25)], title="t")
    assert fig.axes[2].get_title().endswith("IoU 1.00")
    assert len(fig.legends[0].get_texts()) == 26  # 25 classes and the errors
    w, h = fig.get_size_inches()
    assert w > 2 * h  # wide tiles, one row: a wide figure


def test_predictions_leave_pyplot_alone_and_write_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    was_imported = "matplotlib.pyplot" in sys.modules
    images, true, pred = seg_tiles(1, 3)
    predictions_figure(images, true, pred, classes=CLASSES, title="t")
    assert ("matplotlib.pyplot" in sys.modules) == was_imported

    def boom(*_: object, **__: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(OSError, match="disk full"):
        plot_predictions(images, true, pred, tmp_path / "p.png", classes=CLASSES, title="t")
    assert list(tmp_path.iterdir()) == []


def test_constant_lr_and_machine_timings_get_no_panel() -> None:
    h = [
        {**row, "lr": 0.002, "samples_per_s": 900.0 + e, "time_s": 1.5 * e}
        for e, row in enumerate(history(4), start=1)
    ]
    assert metric_families(h) == ["loss", "accuracy", "iou"]  # timings stay in metrics.csv
    h[2]["lr"] = 0.001  # a schedule: the panel comes back
    assert metric_families(h) == ["loss", "accuracy", "iou", "lr"]


def test_history_names_axes_marks_the_best_epoch_and_the_test_score(tmp_path: Path) -> None:
    h = [{**row, "lr": 0.002} for row in history(6)]
    fig = history_figure(
        h,
        title="run",
        loss_name="cross-entropy",
        best_epoch=4,
        monitor="val_accuracy",
        test={"loss": 0.25, "accuracy": 0.9123},
    )
    assert [ax.get_title() for ax in fig.axes] == ["loss (cross-entropy)", "accuracy", "iou"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["cross-entropy", "accuracy", "iou"]
    assert {ax.get_xlabel() for ax in fig.axes} == {"epoch"}
    assert fig.get_suptitle() == "run\ntest: loss 0.2500, accuracy 0.9123"
    for ax in fig.axes:  # the best epoch: a dashed vertical line in every panel
        (best,) = [line for line in ax.get_lines() if line.get_label() == "best epoch"]
        assert list(best.get_xdata()) == [4, 4]
    lines = {line.get_label(): line for line in fig.axes[1].get_lines()}
    star = lines["best val_accuracy 0.8500 (epoch 4)"]  # 1 - 0.6 / 4, on the monitored curve
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([4], [pytest.approx(0.85)])
    assert list(lines["test 0.9123"].get_ydata()) == [0.9123, 0.9123]
    assert "test 0.2500" in [line.get_label() for line in fig.axes[0].get_lines()]
    assert not any("test" in line.get_label() for line in fig.axes[2].get_lines())  # no test iou
    # Without a validation split, callbacks monitor val_loss's fallback, loss.
    fig = history_figure(history(3, val=False), title="t", best_epoch=3, monitor="val_loss")
    assert "best loss 0.3333 (epoch 3)" in [line.get_label() for line in fig.axes[0].get_lines()]
    plot_history(h, tmp_path / "h.png", title="run", best_epoch=4, monitor="val_accuracy")
    assert check_png(tmp_path / "h.png") == (1560, 440)  # 3 panels of 5.2 x 3.6 in, a row


def test_predictions_show_the_rgb_bands_of_the_spec() -> None:
    images, true, pred = seg_tiles(2, 13)
    images[:, 3] = 0.0
    images[:, 3, :16] = 1.0  # band 4 (red, for Sentinel-2 true colour): the top half bright
    fig = predictions_figure(images, true, pred, classes=CLASSES, title="t", rgb=[4, 3, 2])
    assert fig.axes[0].get_title() == "input\nbands 4, 3, 2 of 13 as RGB"
    red = fig.axes[0].get_images()[0].get_array()[..., 0]
    assert (red[:16] == 1).all() and (red[16:] == 0).all()
