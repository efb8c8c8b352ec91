"""Tests for netspec.backends.plots: valid PNGs, one subplot per metric family, atomic writes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("matplotlib")

from netspec.backends.plots import history_figure, metric_families, plot_history

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
    plot_history(history(3), path, title="a")
    first = path.read_bytes()
    plot_history(history(5), path, title="b")
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
