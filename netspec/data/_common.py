"""Shared helpers for the data loaders: building one clear DataError per failure."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from netspec.errors import DataError, Problem


def data_error(
    message: str,
    file: str | Path | None = None,
    hint: str | None = None,
    *,
    line: int | None = None,
) -> DataError:
    """One located problem; callers `raise data_error(...)` so tracebacks point at the caller."""
    where = str(file) if file is not None else None
    return DataError.one(message, file=where, line=line, hint=hint, stage="data")


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def plain(values: Iterable[object]) -> str:
    """Format a list for messages as `a, b, c`: never numpy's `[a b c]`."""
    return ", ".join(str(v) for v in values)


LISTED = 20  # unreadable files named one per error line; the rest are counted


def unreadable(problems: list[Problem]) -> DataError:
    """One error listing every unreadable file (the first LISTED, then how many more)."""
    listed = problems[:LISTED]
    if len(problems) > LISTED:
        listed.append(Problem(f"... and {len(problems) - LISTED} more files that cannot be read"))
    return DataError(listed, stage="data")


def named(paths: list[Path], root: Path, limit: int = 5) -> str:
    """`a/x.txt, b/y.db` relative to root: the first `limit` of them, then how many in all."""
    shown = ", ".join(str(p.relative_to(root)) for p in paths[:limit])
    return shown + (f", ... ({len(paths)} in all)" if len(paths) > limit else "")
