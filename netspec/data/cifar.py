"""CIFAR-10 python-version batches, read with an unpickler that can only rebuild numpy arrays."""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData
from netspec.errors import DataError

CIFAR10_SPLITS: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
CIFAR10_META = "batches.meta"
CIFAR10_SUBDIR = "cifar-10-batches-py"  # what the official tarball unpacks to


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """codecs.encode limited to what pickles use for bytes, so no other codec can be reached."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"unexpected codecs.encode(..., {encoding!r}) in pickle")
    return codecs.encode(text, encoding)


def _numpy_reconstructors() -> dict[tuple[str, str], Callable[..., Any]]:
    # Resolve through whichever numpy is installed: numpy 2 moved numpy.core to numpy._core,
    # and importing numpy.core there warns. Pickles name either spelling.
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 1.26 has no numpy._core
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes as codecs.encode(str, "latin1") under pickle protocols 0-2.
        ("_codecs", "encode"): _latin1_encode,
        ("codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        if hasattr(numeric, "_frombuffer"):  # protocol-5 pickles of arrays
            allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


_ALLOWED = _numpy_reconstructors()


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only the callables a CIFAR batch needs; anything else (os.system, ...) is refused.

    A pickle can call any importable function while loading, so a plain pickle.load on a
    downloaded file runs whatever the file says.
    """

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise data_error(
                f"refusing to unpickle: the file asks for {module}.{name}, which a CIFAR-10 "
                "batch never contains (only numpy arrays, lists and strings)",
                self._path,
                hint="the file is corrupt or malicious; download CIFAR-10 again from "
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            ) from None


def _unpickle(path: Path) -> dict[str, Any]:
    """Load one batch file as a dict with str keys (python-2 pickles give bytes keys)."""
    try:
        with path.open("rb") as f:
            obj = _RestrictedUnpickler(f, path).load()
    except FileNotFoundError:
        raise data_error("CIFAR-10 batch file not found", path) from None
    except OSError as e:
        raise data_error(f"cannot read CIFAR-10 batch: {e.strerror or e}", path) from None
    except DataError:
        raise  # find_class refused a callable: its own message
    except Exception as e:
        # Broken or truncated bytes surface as nearly any builtin exception from the pickle
        # machine and the numpy reconstructors it may call (UnpicklingError, EOFError,
        # ValueError, KeyError, MemoryError, OverflowError for a BYTEARRAY8 length over 2**63,
        # RecursionError, ...): every one means the same to the user.
        raise data_error(
            f"not a readable CIFAR-10 python batch ({type(e).__name__}: {e})", path
        ) from None
    if not isinstance(obj, dict):
        raise data_error(f"CIFAR-10 batch holds a {type(obj).__name__}; expected a dict", path)
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _labels(labels: object, n: int, n_classes: int, path: Path) -> np.ndarray:
    """The batch's label list as (n,) int64, each in 0..n_classes-1."""
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        y = None
    if y is None or y.ndim != 1 or y.shape[0] != n:
        raise data_error(f"'labels' must be a list of {n} integers (one per image row)", path)
    bad = y[(y < 0) | (y >= n_classes)]
    if bad.size:
        raise data_error(
            f"label {int(bad[0])} is outside 0..{n_classes - 1} "
            f"(batches.meta names {n_classes} classes)",
            path,
        )
    return y


def load_cifar10_dir(directory: str | Path, *, split: Literal["train", "test"]) -> ArrayData:
    """CIFAR-10 from the python-version batches in `directory` (or its cifar-10-batches-py/).

    x: (N, 3, 32, 32) uint8, y: (N,) int64, classes from batches.meta.
    """
    directory = Path(directory)
    if split not in CIFAR10_SPLITS:
        raise data_error(f"unknown CIFAR-10 split {split!r}; expected 'train' or 'test'")
    if not (directory / CIFAR10_META).exists() and (directory / CIFAR10_SUBDIR).is_dir():
        directory = directory / CIFAR10_SUBDIR
    if not directory.is_dir():
        raise data_error(
            "CIFAR-10 directory not found",
            directory,
            hint="unpack cifar-10-python.tar.gz there "
            "(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)",
        )
    needed = (CIFAR10_META, *CIFAR10_SPLITS[split])
    missing = [n for n in needed if not (directory / n).is_file()]
    if missing:
        raise data_error(
            f"CIFAR-10 {split} split: missing {', '.join(missing)} in {directory}",
            directory,
            hint="expected the python-version batches: batches.meta, data_batch_1 .. "
            "data_batch_5, test_batch (from cifar-10-python.tar.gz)",
        )

    meta_path = directory / CIFAR10_META
    names = _unpickle(meta_path).get("label_names")
    if not isinstance(names, list) or not names:
        raise data_error("batches.meta has no 'label_names' list", meta_path)
    classes = tuple(_text(n) for n in names)

    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for name in CIFAR10_SPLITS[split]:
        path = directory / name
        batch = _unpickle(path)
        data, labels = batch.get("data"), batch.get("labels")
        if not (
            isinstance(data, np.ndarray)
            and data.dtype == np.uint8
            and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32
        ):
            what = (
                f"shape {tuple(data.shape)} of {data.dtype}"
                if isinstance(data, np.ndarray)
                else type(data).__name__
            )
            raise data_error(f"'data' is {what}; expected a uint8 array of shape (N, 3072)", path)
        y = _labels(labels, data.shape[0], len(classes), path)
        # Rows are 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane.
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(y)
    return ArrayData(
        x=np.concatenate(xs),  # (N, 3, 32, 32)
        y=np.concatenate(ys),
        classes=classes,
        source=f"CIFAR-10 python batches in {directory} ({split} split)",
    )
