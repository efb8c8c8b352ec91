"""Packaging: backends/ installs as `netspec.backends` only, never as a top-level `backends`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_backends_import_only_as_netspec_backends(tmp_path: Path):
    # From an empty folder, so the repository root is not on sys.path.
    ok = run_python("-c", "import netspec.backends", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = run_python("-c", "import backends", cwd=tmp_path)
    assert bad.returncode == 1
    assert "ModuleNotFoundError: No module named 'backends'" in bad.stderr


@pytest.mark.slow  # a wheel built by pip in a process of its own: ~1.5 s
def test_wheel_holds_netspec_backends_and_no_top_level_backends(tmp_path: Path):
    pytest.importorskip("setuptools", minversion="77")
    # Build from a copy, so the build leaves nothing (build/, *.egg-info) in the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("netspec", "backends"):
        shutil.copytree(REPO / package, src / package, ignore=ignore)
    proc = run_python(
        "-m",
        "pip",
        "wheel",
        str(src),
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-q",
        "-w",
        str(tmp_path / "dist"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("netspec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"netspec"}  # no top-level `backends` package
    assert "netspec/backends/__init__.py" in names
    backend_files = {p.name for p in (REPO / "backends").glob("*.py")}
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("netspec/backends/")} >= (
        backend_files
    )
    assert "netspec/py.typed" in names
    assert "netspec/layers/conv.py" in names
