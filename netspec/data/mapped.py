"""Arrays read in place (memory-mapped, nothing loaded): a .npy file, or an uncompressed member
of a .npz archive (numpy.savez stores its members uncompressed), for streamed sources."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip member's local file header (30 bytes)


def _header(f: object) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)  # type: ignore[arg-type]
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else None
    read = read or np.lib.format.read_array_header_2_0
    return read(f)  # type: ignore[arg-type]


def _map(path: Path, offset: int) -> np.ndarray | None:
    """The .npy array whose header starts at `offset` of `path`, mapped read-only (None for a
    Fortran-ordered or object array: those are read whole, as before)."""
    with path.open("rb") as f:
        f.seek(offset)
        shape, fortran, dtype = _header(f)
        start = f.tell()
    if fortran or dtype.hasobject or not shape or 0 in shape:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape)


def map_npy(path: Path) -> np.ndarray | None:
    """A .npy file's array, memory-mapped (its header checked by the caller first)."""
    return _map(path, 0)


def map_npz_member(path: Path, key: str) -> np.ndarray | None:
    """Member `key` of a .npz archive, memory-mapped where it is stored uncompressed; None for a
    compressed member (numpy.savez_compressed), which must be inflated to be read."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        info = archive.getinfo(key if key in names else f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with path.open("rb") as f:
        f.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
    name_len, extra_len = fields[-2], fields[-1]
    return _map(path, info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
