"""The suite's own set-up (conftest.py) stays true to the files it names."""

from __future__ import annotations

import pytest
from conftest import GROUPS
from helpers import REPO

# How a test file imports each group's libraries (at the top, in a test, or by a fixture).
IMPORTS = {
    "Keras and scikit-learn": (
        'importorskip("keras")', "keras_module", "\nimport keras", "\nfrom keras ",
        'importorskip("sklearn', 'importorskip("skl2onnx")', "from sklearn", "from skl2onnx",
    ),
    "Optuna": ('importorskip("optuna")', "import optuna", "from optuna"),
}  # fmt: skip


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_each_group_is_every_file_that_imports_its_libraries(group: str) -> None:
    # xdist hands each of conftest.GROUPS to one worker as one unit: a new file that imports
    # such a library and is not listed would make another worker import it too.
    found = {
        f"tests/{p.name}"
        for p in (REPO / "tests").glob("test_*.py")
        if p.name != "test_suite.py"
        and any(s in p.read_text(encoding="utf-8") for s in IMPORTS[group])
    }
    assert found == GROUPS[group]
