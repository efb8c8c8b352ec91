"""Docs are tests: the README's specs compile and its printed output is what netspec prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from netspec import compile_file, compile_text
from netspec.summary import render

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", TEXT, flags=re.S)
YAML_BLOCKS = [body for lang, body in BLOCKS if lang == "yaml"]


def test_readme_opens_with_the_main_job_and_the_tests() -> None:
    lang, first = BLOCKS[0]
    commands = [line for line in first.splitlines() if line and not line.startswith("#")]
    assert lang == "bash"
    assert len(commands) == 2
    assert commands[0].endswith("netspec train specs/quickstart.yaml")
    assert "pip install torch==2.13.0" in commands[0]
    assert commands[1] == "python -m pytest -q"
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci, ".ci/run must run the README's test command"


@pytest.mark.parametrize("body", YAML_BLOCKS, ids=[f"yaml{i}" for i in range(len(YAML_BLOCKS))])
def test_readme_specs_compile(body: str) -> None:
    part = re.match(r"# (specs/\S+\.yaml), the train section", body)
    if part:  # an excerpt: every key shown must be the spec file's own value
        shown = yaml.safe_load(body)["train"]
        spec = yaml.safe_load((README.parent / part.group(1)).read_text())["train"]
        assert {k: spec.get(k) for k in shown} == shown
        return
    graph = compile_text(body, "README.md")
    assert graph.nodes


def test_readme_unet_matches_the_spec_file() -> None:
    body = next(b for b in YAML_BLOCKS if "name: unet" in b)
    short = compile_text(body, "README.md")
    full = compile_file(README.parent / "specs" / "unet.yaml")
    assert short.output.shape == full.output.shape == (2, 388, 388)
    assert sum(n.params for n in short.nodes) == sum(n.params for n in full.nodes) == 31_030_658


def test_readme_summary_is_the_real_output() -> None:
    shown = next(body for lang, body in BLOCKS if lang == "text" and 'Model: "mnist_cnn"' in body)
    assert shown == render(compile_file(README.parent / "specs" / "mnist_cnn.yaml"))
