"""Where a spec's data paths point (no numpy: `netspec summary` and the run record ask too)."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_path(path: str | Path, spec_file: str | None) -> Path:
    """An absolute path: a relative one is relative to the spec file's folder, never the cwd.

    One rule, as Docker Compose has: a spec reads the same files wherever it is run from.
    Without a spec file (a spec given as text) relative paths start at the current directory.
    Paths given with `--set` start at the current directory; `runs.absolute_paths` makes
    them absolute before they get here.
    """
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (Path(spec_file).resolve().parent if spec_file else Path.cwd()) / p
    return Path(os.path.normpath(p))  # .. segments removed, symlinks kept (as the user wrote)
