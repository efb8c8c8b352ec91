"""IDX files (the MNIST family's format), gzip-compressed or raw; raw ones memory-mapped for
streaming, gzip ones gunzipped once into the disk cache to be mapped."""

from __future__ import annotations

import gzip
import math
import os
import shutil
import zlib
from pathlib import Path

import numpy as np

from netspec.data._common import data_error
from netspec.data.stream import cache_dir, content_key

# IDX type byte -> element type; all multi-byte types are stored big-endian.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its name says)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise data_error("IDX file not found", path) from None
    except OSError as e:
        raise data_error(f"cannot read IDX file: {e.strerror or e}", path) from None
    if not raw.startswith(_GZIP_MAGIC):
        if path.suffix == ".gz":
            raise data_error(
                f"file is named .gz but is not gzip data (starts with {raw[:4]!r}, "
                f"expected {_GZIP_MAGIC!r})",
                path,
            )
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        # EOFError: cut-off download; BadGzipFile (an OSError) / zlib.error: damaged bytes.
        raise data_error(
            f"corrupt or truncated gzip data ({e}); expected a complete gzip-compressed IDX file",
            path,
            hint="delete the file and download it again",
        ) from None


def _layout(head: bytes, size: int, path: str | Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Check an IDX header (magic 0x0000 <type> <ndim>, ndim big-endian uint32 dims) against the
    file's `size` in bytes: its shape, element type and header length."""
    if size < 4:
        raise data_error(
            f"file is {size} bytes, too short for an IDX header (expected at least 4)", path
        )
    zero, type_code, ndim = head[0:2], head[2], head[3]
    if zero != b"\x00\x00" or type_code not in IDX_DTYPES:
        raise data_error(
            f"bad IDX magic number 0x{head[:4].hex()}: expected 0x0000TTNN with type TT one of "
            f"{', '.join(f'{c:02x}' for c in IDX_DTYPES)} and NN the number of dimensions",
            path,
            hint="is this really an MNIST-style IDX file (e.g. train-images-idx3-ubyte)?",
        )
    if ndim == 0:
        raise data_error("IDX header declares 0 dimensions; expected at least 1", path)
    header_len = 4 + 4 * ndim
    if size < header_len:
        raise data_error(
            f"truncated IDX header: {size} bytes, expected {header_len} for {ndim} dimensions",
            path,
        )
    dims = tuple(int(d) for d in np.frombuffer(head, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    # math.prod: exact big ints, so a hostile header cannot overflow the size check.
    expected = dtype.itemsize * math.prod(dims)
    got = size - header_len
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise data_error(
            f"IDX file {what}: header says shape {dims} of {dtype.name} "
            f"({expected} data bytes) but the file holds {got} data bytes",
            path,
            hint="delete the file and download it again" if got < expected else None,
        )
    return dims, dtype, header_len


def parse_idx(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode IDX bytes: magic 0x0000 <type> <ndim>, ndim big-endian uint32 dims, then the data."""
    dims, dtype, header_len = _layout(data[: 4 + 4 * 255], len(data), path)
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    # Native byte order and a writable copy: callers may normalise in place.
    return arr.astype(dtype.newbyteorder("="))


def map_idx(path: str | Path) -> np.ndarray | None:
    """A raw IDX file's array memory-mapped read-only (the header, then one fixed-size record
    per sample): nothing is read until indexed. None for gzip data, which cannot be mapped."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(4 + 4 * 255)
        size = path.stat().st_size
    except FileNotFoundError:
        raise data_error("IDX file not found", path) from None
    except OSError as e:
        raise data_error(f"cannot read IDX file: {e.strerror or e}", path) from None
    if head.startswith(_GZIP_MAGIC):
        return None
    if path.suffix == ".gz":
        _read_maybe_gzip(path)  # its one message for a .gz that is not gzip data
    dims, dtype, header_len = _layout(head, size, path)
    if not math.prod(dims):
        return None  # numpy cannot map nothing: read whole (it is empty)
    return np.memmap(path, dtype=dtype, mode="r", offset=header_len, shape=dims)


def load_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or .gz) into a native-endian numpy array of its declared shape."""
    path = Path(path)
    return parse_idx(_read_maybe_gzip(path), path)


def decoded_size(path: Path) -> int:
    """The bytes an IDX file holds decoded: its size, or a gzip file's own record of it (the
    last 4 bytes: the uncompressed size modulo 2**32), without decompressing it."""
    try:
        with path.open("rb") as f:
            gz = f.read(2) == _GZIP_MAGIC
            f.seek(-4, os.SEEK_END)
            tail = f.read(4)
        return int.from_bytes(tail, "little") if gz else path.stat().st_size
    except OSError:
        return 0  # load_idx says what is wrong


def gunzip_cached(path: Path, notes: list[str]) -> Path | None:
    """A gzip IDX file decompressed once into the disk cache (keyed by the file's path, size and
    mtime; written to a temporary name and renamed, so a file there is complete) to be mapped.
    None, with a note, where the cache cannot be written (the file is then read whole)."""
    target = cache_dir() / f"{content_key('idx-gunzip', [path], {})}.idx"
    if target.is_file():
        notes.append(f"{path.name} read from its gunzipped copy in the disk cache {target}")
        return target
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise data_error(
            f"corrupt or truncated gzip data ({e}); expected a complete gzip-compressed IDX file",
            path,
            hint="delete the file and download it again",
        ) from None
    except OSError as e:
        notes.append(
            f"the disk cache could not be written in {target.parent} ({e}): {path.name} is read "
            "into memory"
        )
        return None
    finally:
        tmp.unlink(missing_ok=True)
    notes.append(f"{path.name} gunzipped once to the disk cache {target}")
    return target
