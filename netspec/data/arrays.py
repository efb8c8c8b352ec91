"""NumPy array files: .npz archives or .npy pairs, loaded without ever unpickling."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from netspec.data._common import data_error, did_you_mean, plain
from netspec.data.arraydata import ArrayData

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


def _load_one(path: Path, key: str) -> np.ndarray:
    """The array in a .npy file, or member `key` of a .npz archive; allow_pickle stays False."""
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
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                if key not in keys:
                    raise data_error(
                        f"no array named {key!r} in the archive{did_you_mean(key, keys)}; "
                        f"it holds: {plain(keys) or 'nothing'}",
                        path,
                    )
                return archive[key]
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
            return np.load(path, allow_pickle=False)
        except ValueError as e:
            raise data_error(f"file {_refusal(e)}", path) from None
        except (OSError, EOFError) as e:
            raise data_error(f"corrupt .npy file ({type(e).__name__}: {e})", path) from None
    raise data_error(f"unsupported array file type {path.suffix!r}; expected .npz or .npy", path)


def _features(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim < 2:
        raise data_error(
            f"x has shape {tuple(x.shape)}; expected (N, F) features or (N, C, H, W) images",
            path,
        )
    if x.dtype == np.uint8:
        return x  # images stay compact; the trainer scales them
    if x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer) or x.dtype.kind == "f":
        out = x.astype(np.float32)
        bad = int(x.size - np.count_nonzero(np.isfinite(out)))
        if bad:
            raise data_error(f"x holds {bad} NaN or infinite values; expected finite numbers", path)
        return out
    raise data_error(f"x has dtype {x.dtype}; expected a numeric (integer or float) array", path)


def _targets(y: np.ndarray, n: int, path: Path) -> tuple[np.ndarray, tuple[str, ...] | None]:
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise data_error(
            f"y has shape {tuple(y.shape)}; expected ({n},) or ({n}, K) to match x's {n} samples",
            path,
        )
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
        n_classes = int(y64.max()) + 1 if y64.size else 0
        return y64, tuple(str(i) for i in range(n_classes))
    if y.dtype.kind == "f":
        out = y.astype(np.float32)
        if not np.isfinite(out).all():
            raise data_error("y holds NaN or infinite values; expected finite numbers", path)
        return out, None
    raise data_error(
        f"y has dtype {y.dtype}; expected integers (classes) or floats (regression)", path
    )


def load_arrays(
    path: str | Path,
    *,
    x_key: str = "x",
    y_key: str = "y",
    y_path: str | Path | None = None,
) -> ArrayData:
    """x (and y) from a .npz archive, or x from a .npy file and y from `y_path`.

    x must be channels first: (N, F) or (N, C, H, W) with any C. uint8 x stays uint8, other
    numeric x becomes float32. Integer y means classification with classes "0".."max";
    float y means regression.
    """
    path = Path(path)
    if y_path is None and path.suffix.lower() == ".npy":
        raise data_error("a .npy file holds only x; expected y_path naming the labels file", path)
    x_raw = _load_one(path, x_key)
    y_file = Path(y_path) if y_path is not None else path
    y_raw = _load_one(y_file, y_key)
    x = _features(x_raw, path)
    y, classes = _targets(y_raw, x.shape[0], y_file)
    notes: tuple[str, ...] = ()
    # Heuristic: a last axis smaller than both others (e.g. (N, 101, 100, 13)) is likely C.
    if x.ndim == 4 and x.shape[3] < min(x.shape[1], x.shape[2]) and x.shape[2] >= 8:
        # Not transposed: guessing the layout wrong would silently scramble every image.
        notes = (
            f"x has shape {tuple(x.shape)}, which looks channels-last (N, H, W, C); "
            "netspec expects (N, C, H, W)",
        )
    where = str(path) if y_path is None else f"{path} + {y_file}"
    return ArrayData(x=x, y=y, classes=classes, source=f"arrays {where}", notes=notes)
