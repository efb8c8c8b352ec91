"""Atomic file writes (a crash or Ctrl-C never leaves a truncated file behind) and the guard of output folders."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success it replaces `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp (and some writers) make the file 0600; give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_figure(fig: Any, path: str | Path, fmt: str | None = None, **kwargs: Any) -> None:
    """A matplotlib figure saved atomically, as `fmt`, else in the format its suffix names (PNG
    without one)."""
    fmt = fmt or Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)


def is_temporary(name: str) -> bool:
    """A temporary file of an interrupted atomic write (`.<name>.<random>.tmp`): netspec's own."""
    return name.startswith(".") and name.endswith(".tmp")


def check_own_folder(folder: str | Path, owns: Callable[[str], bool], command: str) -> None:
    """Refuse to write into a folder that holds something `command` does not write.

    The folder is accepted when it does not exist, is empty, or every entry in it is a name
    `owns` accepts (the files the command itself writes), or a leftover of an interrupted atomic
    write. Otherwise a UsageError names the folder and the first foreign entry: netspec never
    writes beside (or over) a user's own files.
    """
    from netspec.errors import UsageError

    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UsageError.one(
            f"{command}: {folder} is a file, not a folder", str(folder), hint="name a folder"
        )
    foreign = sorted(p.name for p in folder.iterdir() if not (owns(p.name) or is_temporary(p.name)))
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise UsageError.one(
            f"{command} will not write into {folder}: it holds files {command} did not write "
            f"('{foreign[0]}'{more})",
            str(folder),
            hint="name a new or empty folder; netspec never writes beside your own files",
        )


def check_replaceable(
    path: str | Path, ours: Callable[[Path], bool], command: str, hint: str
) -> None:
    """Refuse to replace an existing file that `ours` does not recognise as one `command` wrote."""
    from netspec.errors import UsageError

    path = Path(path)
    if path.is_dir():
        raise UsageError.one(f"{command}: {path} is a folder, not a file", str(path), hint=hint)
    if path.exists() and not ours(path):
        raise UsageError.one(
            f"{command} will not replace {path}: it is not a file {command} wrote",
            str(path),
            hint=hint,
        )
