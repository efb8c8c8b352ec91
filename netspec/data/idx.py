"""IDX files (the MNIST family's format), gzip-compressed or raw."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from netspec.data._common import data_error

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


def parse_idx(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode IDX bytes: magic 0x0000 <type> <ndim>, ndim big-endian uint32 dims, then the data."""
    if len(data) < 4:
        raise data_error(
            f"file is {len(data)} bytes, too short for an IDX header (expected at least 4)", path
        )
    zero, type_code, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or type_code not in IDX_DTYPES:
        raise data_error(
            f"bad IDX magic number 0x{data[:4].hex()}: expected 0x0000TTNN with type TT one of "
            f"{', '.join(f'{c:02x}' for c in IDX_DTYPES)} and NN the number of dimensions",
            path,
            hint="is this really an MNIST-style IDX file (e.g. train-images-idx3-ubyte)?",
        )
    if ndim == 0:
        raise data_error("IDX header declares 0 dimensions; expected at least 1", path)
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise data_error(
            f"truncated IDX header: {len(data)} bytes, expected {header_len} for {ndim} dimensions",
            path,
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    # math.prod: exact big ints, so a hostile header cannot overflow the size check.
    expected = dtype.itemsize * math.prod(dims)
    got = len(data) - header_len
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise data_error(
            f"IDX file {what}: header says shape {dims} of {dtype.name} "
            f"({expected} data bytes) but the file holds {got} data bytes",
            path,
            hint="delete the file and download it again" if got < expected else None,
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    # Native byte order and a writable copy: callers may normalise in place.
    return arr.astype(dtype.newbyteorder("="))


def load_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or .gz) into a native-endian numpy array of its declared shape."""
    path = Path(path)
    return parse_idx(_read_maybe_gzip(path), path)
