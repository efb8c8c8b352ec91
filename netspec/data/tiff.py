"""TIFF files as arrays and as scenes (bands, H, W): the one reader of mask folders and `netspec predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from netspec.data._common import data_error
from netspec.data.arrays import size_text
from netspec.errors import DataError, first_line

TIFF_SUFFIXES = frozenset({".tif", ".tiff"})


# The most any TIFF compression (deflate's 1032:1, LZW's less) can expand its data.
_MAX_RATIO = 1100


def _check_claim(path: Path, series: Any, compression: int) -> None:
    """Refuse a header claiming more pixels than the file can hold, before they are allocated
    (a forged or damaged 200000x200000 header asked for 37 GiB)."""
    claimed = int(np.prod(series.shape, dtype=object)) * np.dtype(series.dtype).itemsize
    size = path.stat().st_size
    bound = size if compression == 1 else size * _MAX_RATIO
    if claimed > bound:
        raise data_error(
            f"TIFF header claims shape {tuple(series.shape)} of {np.dtype(series.dtype)} "
            f"({size_text(claimed)}), more than the file's {size_text(size)} can hold: it is "
            "truncated or damaged",
            path,
            hint="delete or replace the file",
        )


def read_tiff_array(path: Path, what: str = "image") -> tuple[np.ndarray, str]:
    """The array tifffile reads (first series) and its axes (`YXS`, `QYX`, ...; '' if unknown).

    `what` names the file in the error (`cannot read image (...)`).
    """
    import tifffile  # a dependency, but only TIFF files need it

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            _check_claim(path, series, tif.pages[0].compression)
            array, axes = np.asarray(series.asarray()), str(series.axes)
        if array.size == 0:  # tifffile logs a warning and returns nothing for a broken header
            raise ValueError("no pixel data: a corrupt or empty TIFF")
    # tifffile raises many types on bad input; compressed TIFFs (LZW, JPEG) need the optional
    # imagecodecs package, but Pillow reads those when they are 8-bit.
    except DataError:
        raise
    except Exception as exc:
        try:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                array = np.asarray(im)
            axes = "YXS"[: array.ndim]
        except Exception:
            raise data_error(
                f"cannot read {what} ({type(exc).__name__}: {first_line(exc)}); "
                "expected a readable .tif/.tiff file",
                path,
                hint="delete or replace the file",
            ) from None
    return array, axes if len(axes) == array.ndim else ""


def band_axis(shape: tuple[int, ...], axes: str = "") -> int | None:
    """The band axis of a 3-D array (first or last), or None when the shape leaves it ambiguous.

    1. When the file stores several samples per pixel, TIFF itself says where they are: tifffile
       names that axis `S` (planar (S, H, W) or interleaved (H, W, S)); it is the band axis.
    2. Otherwise (bands stored as pages), the band axis is the one strictly smaller than the other
       two. Pillow's arrays (compressed 8-bit TIFFs tifffile cannot decode) are (H, W) or (H, W, S).
    """
    if axes.count("S") == 1 and "Y" in axes and "X" in axes:
        return axes.index("S")
    a, b, c = shape
    if a < b and a < c:
        return 0
    if c < a and c < b:
        return 2
    return None


def to_bands(array: np.ndarray, axes: str = "", path: Path | None = None) -> np.ndarray:
    """A TIFF's array as (C, H, W), in its own dtype, by the band-axis rule."""
    if array.ndim > 3:
        keep = [i for i, d in enumerate(array.shape) if d != 1]
        axes = "".join(axes[i] for i in keep) if axes else ""
        array = array.reshape([array.shape[i] for i in keep] or [1])
    if array.ndim == 2:
        return array[None]
    axis = band_axis(array.shape, axes) if array.ndim == 3 else None
    if axis is None:
        raise data_error(
            f"TIFF image has shape {tuple(int(d) for d in array.shape)}; expected (H, W), "
            "(C, H, W) or (H, W, C) with fewer bands than rows and columns",
            path,
            hint="save multi-band scenes with their bands as TIFF samples (planar or interleaved)",
        )
    return array if axis == 0 else np.moveaxis(array, axis, 0)


def read_tiff_bands(path: Path, what: str = "image") -> np.ndarray:
    """A TIFF scene as (C, H, W) in its stored dtype (uint16 stays 0..65535)."""
    array, axes = read_tiff_array(path, what)
    return to_bands(array, axes, path)
