"""Inputs that used to crash or exhaust the front end: deep nesting, control characters, binary
files, expansion bombs, empty layer lists, bare layer names with keys, long repeats in summaries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from netspec import SpecError, compile_file, compile_text
from netspec.data.mnist import load_mnist_dir
from netspec.errors import DataError
from netspec.items import MAX_LAYERS
from netspec.source import MAX_DEPTH
from netspec.summary import render, rows, totals

HEAD = "name: x\ninput: [4]\n"


def _problem(text: str) -> str:
    with pytest.raises(SpecError) as info:
        compile_text(text, "s.yaml")
    return str(info.value)


def test_deeply_nested_lists_are_a_located_error_not_a_recursion_error() -> None:
    text = HEAD + "description: " + "[" * 500 + "]" * 500 + "\nlayers: [dense: {units: 2}]\n"
    with pytest.raises(SpecError, match=rf"s.yaml:3:\d+: error: .*nest more than {MAX_DEPTH}"):
        compile_text(text, "s.yaml")


def test_a_nul_character_is_reported_at_its_line_and_column() -> None:
    text = HEAD + "layers:\n  - dense: {units: 2\x00}\n"
    with pytest.raises(SpecError, match=r"s.yaml:4:21: error: .*unacceptable character #x0000"):
        compile_text(text, "s.yaml")


def test_binary_file_is_not_a_utf8_text_file(tmp_path: Path) -> None:
    spec = tmp_path / "model.yaml"
    spec.write_bytes(b"\x89PNG\r\n\x1a\n\xff\x00")
    with pytest.raises(SpecError, match=r"not a UTF-8 text file \(byte 0x89 at offset 0"):
        compile_file(spec)


def test_empty_layers_says_a_spec_needs_a_layer() -> None:
    msg = _problem(HEAD + "layers: []\n")
    assert "s.yaml:3:9: error: layers: a spec needs at least one layer" in msg
    assert "hint: list its layers under `layers:`" in msg
    assert "after validation" not in msg


@pytest.mark.parametrize("indent", ["  ", "    "])
def test_bare_layer_name_followed_by_a_key_explains_the_fix(indent: str) -> None:
    msg = _problem(HEAD + f"layers:\n  - flatten\n{indent}name: f\n  - dense: {{units: 2}}\n")
    assert f"s.yaml:5:{len(indent) + 1}: error: invalid YAML: 'name:' follows the bare" in msg
    assert "write `- flatten: {}` with `name: ...` on the next line" in msg


def test_mnist_hint_names_the_spec_option(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"set `download: true` under train.data"):
        load_mnist_dir(tmp_path / "nowhere", split="train")
    with pytest.raises(DataError, match=r"or set `download: true` under train.data"):
        load_mnist_dir(tmp_path, split="train")


def _blocks_using_each_other(levels: int, uses: int) -> str:
    text = HEAD + "blocks:\n  b0: {layers: [{dense: {units: 2}}]}\n"
    for i in range(1, levels + 1):
        text += f"  b{i}:\n    layers:\n" + f"      - b{i - 1}: {{}}\n" * uses
    return text + f"layers:\n  - b{levels}: {{}}\n"


@pytest.mark.parametrize(
    ("text", "count"),
    [
        (HEAD + "layers:\n  - dense: {units: 2}\n    repeat: 1000000\n", "1,000,000"),
        (
            HEAD + "layers:\n  - layers: [dense: {units: 2}]\n    repeat: 1000000000\n",
            "1,000,000,000",
        ),
        (_blocks_using_each_other(8, 10), "100,000,000"),
        (
            HEAD + "blocks:\n  b: {params: {n: 1}, layers: [{dense: {units: 2}, repeat: $n}]}\n"
            "layers:\n  - b: {n: 10000000}\n",
            "10,000,000",
        ),
    ],
)
def test_expansion_is_capped_before_expanding(text: str, count: str) -> None:
    start = time.perf_counter()
    msg = _problem(text)
    assert time.perf_counter() - start < 1.0
    assert f"the layers expand to {count} layers" in msg
    assert f"the limit is {MAX_LAYERS:,}" in msg


def test_summary_collapses_long_repeats_and_keeps_exact_totals() -> None:
    text = HEAD + (
        "layers:\n  - dense: {units: 3}\n"
        "  - dense: {units: 4}\n    repeat: 100\n"
        "  - layers: [{dense: {units: 4, activation: relu}}, {dropout: {rate: 0.1}}]\n"
        "    repeat: 50\n"
        "  - dense: {units: 2}\n"
    )
    graph = compile_text(text)
    out = render(graph)
    # The first dense of the group is alike the repeated dense rows (same shape and params).
    assert "… 99 more dense rows like the above …" in out
    assert "… 48 more groups of 2 rows (dropout, dense) like the above …" in out
    assert len(out.splitlines()) < 20
    t = totals(rows(graph))
    assert t.total_params == (4 * 3 + 3) + (3 * 4 + 4) + 99 * 20 + 50 * 20 + (4 * 2 + 2)
    assert f"Total params: {t.total_params:,}" in out


def test_compile_pauses_the_garbage_collector_and_restores_it(monkeypatch) -> None:
    import gc

    import netspec.compiler

    seen: list[bool] = []
    real = netspec.compiler.validate

    def validate(source):
        seen.append(gc.isenabled())
        return real(source)

    monkeypatch.setattr(netspec.compiler, "validate", validate)
    text = HEAD + "layers: [dense: {units: 2}]\n"
    assert gc.isenabled()
    compile_text(text)
    assert seen == [False] and gc.isenabled()  # off while compiling (long chains), on after
    with pytest.raises(SpecError, match="units"):
        compile_text(HEAD + "layers: [dense: {units: -2}]\n")
    assert gc.isenabled()  # also after an error
    gc.disable()
    try:
        compile_text(text)
        assert not gc.isenabled()  # the caller's choice is left as it was
    finally:
        gc.enable()
