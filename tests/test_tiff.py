"""netspec.data.tiff: one band-axis rule, so mask folders and `netspec predict` read a TIFF alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

from netspec.backends.predict.inputs import read_tiff  # noqa: E402
from netspec.backends.predict.model import ModelInfo  # noqa: E402
from netspec.data.mask_folder import _read_image  # noqa: E402
from netspec.data.tiff import band_axis, read_tiff_bands  # noqa: E402
from netspec.errors import DataError  # noqa: E402

SCENE = np.random.default_rng(0).integers(0, 65536, (3, 20, 3)).astype(np.uint16)  # (C, H, W)
WIDE = SCENE[:, :, :2].repeat(4, axis=2)  # (3, 20, 8)


def _info(path: Path) -> ModelInfo:
    return ModelInfo(
        path,
        "input",
        "tensor(float)",
        None,
        (3, None, None),
        "out",
        (2, None, None),
        (3, None, None),
    )


def _both(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The same file through the mask-folder loader and through predict."""
    return _read_image(path, "keep")[0], read_tiff(path, _info(path))


# Each file: how it is written, and the scene (C, H, W) it holds.
CASES = {
    # Ambiguous by shape (first and last axes both 3): the file's samples axis decides.
    "planar.tif": (SCENE, {"photometric": "rgb", "planarconfig": "separate"}, SCENE),
    "interleaved.tif": (
        SCENE,
        {"photometric": "rgb", "planarconfig": "contig"},
        SCENE.transpose(2, 0, 1),
    ),
    # Bands as pages (no samples axis): the axis smaller than the other two.
    "pages.tif": (WIDE, {"photometric": "minisblack"}, WIDE),
    "last.tif": (WIDE.transpose(1, 2, 0), {"photometric": "minisblack"}, WIDE),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_masks_and_predict_read_the_same_bands(tmp_path: Path, name: str) -> None:
    array, kwargs, expected = CASES[name]
    tifffile.imwrite(tmp_path / name, array, **kwargs)
    from_masks, from_predict = _both(tmp_path / name)
    np.testing.assert_array_equal(from_masks, from_predict)
    np.testing.assert_array_equal(from_predict, read_tiff_bands(tmp_path / name).astype(np.float32))
    assert from_predict.shape[0] == 3
    if expected is not None:
        np.testing.assert_array_equal(from_predict, expected.astype(np.float32))


def test_band_axis_rule() -> None:
    assert band_axis((3, 20, 3), "SYX") == 0 and band_axis((3, 20, 3), "YXS") == 2
    assert band_axis((5, 20, 30), "QYX") == 0 and band_axis((20, 30, 5), "QYX") == 2
    assert band_axis((5, 5, 5), "QYX") is None and band_axis((3, 20, 3)) is None


def test_an_ambiguous_page_stack_is_refused_by_both(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "cube.tif", np.zeros((5, 5, 5), np.uint16))
    for read in (lambda p: _read_image(p, "keep"), lambda p: read_tiff(p, _info(p))):
        with pytest.raises(DataError, match=r"TIFF image has shape \(5, 5, 5\)"):
            read(tmp_path / "cube.tif")
