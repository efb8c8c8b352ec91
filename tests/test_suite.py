"""The suite's own set-up (conftest.py) stays true to the files it names."""

from __future__ import annotations

from conftest import KERAS_FILES
from helpers import REPO


def test_the_keras_files_are_every_file_that_imports_keras() -> None:
    # xdist hands conftest.KERAS_FILES to one worker as one unit: a new file that imports Keras
    # and is not listed would make the other worker import it too (~2 s of CPU).
    imports = ('importorskip("keras")', "keras_module", "\nimport keras", "\nfrom keras ")
    found = {
        f"tests/{p.name}"
        for p in (REPO / "tests").glob("test_*.py")
        if p.name != "test_suite.py" and any(s in p.read_text(encoding="utf-8") for s in imports)
    }
    assert found == KERAS_FILES
