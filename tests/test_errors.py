"""Broken specs (tests/broken/, one file per mistake): each error says where, what and how to fix it,
every independent error is reported, and the command line exits 2 without a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

import netspec.source
from netspec import SpecError, compile_file, compile_text
from netspec.cli import app

BROKEN = Path(__file__).parent / "broken"


@dataclass(frozen=True)
class Want:
    """One expected problem: its position, its message (substrings, in order), and its hint."""

    line: int
    col: int
    message: tuple[str, ...]
    hint: str | None = None


CASES: dict[str, list[Want]] = {
    "top_level_typo": [Want(4, 1, ("layrs: unknown key 'layrs'",), "did you mean 'layers'?")],
    "layer_type_typo": [
        Want(5, 5, ("layers[0].conv2D: unknown layer type 'conv2D'",), "did you mean 'conv2d'?")
    ],
    "argument_typo": [
        Want(
            5,
            14,
            ("layers[0].conv2d.filter: unknown argument 'filter'",),
            "did you mean 'filters'? conv2d takes: filters, kernel,",
        )
    ],
    "wrong_type": [
        Want(
            5,
            23,
            ("layers[0].conv2d.filters: expected a valid integer, found '32' (a string)",),
            "write the number without quotes",
        )
    ],
    "missing_argument": [
        Want(5, 5, ("layers[0].dense: missing required argument 'units'",), "dense needs: units")
    ],
    "missing_name": [
        Want(2, 1, ("missing required key 'name'",), "a spec needs: name, input, layers")
    ],
    "kernel_too_large": [
        Want(
            7,
            5,
            (
                "layers[2]: layer 'conv2d_1' (conv2d): output height would be "
                "floor((3 + 2*0 - 1*(5-1) - 1)/1) + 1 = -1 < 1",
                "a window of 5 does not fit the input height 3",
                "(input shape (4, 3, 3))",
            ),
            "use padding: same",
        )
    ],
    "concat_mismatch": [
        Want(
            10,
            5,
            (
                "layers[2]: layer 'concat' (concat): inputs 'narrow' (8, 30, 30) and "
                "'wide' (8, 32, 32) differ outside the concat axis 0",
            ),
            "crop2d or zeropad2d one input",
        )
    ],
    "add_mismatch": [
        Want(
            10,
            5,
            (
                "layers[2]: layer 'add' (add): inputs 'branch' (8, 32, 32) and "
                "'shortcut' (16, 32, 32) must have equal shapes",
            ),
            "1x1 conv2d projection",
        )
    ],
    "unknown_reference": [
        Want(8, 14, ("layers[1].inputs[0]: no layer named 'hiden'",), "did you mean 'hidden'?")
    ],
    "forward_reference": [
        Want(
            6,
            14,
            ("layers[0].inputs[0]: 'head' is defined later (line 7)",),
            "inputs must refer to earlier layers",
        )
    ],
    "self_reference": [
        Want(8, 14, ("layers[1].inputs[0]: 'loop' is this layer itself",), "an earlier layer")
    ],
    "duplicate_names": [
        Want(
            8,
            11,
            ("layers[1].name: the name 'hidden' is already used by an earlier layer (line 5)",),
            "layer names must be unique",
        )
    ],
    "duplicate_keys": [
        Want(
            6,
            1,
            ("layers: duplicate key 'layers' (first given at line 4)",),
            "YAML would silently keep only the last one",
        )
    ],
    "invalid_yaml": [
        Want(
            4,
            7,
            ("invalid YAML: did not find expected ',' or ']'",),
            "while parsing a flow sequence that starts at line 3, column 8",
        )
    ],
    "python_tag": [
        Want(
            2,
            7,
            ("name: invalid YAML: the tag '!!python/object/apply:os.system' is refused",),
            "tags that build Python objects are refused",
        )
    ],
    "empty": [Want(1, 1, ("the spec is empty",))],
    "block_missing_param": [
        Want(
            11,
            5,
            ("layers[0].conv_pool: block 'conv_pool' needs parameter 'filters'",),
            "add `filters: <value>` to this use",
        )
    ],
    "block_unknown_param": [
        # Reported once, where it is written, with the use that expanded it.
        Want(
            8,
            27,
            (
                "blocks.conv_pool.layers[0].conv2d.filters: unknown block parameter '$filter'",
                "(in block 'conv_pool' used as 'conv_pool' at layers[0], line 11)",
            ),
            "did you mean '$filters'?",
        )
    ],
    "block_unknown_argument": [
        Want(
            11,
            17,
            ("layers[0].conv_pool.filter: unknown parameter 'filter' of block 'conv_pool'",),
            "did you mean 'filters'? block 'conv_pool' takes: filters",
        )
    ],
    "unused_output": [
        Want(
            5,
            5,
            ("layers[0]: layer 'forgotten' (dense): its output is never used",),
            "feed it into a later layer with `inputs:`, or remove it",
        )
    ],
    "several_errors": [
        Want(2, 1, ("missing required key 'name'",), "a spec needs: name, input, layers"),
        Want(4, 26, ("layers[0].conv2d.kernal: unknown argument 'kernal'",), "'kernel'?"),
        Want(5, 5, ("layers[1].maxpol2d: unknown layer type 'maxpol2d'",), "'maxpool2d'?"),
        Want(
            7,
            20,
            ("layers[3].dense.units: expected a valid integer, found '10' (a string)",),
            "write the number without quotes",
        ),
        Want(9, 14, ("layers[4].inputs[0]: no layer named 'nowhere'",), "with `name:`"),
    ],
    # The train-check stage: the train section against the network, every problem at once.
    "train_mismatch": [
        Want(
            9,
            13,
            ("train.augment.flip: augmentation needs image input [C, H, W]",),
            "the spec's input is [16]",
        ),
        Want(
            10,
            9,
            (
                "train.loss: binary_cross_entropy needs a single sigmoid output unit",
                "ends in softmax with output (3,)",
            ),
            "use a softmax over 2 classes with loss: cross_entropy",
        ),
        Want(
            11,
            23,
            ("train.metrics[1]: iou needs a per-pixel output map [C, H, W]", "output is (3,)"),
        ),
        Want(
            11,
            28,
            (
                "train.metrics[2]: top5_accuracy needs at least 5 classes, the network has 3 outputs",
            ),
        ),
        Want(
            12,
            34,
            ("train.init.layers[0]: 'encoder*' matches no layer with weights in this network",),
            "layer names are those of `netspec summary`: dense, dense_1",
        ),
        Want(
            14,
            24,
            ("train.regularize[0].layers[1]: 'head*' matches no layer with weights",),
            "dense, dense_1",
        ),
    ],
    "train_cross_entropy": [
        Want(
            9,
            16,
            (
                "train.loss.name: cross_entropy needs one output per class",
                "the network's output is (1, 32, 32)",
            ),
            "use binary_cross_entropy with a single sigmoid output",
        )
    ],
    "train_sigmoid_head": [
        Want(
            8,
            9,
            ("train.loss: cross_entropy needs a softmax output, this network ends in sigmoid",),
            "end the network in softmax",
        )
    ],
}


def test_every_broken_file_has_expectations():
    on_disk = {p.stem for p in BROKEN.glob("*.yaml")}
    assert on_disk == set(CASES), "add the new file's expected errors to CASES (or remove it)"


def _check(problems, wants: list[Want], path: Path) -> None:
    assert len(problems) == len(wants), "\n".join(p.format() for p in problems)
    for problem, want in zip(problems, wants):
        text = problem.format()
        head, _, hint = text.partition("\n  hint: ")
        assert head.startswith(f"{path}:{want.line}:{want.col}: error: "), text
        assert (problem.file, problem.line, problem.col) == (str(path), want.line, want.col)
        pattern = ".*".join(re.escape(part) for part in want.message)
        assert re.search(pattern, head), f"{want.message} not in {head!r}"
        if want.hint is None:
            assert not hint, text
        else:
            assert want.hint in hint, text


@pytest.mark.parametrize("stem", sorted(CASES))
def test_broken_spec(stem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = BROKEN / f"{stem}.yaml"
    want = CASES[stem]
    monkeypatch.chdir(tmp_path)  # python_tag would create a file here if it were executed
    first = f"{path}:{want[0].line}:{want[0].col}: error: "
    with pytest.raises(SpecError, match=re.escape(first)) as info:
        compile_file(path)
    _check(info.value.problems, want, path)
    # Sorted by position, so the output reads like the file.
    positions = [(p.line, p.col) for p in info.value.problems]
    assert positions == sorted(positions)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stem", sorted(CASES))
@pytest.mark.parametrize("command", ["summary", "validate"])
def test_cli_reports_broken_spec(stem: str, command: str):
    path = BROKEN / f"{stem}.yaml"
    with pytest.raises(SpecError, match=re.escape(str(path))) as info:
        compile_file(path)
    result = CliRunner().invoke(app, [command, str(path)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # not an uncaught error
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr.startswith(info.value.format() + "\n")
    if command == "validate":
        assert result.stderr.endswith("1 of 1 specs are invalid\n")


def test_real_process_exits_2_without_traceback():
    path = BROKEN / "several_errors.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "netspec", "summary", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count(f"{path}:") == len(CASES["several_errors"])


# --- a few cases that need no file -------------------------------------------------------------


def test_missing_file_is_a_spec_error(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match=re.escape(f"{missing}: error: no such file")):
        compile_file(missing)
    result = CliRunner().invoke(app, ["summary", str(missing)])
    assert result.exit_code == 2
    assert "no such file" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!int abc", "invalid YAML: 'abc' is not a valid !!int"),
        ("!!bool maybe", "invalid YAML: 'maybe' is not a valid !!bool"),
        ("!!int", "invalid YAML: '' is not a valid !!int"),
        ("!!python/name:os.system", "invalid YAML: the tag '!!python/name:os.system' is refused"),
        ("!foo 3", "invalid YAML: the tag '!foo' is refused"),
    ],
)
def test_bad_explicit_tags_are_spec_errors(value: str, message: str):
    text = f"name: t\ninput: [784]\nlayers:\n  - dense:\n      units: {value}\n"
    with pytest.raises(
        SpecError, match=re.escape(f"t.yaml:5:14: error: layers[0].dense.units: {message}")
    ):
        compile_text(text, "t.yaml")


def test_alias_bomb_is_refused(monkeypatch: pytest.MonkeyPatch):
    # Nested aliases multiply: 6 levels of 10 are a million values from a 7-line file.
    monkeypatch.setattr(netspec.source, "MAX_VALUES", 10_000)
    lines = ["name: bomb", "input: [784]", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    lines += ["layers:", "  - dense: {units: 1}"]
    with pytest.raises(SpecError, match=r"more than 10,000 values once its YAML aliases"):
        compile_text("\n".join(lines) + "\n", "bomb.yaml")


def test_the_default_value_limit_admits_big_specs():
    # 2,000 layers of 4 arguments are 22,010 keys and values: far below the limit.
    layer = "  - conv2d: {filters: 8, kernel: 3, padding: same, activation: relu}\n"
    graph = compile_text(f"name: big\ninput: [8, 16, 16]\nlayers:\n{layer * 2000}")
    assert len(graph.nodes) == 2000
    assert netspec.source.MAX_VALUES >= 40 * 22_010
