"""Tests for segmentation data: mask_indices, mask folders, mask arrays and generated shapes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import SHARED_DATA as DATA
from helpers import needs_data
from PIL import Image

from netspec.data import (
    SHAPE_CLASSES,
    ArrayData,
    load_arrays,
    load_mask_folder,
    make_shapes,
    mask_indices,
)
from netspec.data.shape_scenes import class_signatures
from netspec.data.stream import is_streamed
from netspec.errors import DataError

# --- mask_indices: accepted forms ----------------------------------------------------------


def test_binary_0_255_masks_are_background_foreground() -> None:
    y = np.array([[[0, 255], [255, 0]], [[0, 0], [0, 255]]], dtype=np.uint8)
    index, names, notes = mask_indices(y, hw=(2, 2))
    assert index.dtype == np.int64 and index.shape == (2, 2, 2)
    assert index.tolist() == [[[0, 1], [1, 0]], [[0, 0], [0, 1]]]
    assert names == ("background", "foreground")
    assert notes == ("mask values 0 and 255 read as classes 0 and 1",)


def test_single_channel_axis_is_squeezed() -> None:
    y = np.array([[[[0, 2], [1, 0]]]], dtype=np.int32)  # (1, 1, 2, 2)
    index, names, _ = mask_indices(y, hw=(2, 2))
    assert index.shape == (1, 2, 2) and index.tolist() == [[[0, 2], [1, 0]]]
    assert names == ("0", "1", "2")


def test_bool_masks_and_0_1_masks_with_names() -> None:
    y = np.array([[[True, False], [False, False]]])
    index, names, notes = mask_indices(y)
    assert index.tolist() == [[[1, 0], [0, 0]]] and names == ("background", "foreground")
    assert notes == ()
    index, names, _ = mask_indices(y.astype(np.uint8), classes=["sea", "land"])
    assert index.tolist() == [[[1, 0], [0, 0]]] and names == ("sea", "land")
    _, names, _ = mask_indices(y.astype(np.uint8))
    assert names == ("0", "1")


def test_class_index_masks_note_absent_classes() -> None:
    y = np.array([[[0, 3], [1, 3]]], dtype=np.uint16)
    index, names, notes = mask_indices(y)
    assert index.tolist() == [[[0, 3], [1, 3]]] and names == ("0", "1", "2", "3")
    assert notes == (
        "class indices 2 never occur in the masks (mask_values maps sparse values to classes)",
    )


def test_one_hot_masks_of_each_dtype() -> None:
    hot = np.zeros((2, 3, 2, 2), dtype=np.uint8)
    hot[0, 0, 0, 0] = hot[0, 1, 0, 1] = hot[0, 2, 1, 0] = hot[0, 2, 1, 1] = 1
    hot[1, 1] = 1
    expected = [[[0, 1], [2, 2]], [[1, 1], [1, 1]]]
    for y in (hot, hot.astype(bool), hot.astype(np.float32)):
        index, names, notes = mask_indices(y, hw=(2, 2), classes=["a", "b", "c"])
        assert index.tolist() == expected and names == ("a", "b", "c") and notes == ()
    hot[0, :, 0, 0] = 0  # one pixel with no class set
    index, names, notes = mask_indices(hot)
    assert index[0, 0, 0] == -1 and index[0, 0, 1] == 1 and names == ("0", "1", "2")
    assert notes == ("1 mask pixels have no class channel set; they are ignored",)


def test_mask_values_map_values_to_classes() -> None:
    y = np.array([[[10, 30], [20, 99]]], dtype=np.int32)
    index, names, notes = mask_indices(y, mask_values=[10, 20, 30], ignore_value=99)
    assert index.tolist() == [[[0, 2], [1, -1]]] and names == ("10", "20", "30")
    assert notes == ("1 mask pixels equal ignore_value 99; they are ignored",)
    _, names, _ = mask_indices(y, mask_values=[10, 20, 30, 99], classes=["a", "b", "c", "d"])
    assert names == ("a", "b", "c", "d")


def test_ignore_value_with_class_indices_and_negative_values() -> None:
    y = np.array([[[0, 1], [2, 255]]], dtype=np.uint8)
    index, names, _ = mask_indices(y, ignore_value=255)
    assert index.tolist() == [[[0, 1], [2, -1]]] and names == ("0", "1", "2")
    y = np.array([[[-1, 0], [1, 1]]], dtype=np.int16)
    index, names, _ = mask_indices(y, ignore_value=-1)
    assert index.tolist() == [[[-1, 0], [1, 1]]] and names == ("0", "1")


def test_widely_spread_mask_values() -> None:
    y = np.array([[[0, 100_000], [100_000, 7]]], dtype=np.int64)
    index, _, _ = mask_indices(y, mask_values=[0, 100_000], ignore_value=7)
    assert index.tolist() == [[[0, 1], [1, -1]]]


# --- mask_indices: errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "kwargs", "message"),
    [
        (
            np.zeros((1, 4, 5), np.uint8),
            {"hw": (4, 4)},
            r"masks are 4x5 \(height x width\) but the images are 4x4",
        ),
        (np.zeros((1, 2, 4, 5), np.uint8), {"hw": (4, 4)}, r"masks are 4x5"),
        (
            np.zeros((1, 2, 2), np.uint8),
            {"classes": ["only"]},
            r"classes has 1 name \(only\); expected at least 2",
        ),
        (np.zeros((1, 2, 2), np.uint8), {"classes": ["a", "a"]}, r"classes names a more than once"),
        (
            np.array([[[0, 3]]]),
            {"classes": ["a", "b", "c"]},
            r"masks hold class index 3 but "
            r"classes names only 3 \(a, b, c\); expected indices 0\.\.2",
        ),
        (np.zeros((1, 2, 2), np.float32), {}, r"masks have dtype float32; expected integer"),
        (np.array([[[-2, 0]]]), {}, r"masks hold the negative value -2"),
        (np.zeros((1, 2, 2), np.uint8), {}, r"masks hold only the value 0; expected at least two"),
        (np.array([[[0, 5000]]]), {}, r"masks hold the value 5000; read as class indices"),
        (np.zeros((2, 2), np.uint8), {}, r"masks have shape \(2, 2\); expected \(N, H, W\)"),
        (np.full((1, 2, 2), 9), {"ignore_value": 9}, r"every mask pixel equals ignore_value 9"),
        (
            np.array([[[10, 20], [40, 50]]]),
            {"mask_values": [10, 20]},
            r"masks hold values 40, 50 not in mask_values \(10, 20\); found values 10, 20, 40, 50",
        ),
        (
            np.array([[[10, 20]]]),
            {"mask_values": [10, 20], "classes": ["a", "b", "c"]},
            r"classes has 3 names \(a, b, c\) but mask_values has 2 values",
        ),
        (np.array([[[10, 20]]]), {"mask_values": [10, 10]}, r"mask_values lists 10 more than once"),
        (
            np.ones((1, 2, 2, 2), np.uint8),
            {},
            r"4 mask pixels have two or more class channels set "
            r"\(first: sample 0, row 0, column 0\)",
        ),
        (
            np.full((1, 2, 2, 2), 0.5, np.float32),
            {},
            r"holds 8 values other than 0 and 1 \(e\.g\. 0\.5\)",
        ),
        (
            np.eye(2, dtype=np.uint8).reshape(1, 2, 1, 2),
            {"classes": ["a", "b", "c"]},
            r"classes has 3 names \(a, b, c\) but y has 2 class channels",
        ),
        (
            np.eye(2, dtype=np.uint8).reshape(1, 2, 1, 2),
            {"mask_values": [0, 1]},
            r"mask_values and ignore_value apply only to masks of class values",
        ),
    ],
)
def test_mask_indices_errors(y: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        mask_indices(y, **kwargs)


def test_mask_error_names_the_file() -> None:
    with pytest.raises(DataError, match=r"labels\.npz.*negative value"):
        mask_indices(np.array([[[-1, 0]]]), where="labels.npz")


# --- mask folders --------------------------------------------------------------------------


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _palette_png(path: Path, indices: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.frombytes(
        "P", (indices.shape[1], indices.shape[0]), indices.astype(np.uint8).tobytes()
    )
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (3 * 253))
    im.save(path)


@pytest.mark.parametrize("stream", [False, True], ids=["ram", "streamed"])
def test_png_folder_in_natural_order(tmp_path: Path, stream: bool) -> None:
    for stem in (10, 2, 1):
        _png(tmp_path / "images" / f"{stem}.png", np.full((4, 6), stem, np.uint8))
        mask = np.zeros((4, 6), np.uint8)
        mask[:, : stem % 6] = 255
        _png(tmp_path / "masks" / f"{stem}.PNG", mask)
    (tmp_path / "masks" / "README.txt").write_text("not a mask")
    (tmp_path / "images" / ".DS_Store").write_bytes(b"junk")
    data = load_mask_folder(tmp_path, stream=stream)
    # Streamed: scenes and masks decoded (the masks class-mapped) only when read.
    assert is_streamed(data.x) == is_streamed(data.y) == stream
    assert isinstance(data, ArrayData) and data.is_segmentation and data.is_classification
    assert data.x.dtype == np.uint8 and data.x.shape == (3, 1, 4, 6)
    assert np.asarray(data.x)[:, 0, 0, 0].tolist() == [1, 2, 10]  # 2 before 10
    assert data.y.dtype == np.int64 and data.y.shape == (3, 4, 6)
    y = np.asarray(data.y)
    assert y[:, 0].tolist() == [[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]]
    assert data.classes == ("background", "foreground")
    assert data.source == f"mask_folder {tmp_path}"
    assert "skipped 1 files that are not images: masks/README.txt" in data.notes


def test_rgb_images_with_palette_masks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (2, 5, 7))
    for i in range(2):
        _png(tmp_path / "img" / f"s{i}.png", rgb[i])
        _palette_png(tmp_path / "lab" / f"s{i}.png", labels[i])
    data = load_mask_folder(tmp_path, images="img", masks="lab", classes=["sand", "water", "rock"])
    assert data.x.shape == (2, 3, 5, 7) and np.array_equal(data.x, rgb.transpose(0, 3, 1, 2))
    assert np.array_equal(data.y, labels) and data.classes == ("sand", "water", "rock")
    gray = load_mask_folder(tmp_path, images="img", masks="lab", color="grayscale")
    assert gray.x.shape == (2, 1, 5, 7) and gray.classes == ("0", "1", "2")


def test_rgba_images_drop_alpha_and_gray_becomes_rgb(tmp_path: Path) -> None:
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    _png(tmp_path / "images" / "a.png", rgba)
    _png(tmp_path / "masks" / "a.png", np.array([[0, 255, 0]] * 3, np.uint8))
    data = load_mask_folder(tmp_path)
    assert data.x.shape == (1, 3, 3, 3) and data.x[0, 0].min() == 200
    assert "dropped the alpha channel of 1 image" in data.notes
    _png(tmp_path / "gray" / "images" / "a.png", np.full((3, 3), 7, np.uint8))
    shutil.copytree(tmp_path / "masks", tmp_path / "gray" / "masks")
    rgb = load_mask_folder(tmp_path / "gray", color="rgb")
    assert rgb.x.shape == (1, 3, 3, 3) and (rgb.x == 7).all()


def test_multiband_uint16_tiff_scenes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    chw = rng.integers(0, 5000, (2, 4, 8, 9), dtype=np.uint16)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", chw[0], photometric="minisblack")  # (C, H, W)
    tifffile.imwrite(  # (H, W, C)
        tmp_path / "images" / "b.TIFF",
        chw[1].transpose(1, 2, 0),
        photometric="minisblack",
        planarconfig="contig",
    )
    labels = rng.integers(0, 2, (2, 8, 9)).astype(np.uint8) * 40
    tifffile.imwrite(tmp_path / "masks" / "a.tif", labels[0])
    _png(tmp_path / "masks" / "b.png", labels[1])
    data = load_mask_folder(tmp_path, mask_values=[0, 40], classes=["bg", "roof"])
    assert data.x.dtype == np.float32 and data.x.shape == (2, 4, 8, 9)
    assert np.array_equal(data.x, chw.astype(np.float32))  # values unchanged
    assert np.array_equal(data.y, labels // 40) and data.classes == ("bg", "roof")


def test_sixteen_bit_png_masks(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png", np.zeros((2, 3), np.uint8))
    _png(tmp_path / "masks" / "a.png", np.array([[0, 1000, 2000]] * 2, np.uint16))
    with Image.open(tmp_path / "masks" / "a.png") as im:
        assert im.mode.startswith("I")
    data = load_mask_folder(tmp_path, mask_values=[0, 1000, 2000])
    assert data.y[0].tolist() == [[0, 1, 2]] * 2 and data.classes == ("0", "1000", "2000")


def _pair(
    root: Path, stem: str, hw: tuple[int, int] = (4, 4), mask_hw: tuple[int, int] | None = None
) -> None:
    _png(root / "images" / f"{stem}.png", np.zeros(hw, np.uint8))
    _png(root / "masks" / f"{stem}.png", np.zeros(mask_hw or hw, np.uint8))


def test_mask_folder_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"mask folder not found"):
        load_mask_folder(tmp_path / "absent")
    (tmp_path / "images").mkdir()
    (tmp_path / "mask").mkdir()
    with pytest.raises(
        DataError,
        match=r"no 'masks' subfolder \(did you mean 'mask'\?\); "
        r"found subfolders images, mask",
    ):
        load_mask_folder(tmp_path)
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match=r"no image files in images/"):
        load_mask_folder(tmp_path)
    for i in range(7):
        _png(tmp_path / "images" / f"{i}.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(
        DataError,
        match=r"7 images without a mask in masks/: 0\.png, 1\.png, "
        r"2\.png, 3\.png, 4\.png and 2 more",
    ):
        load_mask_folder(tmp_path)
    for i in range(8):
        _png(tmp_path / "masks" / f"{i}.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match=r"1 mask without an image in images/: 7\.png"):
        load_mask_folder(tmp_path)
    _png(tmp_path / "images" / "7.jpg", np.zeros((2, 2), np.uint8))
    _png(tmp_path / "images" / "7.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match=r"two files with the stem '7': 7\.jpg and 7\.png"):
        load_mask_folder(tmp_path)
    with pytest.raises(DataError, match=r"unknown color 'rgba'"):
        load_mask_folder(tmp_path, color="rgba")  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow, reading the broken TIFF
def test_mask_folder_unreadable_files(tmp_path: Path) -> None:
    _pair(tmp_path, "a")
    (tmp_path / "images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    _png(tmp_path / "masks" / "b.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"b\.png: error: cannot read image \("):
        load_mask_folder(tmp_path)
    (tmp_path / "images" / "b.png").unlink()
    (tmp_path / "images" / "b.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(DataError, match=r"b\.tif: error: cannot read image"):
        load_mask_folder(tmp_path)
    _png(tmp_path / "images" / "b.tif", np.zeros((4, 4), np.uint8))
    (tmp_path / "masks" / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"masks/b\.png: error: cannot read mask"):
        load_mask_folder(tmp_path)


def test_mask_folder_size_and_content_errors(tmp_path: Path) -> None:
    _pair(tmp_path / "sizes", "a", (4, 4))
    _pair(tmp_path / "sizes", "b", (4, 6))
    with pytest.raises(
        DataError,
        match=r"scene images/b\.png is 6x4 but images/a\.png is 4x4 "
        r"\(width x height\)",
    ) as err:
        load_mask_folder(tmp_path / "sizes")
    assert "crop or resize them to one size first" in str(err.value)
    _pair(tmp_path / "mismatch", "a", (4, 4), mask_hw=(4, 5))
    with pytest.raises(DataError, match=r"mask is 5x4 but its image images/a\.png is 4x4"):
        load_mask_folder(tmp_path / "mismatch")
    _png(tmp_path / "rgbmask" / "images" / "a.png", np.zeros((2, 2), np.uint8))
    _png(tmp_path / "rgbmask" / "masks" / "a.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DataError, match=r"mask is a RGB image; expected a single-channel mask"):
        load_mask_folder(tmp_path / "rgbmask")
    (tmp_path / "nan" / "images").mkdir(parents=True)
    tifffile.imwrite(
        tmp_path / "nan" / "images" / "a.tif", np.array([[np.nan, 1.0]] * 2, np.float32)
    )
    _png(tmp_path / "nan" / "masks" / "a.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match=r"image holds 2 NaN or infinite values"):
        load_mask_folder(tmp_path / "nan")
    (tmp_path / "cube" / "images").mkdir(parents=True)
    tifffile.imwrite(tmp_path / "cube" / "images" / "a.tif", np.zeros((5, 5, 5), np.uint16))
    _png(tmp_path / "cube" / "masks" / "a.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(DataError, match=r"TIFF image has shape \(5, 5, 5\)"):
        load_mask_folder(tmp_path / "cube")
    (tmp_path / "depth" / "images").mkdir(parents=True)
    _png(tmp_path / "depth" / "images" / "a.png", np.zeros((2, 2), np.uint8))
    tifffile.imwrite(tmp_path / "depth" / "images" / "b.tif", np.zeros((2, 2), np.uint16))
    for stem in "ab":
        _png(tmp_path / "depth" / "masks" / f"{stem}.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(
        DataError,
        match=r"b\.tif has 1 float32 band\(s\) but images/a\.png has "
        r"1 uint8",
    ):
        load_mask_folder(tmp_path / "depth")
    with pytest.raises(DataError, match=r"color 'rgb' needs an 8-bit image"):
        load_mask_folder(tmp_path / "depth", color="rgb")


@pytest.mark.parametrize("stream", [False, True], ids=["ram", "streamed"])
def test_mask_folder_value_errors_name_the_mask_file(tmp_path: Path, stream: bool) -> None:
    for stem in "abc":
        _pair(tmp_path, stem)
    for stem in "bc":
        _png(tmp_path / "masks" / f"{stem}.png", np.array([[0, 1, 2, 3]] * 4, np.uint8))
    with pytest.raises(
        DataError, match=r"masks/b\.png: error: masks hold class index 2, 3 but"
    ) as e:
        load_mask_folder(tmp_path, classes=["a", "b"], stream=stream)
    assert "(so do 1 other mask)" in str(e.value)
    with pytest.raises(DataError, match=r"masks/b\.png: error: masks hold values 1, 2, 3 not in"):
        load_mask_folder(tmp_path, mask_values=[0, 9], stream=stream)


def test_streamed_masks_unreadable_or_of_another_size_name_the_file(tmp_path: Path) -> None:
    for stem in "abc":
        _pair(tmp_path, stem)
    _png(tmp_path / "masks" / "c.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(DataError, match=r"masks/c\.png: error: mask is 5x4 but the mask of"):
        load_mask_folder(tmp_path, classes=["a", "b"], stream=True)
    (tmp_path / "masks" / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"masks/b\.png: error: cannot read mask"):
        load_mask_folder(tmp_path, classes=["a", "b"], stream=True)
    # Read again when a batch is decoded (a file that changed after the first pass).
    _pair(tmp_path, "b")
    _pair(tmp_path, "c")
    data = load_mask_folder(tmp_path, classes=["a", "b"], stream=True)
    (tmp_path / "masks" / "c.png").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"masks/c\.png: error: cannot read mask"):
        data.y[1:]


# --- arrays with masks ---------------------------------------------------------------------


def test_npz_with_class_index_masks(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (3, 2, 5, 6), dtype=np.uint8)
    y = rng.integers(0, 2, (3, 5, 6)).astype(np.uint8) * 255
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load_arrays(tmp_path / "d.npz", classes=["land", "building"])
    assert data.is_segmentation and data.x.dtype == np.uint8 and data.x.shape == (3, 2, 5, 6)
    assert np.array_equal(data.y, y // 255) and data.classes == ("land", "building")
    np.savez(tmp_path / "gray.npz", x=x[:, 0].astype(np.float64), y=y)
    gray = load_arrays(tmp_path / "gray.npz")
    assert gray.x.shape == (3, 1, 5, 6) and gray.x.dtype == np.float32


def test_npz_with_one_hot_masks(tmp_path: Path) -> None:
    labels = np.random.default_rng(3).integers(0, 4, (2, 5, 5))
    hot = np.eye(4, dtype=np.float32)[labels].transpose(0, 3, 1, 2)  # (N, K, H, W)
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3, 5, 5), np.float32), y=hot)
    data = load_arrays(tmp_path / "d.npz")
    assert np.array_equal(data.y, labels) and data.classes == ("0", "1", "2", "3")


def test_npz_channels_last(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x = rng.random((2, 6, 7, 3))
    y = rng.integers(0, 3, (2, 6, 7))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load_arrays(tmp_path / "d.npz", channels="last")
    assert data.x.shape == (2, 3, 6, 7) and data.x.flags.c_contiguous
    assert np.array_equal(data.x, x.transpose(0, 3, 1, 2).astype(np.float32))
    assert np.array_equal(data.y, y) and data.notes == ()
    with pytest.raises(DataError, match=r"x looks channels-last \(N, H, W, C\)") as err:
        load_arrays(tmp_path / "d.npz")
    assert "set channels: last" in str(err.value)
    np.savez(tmp_path / "labels.npz", x=rng.random((4, 9, 9, 2)), y=np.array([0, 1, 1, 0]))
    data = load_arrays(tmp_path / "labels.npz", channels="last")
    assert data.x.shape == (4, 2, 9, 9) and data.notes == () and not data.is_segmentation
    np.savez(tmp_path / "table.npz", x=rng.random((4, 3)), y=np.array([0, 1, 1, 0]))
    with pytest.raises(
        DataError,
        match=r"channels 'last' means images \(N, H, W, C\), but x "
        r"has shape \(4, 3\)",
    ):
        load_arrays(tmp_path / "table.npz", channels="last")


def test_arrays_classes_for_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.array([0, 2, 1]))
    data = load_arrays(tmp_path / "d.npz", classes=["a", "b", "c", "d"])
    assert data.classes == ("a", "b", "c", "d") and not data.is_segmentation
    with pytest.raises(
        DataError,
        match=r"y holds class index 2 but classes names only 2 "
        r"\(a, b\)",
    ):
        load_arrays(tmp_path / "d.npz", classes=["a", "b"])
    with pytest.raises(
        DataError,
        match=r"mask_values and ignore_value apply to segmentation "
        r"masks, but y has shape \(3,\)",
    ):
        load_arrays(tmp_path / "d.npz", ignore_value=0)
    np.savez(tmp_path / "reg.npz", x=np.zeros((3, 2)), y=np.array([0.5, 1.0, 2.0]))
    with pytest.raises(DataError, match=r"classes names 2 classes, but y holds floats"):
        load_arrays(tmp_path / "reg.npz", classes=["a", "b"])


# --- generated shapes ----------------------------------------------------------------------


def test_shapes_are_deterministic_and_seeded() -> None:
    a = make_shapes(20, (32, 40), 4, seed=7)
    b = make_shapes(20, (32, 40), 4, seed=7)
    c = make_shapes(20, (32, 40), 4, seed=8)
    assert a.x.shape == (20, 4, 32, 40) and a.x.dtype == np.uint8
    assert a.y.shape == (20, 32, 40) and a.y.dtype == np.int64 and a.is_segmentation
    assert a.classes == SHAPE_CLASSES == ("background", "circle", "square", "triangle")
    assert a.source == "generated shapes (netspec.data.shape_scenes)"
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.y, c.y) and not np.array_equal(a.x, c.x)


def test_shapes_cover_every_class_and_match_signatures() -> None:
    data = make_shapes(50, (64, 64), 3, seed=0)
    counts = np.bincount(data.y.ravel(), minlength=4)
    assert (counts > 0).all() and counts.sum() == data.y.size
    assert 0.5 < counts[0] / data.y.size < 0.95  # mostly background, but real objects
    sig = class_signatures(3)
    for k in range(4):
        pixels = data.x.transpose(1, 0, 2, 3)[:, data.y == k].astype(np.float64)
        assert np.abs(pixels.mean(axis=1) - sig[k]).max() < 4.0
        assert 15.0 < pixels.std(axis=1).min() < 30.0  # noise plus texture
    # Band 0 tells every shape from the background by 18-32 grey levels.
    assert (np.abs(sig[1:, 0] - sig[0, 0]) >= 18).all()
    # Each band's signature does not depend on how many bands there are (train/test agree).
    assert np.array_equal(class_signatures(8)[:, :3], sig)


def test_shapes_argument_errors() -> None:
    with pytest.raises(DataError, match=r"size must be \[height, width\]"):
        make_shapes(2, (4, 64))
    with pytest.raises(DataError, match=r"bands must be a positive integer"):
        make_shapes(2, (16, 16), 0)
    with pytest.raises(DataError, match=r"samples must be a positive integer"):
        make_shapes(0)


# --- real data -----------------------------------------------------------------------------


@needs_data
def test_real_isbi_membranes() -> None:
    root = DATA / "isbi2012_em" / "train"
    data = load_mask_folder(root, images="image", masks="label")
    assert data.x.shape == (30, 1, 512, 512) and data.x.dtype == np.uint8
    assert set(np.unique(data.y).tolist()) == {0, 1}
    assert 0.75 < data.y.mean() < 0.81
    assert data.classes == ("background", "foreground")
    named = load_mask_folder(root, images="image", masks="label", classes=["membrane", "cell"])
    assert named.classes == ("membrane", "cell") and np.array_equal(named.y, data.y)
    # Scene 0 is image/0.png, scene 10 is image/10.png (natural order, not 0, 1, 10, 11, ...).
    assert np.array_equal(data.x[10, 0], np.asarray(Image.open(root / "image" / "10.png")))


@needs_data
def test_real_spacenet_geotiff(tmp_path: Path) -> None:
    src = DATA / "spacenet_sample"
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name, sub in (("sample_geotiff.tif", "images"), ("sample_fp_mask.tif", "masks")):
        try:
            (tmp_path / sub / "a.tif").symlink_to(src / name)
        except OSError:
            shutil.copy(src / name, tmp_path / sub / "a.tif")
    data = load_mask_folder(tmp_path)
    assert data.x.dtype == np.float32 and data.x.shape == (1, 1, 900, 900)
    assert data.x.min() == 54 and data.x.max() == 6615  # uint16 values, unscaled
    assert data.classes == ("background", "foreground")
    assert 0.13 < data.y.mean() < 0.16


@needs_data
def test_real_eolearn_multiband_npz(tmp_path: Path) -> None:
    src = DATA / "eolearn_s2_lulc"
    scenes = np.load(src / "REFERENCE_SCENES.npy")
    lulc = np.load(src / "LULC.npy")[..., 0]
    np.savez(tmp_path / "eo.npz", x=scenes, y=np.repeat(lulc[None], 5, axis=0))
    values = [0, 1, 2, 3, 4, 8]
    data = load_arrays(tmp_path / "eo.npz", channels="last", mask_values=values)
    assert data.x.shape == (5, 13, 101, 100) and data.x.dtype == np.float32
    assert np.array_equal(data.x[2, 4], scenes[2, :, :, 4])
    assert data.classes == ("0", "1", "2", "3", "4", "8")
    assert np.bincount(data.y[0].ravel()).tolist() == [155, 11, 7601, 1777, 358, 198]
    masked = load_arrays(tmp_path / "eo.npz", channels="last", mask_values=values, ignore_value=0)
    assert len(masked.classes or ()) == 6
    assert (masked.y == -1).sum(axis=(1, 2)).tolist() == [155] * 5
    assert (masked.y[0] == 5).sum() == 198
