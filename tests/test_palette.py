"""Tests for netspec.palette: predictions.png and predicted mask PNGs colour each class alike."""

from __future__ import annotations

import numpy as np
import pytest

from netspec.palette import IGNORED, class_colors, class_label, mask_palette


def test_the_palette_is_matplotlibs_tab10_and_tab20() -> None:
    colormaps = pytest.importorskip("matplotlib").colormaps
    for name, k in (("tab10", 10), ("tab20", 20)):
        expected = np.round(np.asarray(colormaps[name].colors) * 255).astype(np.uint8)
        np.testing.assert_array_equal(class_colors(k), expected)
    np.testing.assert_array_equal(class_colors(4), class_colors(10)[:4])


def test_many_classes_get_distinct_colours_and_one_class_two() -> None:
    colors = class_colors(40)
    assert colors.shape == (40, 3) and len({tuple(c) for c in colors}) == 40
    assert tuple(IGNORED) not in {tuple(c) for c in colors}
    assert class_colors(1).shape == (2, 3)  # a sigmoid mask: background and foreground
    with pytest.raises(ValueError, match="at least one class"):
        class_colors(0)


def test_mask_palette_entries_are_the_class_colours() -> None:
    palette = mask_palette(6)
    assert len(palette) == 768
    np.testing.assert_array_equal(np.reshape(palette[:18], (6, 3)), class_colors(6))
    assert set(palette[18:]) == {0}


def test_legend_labels_say_raw_mask_values() -> None:
    assert class_label("8") == "mask value 8"
    assert class_label("-1") == "mask value -1"
    assert class_label("water") == "water"


def test_predictions_png_uses_the_mask_palette() -> None:
    """The true and predicted mask columns of predictions.png show class c in the colour that
    `netspec predict` writes into its mask PNGs for class c; the legend names the classes."""
    pytest.importorskip("matplotlib")
    from netspec.backends.training.seg_plots import predictions_figure

    k = 6
    true = np.repeat(np.arange(k), 4)[None, None, :].repeat(8, axis=1)  # (1, 8, 24): 6 stripes
    images = np.random.default_rng(0).normal(size=(1, 13, 8, 24))
    names = ["0", "1", "2", "3", "4", "8"]  # raw mask values, as eo-learn's LULC masks give them
    fig = predictions_figure(images, true, true, classes=names, title="t")
    palette = np.reshape(mask_palette(k), (256, 3))[:k] / 255
    for column in (1, 2):  # true mask, predicted mask
        shown = fig.axes[column].get_images()[0].get_array()
        for c in range(k):
            np.testing.assert_allclose(shown[true[0] == c], np.broadcast_to(palette[c], (32, 3)))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:k] == [f"mask value {n}" for n in names]
    assert fig.axes[0].get_title() == "input\nbands 1, 2, 3 of 13 as RGB"
