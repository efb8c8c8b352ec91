"""ARCHITECTURE.md stays a true map: every module is listed there, and long files say why they are long."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(
    p.relative_to(REPO) for top in ("netspec", "backends") for p in (REPO / top).rglob("*.py")
)
LONG = 400  # lines; a file beyond this states the reason at its top
LIMIT = 500  # lines; no source file is longer: split it by concern


def _listed() -> set[Path]:
    """(folder / file) for every row of the file tables in ARCHITECTURE.md."""
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    listed, folder = set(), None
    for line in text.splitlines():
        if m := re.fullmatch(r"\*\*`(.+)/`\*\*", line.strip()):
            folder = Path(m.group(1))
        elif (m := re.match(r"\| `([\w.]+\.py)` \| (\d+) \|", line)) and folder is not None:
            listed.add(folder / m.group(1))
    return listed


def test_every_module_is_in_architecture_md() -> None:
    listed = _listed()
    missing = [str(p) for p in MODULES if p not in listed]
    stale = [str(p) for p in sorted(listed) if p not in MODULES]
    assert not missing, f"add these to ARCHITECTURE.md's file tables: {missing}"
    assert not stale, f"ARCHITECTURE.md lists files that no longer exist: {stale}"


@pytest.mark.parametrize("path", MODULES, ids=str)
def test_module_has_a_one_line_concern_and_long_ones_a_reason(path: Path) -> None:
    text = (REPO / path).read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(text))
    assert doc, f"{path}: no module docstring saying its one concern"
    assert len(text.splitlines()) <= LIMIT, f"{path}: over {LIMIT} lines; split it by concern"
    if len(text.splitlines()) > LONG:
        assert f"Over {LONG} lines" in doc, f"{path}: over {LONG} lines without a reason at its top"
