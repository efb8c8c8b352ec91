"""The README is a newcomer's page: the main job first, short, every command in its table.

Its blocks are run and checked with those of docs/ by tests/test_docs.py.
"""

from __future__ import annotations

import re

from helpers import REPO

from netspec.cli import COMMANDS

README = REPO / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", TEXT, flags=re.S)


def test_readme_opens_with_the_main_job_and_the_tests() -> None:
    lang, first = BLOCKS[0]
    commands = [line for line in first.splitlines() if line and not line.startswith("#")]
    assert lang == "bash"
    assert len(commands) == 2
    assert commands[0].endswith("netspec train specs/quickstart.yaml")
    assert "pip install torch==2.13.0" in commands[0]
    assert commands[1] == "python -m pytest -q -n auto --dist loadfile"
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci, ".ci/run must run the README's test command"


def test_readme_is_short() -> None:
    assert len(TEXT.splitlines()) <= 300


def test_readme_command_table_has_every_command_once() -> None:
    section = TEXT.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `netspec (\w+)[ `]", section, flags=re.M)
    assert rows == list(COMMANDS)  # in the order `netspec --help` lists them


def test_readme_shows_one_spec_its_summary_and_a_located_error() -> None:
    langs = [lang for lang, _ in BLOCKS]
    assert langs.count("python") == 1
    assert "<!-- output: netspec summary specs/mnist_cnn.yaml -->" in TEXT
    assert re.search(
        r"<!-- output: netspec validate \w+\.yaml -->\n```text\n\w+\.yaml:\d+:\d+: error:", TEXT
    )
