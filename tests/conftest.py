"""Shared test configuration: the `--update-golden` flag, every spec in specs/, the shared data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted((REPO / "specs").glob("*.yaml"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/*.txt from the current output instead of comparing with them",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test that takes `spec_path` runs once per file in specs/: a new spec is tested by adding it.
    if "spec_path" in metafunc.fixturenames:
        metafunc.parametrize("spec_path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The datasets shared by every checkout: a `shared/data` folder beside the repository."""
    return REPO.parent / "shared" / "data"
