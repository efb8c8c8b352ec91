"""NumPy array files: .npz archives or .npy pairs, loaded without ever unpickling."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from netspec.data._common import data_error, did_you_mean, plain
from netspec.data.arraydata import ArrayData
from netspec.data.labels import class_count
from netspec.data.mapped import map_npy, map_npz_member
from netspec.data.masks import checked_classes, mask_indices
from netspec.data.stream import ArrayReader, Lazy, is_streamed

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # local file header; empty archive


def _magic(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(6)
    except FileNotFoundError:
        raise data_error("array file not found", path) from None
    except OSError as e:
        raise data_error(f"cannot read array file: {e.strerror or e}", path) from None


def _refusal(e: ValueError) -> str:
    if "allow_pickle" in str(e):
        return (
            "holds an object (dtype=object) array, which can only be read by unpickling; "
            "refusing, since unpickling can run arbitrary code. Expected a numeric array"
        )
    return f"is not a valid array file ({e})"


DEFLATE_MAX_RATIO = 1032  # deflate's largest expansion: no member inflates beyond this


def check_npy_header(f: BinaryIO, available: int, where: str | Path, what: str = "array") -> None:
    """Refuse a .npy header claiming more bytes than the file (or zip member) can hold.

    numpy allocates the claimed shape before reading any data: a forged or truncated header of
    shape (10**12,) raised _ArrayMemoryError (or woke the OOM killer). `f` is at the header's
    start; `available` is the most data bytes that can follow it.
    """
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            return  # other versions: numpy's own checks
    except ValueError:
        return  # a malformed header: np.load says what is wrong
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > available:
        raise data_error(
            f"{what} header claims shape {tuple(shape)} of {dtype} ({size_text(claimed)}), but the "
            f"file holds at most {size_text(available)}: it is truncated or not written by numpy",
            where,
            hint="write it again with numpy.save / numpy.savez",
        )


def size_text(n: int) -> str:
    """A byte count for messages: `64 bytes`, `4.0 TB`."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} bytes"


def _check_member(archive: Any, key: str, path: Path) -> None:
    """check_npy_header for member `key` of an open NpzFile."""
    info = archive.zip.getinfo(key if key in archive.zip.namelist() else f"{key}.npy")
    available = info.file_size
    if info.compress_type != zipfile.ZIP_STORED:
        available = min(available, info.compress_size * DEFLATE_MAX_RATIO)
    with archive.zip.open(info) as member:
        check_npy_header(member, available, path, f"array {key!r}:")


def _load_one(path: Path, key: str, mapped: bool = False) -> np.ndarray:
    """The array in a .npy file, or member `key` of a .npz archive; allow_pickle stays False.
    `mapped`: memory-mapped where it can be (mapped.py), read whole where it cannot."""
    suffix = path.suffix.lower()
    head = _magic(path)
    if suffix == ".npz":
        if not head.startswith(_ZIP_MAGICS):
            raise data_error(
                f"not a .npz archive: expected a zip file (starting with b'PK'), "
                f"found {head[:4]!r}",
                path,
                hint="write it with numpy.savez / numpy.savez_compressed",
            )
        try:
            # Our own file handle: np.load leaves its file open when the zip is corrupt.
            with path.open("rb") as f, np.load(f, allow_pickle=False) as archive:
                keys = list(archive.files)
                if key not in keys:
                    raise data_error(
                        f"no array named {key!r} in the archive{did_you_mean(key, keys)}; "
                        f"it holds: {plain(keys) or 'nothing'}",
                        path,
                    )
                _check_member(archive, key, path)
                in_place = map_npz_member(path, key) if mapped else None
                return archive[key] if in_place is None else in_place
        except ValueError as e:
            raise data_error(f"array {key!r} {_refusal(e)}", path) from None
        except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
            raise data_error(f"corrupt .npz archive ({type(e).__name__}: {e})", path) from None
    if suffix == ".npy":
        if not head.startswith(_NPY_MAGIC):
            raise data_error(
                f"not a .npy file: expected it to start with {_NPY_MAGIC!r}, found {head!r}",
                path,
                hint="write it with numpy.save",
            )
        try:
            with path.open("rb") as f:
                check_npy_header(f, path.stat().st_size, path)
            in_place = map_npy(path) if mapped else None
            return np.load(path, allow_pickle=False) if in_place is None else in_place
        except ValueError as e:
            raise data_error(f"file {_refusal(e)}", path) from None
        except (OSError, EOFError) as e:
            raise data_error(f"corrupt .npy file ({type(e).__name__}: {e})", path) from None
    raise data_error(f"unsupported array file type {path.suffix!r}; expected .npz or .npy", path)


def _features(x: np.ndarray, path: Path) -> Any:
    if x.ndim < 2:
        raise data_error(
            f"x has shape {tuple(x.shape)}; expected (N, F) features or (N, C, H, W) images",
            path,
        )
    if x.dtype == np.uint8:
        return Lazy(ArrayReader(x)) if isinstance(x, np.memmap) else x  # the trainer scales them
    if x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer) or x.dtype.kind == "f":
        if isinstance(x, np.memmap):  # streamed: each sample converted and checked when read
            return Lazy(ArrayReader(x)).mapped(partial(_finite_float, path=path))
        out = x.astype(np.float32)
        bad = int(x.size - np.count_nonzero(np.isfinite(out)))
        if bad:
            raise data_error(f"x holds {bad} NaN or infinite values; expected finite numbers", path)
        return out
    raise data_error(f"x has dtype {x.dtype}; expected a numeric (integer or float) array", path)


def _finite_float(x: np.ndarray, path: Path) -> np.ndarray:
    """Samples of a streamed x as float32, refused when not finite."""
    out = x.astype(np.float32)
    if not np.isfinite(out).all():
        raise data_error("x holds NaN or infinite values; expected finite numbers", path)
    return out


def _targets(
    y: np.ndarray, n: int, path: Path, classes: tuple[str, ...] | None
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise data_error(
            f"y has shape {tuple(y.shape)}; expected ({n},) or ({n}, K) to match x's {n} samples",
            path,
        )
    if classes is not None and y.dtype.kind == "f" and y.ndim == 1 and _integral(y):
        y = y.astype(np.int64)  # float64 labels 0.0, 1.0 (pandas) of named classes
    if y.dtype == np.bool_ or np.issubdtype(y.dtype, np.integer):
        # Integer targets are class indices.
        if y.ndim != 1:
            raise data_error(
                f"integer y has shape {tuple(y.shape)}; class indices must be ({n},)",
                path,
                hint="store regression targets as floats",
            )
        y64 = y.astype(np.int64)
        if y64.size and int(y64.min()) < 0:
            raise data_error(f"y holds class index {int(y64.min())}; expected 0 or more", path)
        n_classes = class_count(int(y64.max()), path) if y64.size else 0
        if classes is None:
            return y64, tuple(str(i) for i in range(n_classes))
        if n_classes > len(classes):
            raise data_error(
                f"y holds class index {n_classes - 1} but classes names only {len(classes)} "
                f"({plain(classes)}); expected indices 0..{len(classes) - 1}",
                path,
            )
        return y64, classes
    if y.dtype.kind == "f":
        if classes is not None:
            raise data_error(
                f"classes names {len(classes)} classes, but y holds floats (regression targets)",
                path,
                hint="store class labels as integers 0..K-1",
            )
        out = y.astype(np.float32)
        if not np.isfinite(out).all():
            raise data_error("y holds NaN or infinite values; expected finite numbers", path)
        return out, None
    raise data_error(
        f"y has dtype {y.dtype}; expected integers (classes) or floats (regression)", path
    )


def _integral(y: np.ndarray) -> bool:
    return bool(np.isfinite(y).all() and (y == np.round(y)).all())


def _mask_like(y: np.ndarray, hw: tuple[int, ...]) -> bool:
    """y is (N, H, W) or (N, K, H, W) over images of height and width hw."""
    return (y.ndim == 3 and y.shape[1:] == hw) or (y.ndim == 4 and y.shape[2:] == hw)


def load_arrays(
    path: str | Path,
    *,
    x_key: str = "x",
    y_key: str = "y",
    y_path: str | Path | None = None,
    channels: Literal["first", "last"] = "first",
    classes: Sequence[str] | None = None,
    mask_values: Sequence[int] | None = None,
    ignore_value: int | None = None,
    stream: bool = False,
) -> ArrayData:
    """x (and y) from a .npz archive, or x from a .npy file and y from `y_path`.

    stream: x memory-mapped (a .npy, an uncompressed .npz member) and read on demand, a
    `stream.Lazy`; where it cannot be mapped, or y holds masks, it is read whole.

    x is (N, F), or images (N, C, H, W) with any C; channels="last" reads (N, H, W, C).
    uint8 x stays uint8, other numeric x becomes float32. Integer (N,) y means classification
    (classes "0".."max" unless `classes` names them); float y means regression. y of the
    images' height and width is a segmentation mask, (N, H, W) values or (N, K, H, W) one-hot,
    read by `mask_indices` into (N, H, W) int64 indices; (N, H, W) x is then one band.
    """
    path = Path(path)
    if channels not in ("first", "last"):
        raise data_error(f"unknown channels {channels!r}; expected 'first' or 'last'")
    if y_path is None and path.suffix.lower() == ".npy":
        raise data_error("a .npy file holds only x; expected y_path naming the labels file", path)
    names = checked_classes(classes, path)
    y_file = Path(y_path) if y_path is not None else path
    y_raw = _load_one(y_file, y_key)
    x_raw = _load_one(path, x_key, mapped=stream)
    if (
        isinstance(x_raw, np.memmap)
        and x_raw.ndim in (3, 4)
        and _mask_like(y_raw, x_raw.shape[-2:])
    ):
        x_raw = np.asarray(x_raw)  # segmentation masks: read whole (the pipeline says so)
    x = _features(x_raw, path)
    if x.ndim == 3 and _mask_like(y_raw, x.shape[1:]):
        x = x[:, None]  # (N, H, W) images with masks: one band
    elif channels == "last" and is_streamed(x):
        x = x.mapped(partial(np.transpose, axes=(2, 0, 1)))
    elif channels == "last":
        if x.ndim != 4:
            raise data_error(
                f"channels 'last' means images (N, H, W, C), but x has shape {tuple(x.shape)}",
                path,
                hint="leave channels at 'first' for tables and (N, C, L) sequences",
            )
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    where = str(path) if y_path is None else f"{path} + {y_file}"
    source = f"arrays {where}"
    if x.ndim == 4 and _mask_like(y_raw, x.shape[2:]):
        y, mask_names, notes = mask_indices(
            y_raw,
            hw=(x.shape[2], x.shape[3]),
            classes=names,
            mask_values=mask_values,
            ignore_value=ignore_value,
            where=y_file,
        )
        return ArrayData(x=x, y=y, classes=mask_names, source=source, notes=notes)
    if x.ndim == 4 and channels == "first" and _mask_like(y_raw, x.shape[1:3]):
        raise data_error(
            f"y has shape {tuple(y_raw.shape)}, masks the size of x's axes 1 and 2, but x has "
            f"shape {tuple(x.shape)}; x looks channels-last (N, H, W, C)",
            path,
            hint="set channels: last",
        )
    if mask_values is not None or ignore_value is not None:
        raise data_error(
            f"mask_values and ignore_value apply to segmentation masks, but y has shape "
            f"{tuple(y_raw.shape)}, not (N, H, W) or (N, K, H, W) over x's images "
            f"{tuple(x.shape)}",
            y_file,
        )
    y, out_classes = _targets(y_raw, x.shape[0], y_file, names)
    notes = _absent_classes(y, out_classes) + _layout_note(x, channels)
    return ArrayData(x=x, y=y, classes=out_classes, source=source, notes=notes)


def _absent_classes(y: np.ndarray, classes: tuple[str, ...] | None) -> tuple[str, ...]:
    """A note naming the classes no label holds (labels 0, 1, 2, 5: classes 3 and 4)."""
    if classes is None or not y.size:
        return ()
    absent = np.flatnonzero(np.bincount(y, minlength=len(classes)) == 0)  # bounded: class_count
    if not absent.size:
        return ()
    never = plain(classes[i] for i in absent[:8]) + (", ..." if absent.size > 8 else "")
    return (f"class{'es' if absent.size > 1 else ''} {never} never occur in y",)


def _layout_note(x: np.ndarray, channels: str) -> tuple[str, ...]:
    """A note when images look channels-last: a last axis smaller than both others (e.g.
    (N, 101, 100, 13)). Not transposed: guessing wrong would silently scramble every image."""
    if (
        channels == "first"
        and x.ndim == 4
        and x.shape[3] < min(x.shape[1], x.shape[2])
        and x.shape[2] >= 8
    ):
        return (
            f"x has shape {tuple(x.shape)}, which looks channels-last (N, H, W, C); "
            "netspec expects (N, C, H, W) (set channels to 'last' if it is)",
        )
    return ()
