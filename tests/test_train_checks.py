"""The train-check stage: the `train:` section against the network, located, before any data is read.

The broken files of each check (with positions) are in tests/broken/train_*.yaml (test_errors.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import plain_specs
from typer.testing import CliRunner

from netspec import SpecError, compile_text
from netspec.cli import app
from netspec.compiler import compile_source
from netspec.source import apply_overrides, parse, read
from netspec.train_checks import check_train, loss_problems, metric_problem

SPECS = plain_specs()  # search specs: tests/test_tune.py checks each end

MLP = """\
name: mlp
input: [16]
layers:
  - dense: {{units: 8, activation: relu}}
  - dense: {{units: {units}, activation: {head}}}
train:
  data: {{source: arrays, path: nowhere.npz}}
{train}"""


def mlp(train: str = "", units: int = 3, head: str = "softmax") -> str:
    return MLP.format(units=units, head=head, train=train)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_in_specs_passes_the_train_checks(path: Path) -> None:
    source = read(path)
    graph = compile_source(source)
    assert check_train(graph, source) is graph


def test_a_valid_train_section_passes_and_no_data_is_read() -> None:
    text = mlp("  loss: cross_entropy\n  metrics: [accuracy, top5_accuracy]\n", units=5)
    graph = compile_text(text, "ok.yaml")
    assert graph.train.loss.terms == ("cross_entropy",)


@pytest.mark.parametrize(
    ("shape", "head", "terms", "wanted"),
    [
        ((1,), "sigmoid", ("binary_cross_entropy",), []),
        ((2,), "softmax", ("cross_entropy",), []),
        ((1, 8, 8), "sigmoid", ("binary_cross_entropy", "dice"), []),
        ((3, 8, 8), "softmax", ("cross_entropy", "dice"), []),
        ((2,), "softmax", ("binary_cross_entropy",), ["single sigmoid output unit"]),
        ((2, 8, 8), "softmax", ("binary_cross_entropy",), ["single sigmoid output map"]),
        ((1,), "softmax", ("binary_cross_entropy",), ["ends in softmax with output (1,)"]),
        ((1,), "sigmoid", ("cross_entropy",), ["one output per class"]),
        ((10,), "sigmoid", ("cross_entropy",), ["needs a softmax output"]),
        ((4,), "linear", ("mse",), []),
    ],
)
def test_loss_against_output_and_head(
    shape: tuple[int, ...], head: str, terms: tuple[str, ...], wanted: list[str]
) -> None:
    rank = len(shape)
    if rank == 1:
        text = mlp(units=shape[0], head=head)
    else:
        text = (
            f"name: seg\ninput: [1, 8, 8]\nlayers:\n"
            f"  - conv2d: {{filters: {shape[0]}, kernel: 1, activation: {head}}}\n"
        )
    graph = compile_text(text.split("train:")[0])
    found = [m for m, _ in loss_problems(terms, graph)]
    assert len(found) == len(wanted), found
    for message, want in zip(found, wanted):
        assert want in message


@pytest.mark.parametrize(
    ("name", "shape", "want"),
    [
        ("iou", (3,), "iou needs a per-pixel output map [C, H, W], the network's output is (3,)"),
        (
            "pixel_accuracy",
            (1,),
            "pixel_accuracy needs a per-pixel output map [C, H, W], the network's output is (1,)",
        ),
        ("dice", (2, 8, 8), None),
        (
            "top5_accuracy",
            (4,),
            "top5_accuracy needs at least 5 classes, the network has 4 outputs",
        ),
        ("top5_accuracy", (5,), None),
        ("accuracy", (1,), None),
    ],
)
def test_metrics_against_the_output(name: str, shape: tuple[int, ...], want: str | None) -> None:
    assert metric_problem(name, shape) == want


def test_a_value_from_the_command_line_is_located_at_its_set() -> None:
    source = apply_overrides(parse(mlp(), "m.yaml"), ["train.loss=binary_cross_entropy"])
    with pytest.raises(SpecError, match=r"--set train\.loss=binary_cross_entropy: error: ") as info:
        compile_source(source)
    assert info.value.stage == "train"


def test_loss_given_as_a_mapping_is_located_at_its_name() -> None:
    text = mlp("  loss: {name: binary_cross_entropy, label_smoothing: 0.1}\n")
    with pytest.raises(SpecError, match=r"^m\.yaml:8:16: error: train\.loss\.name: "):
        compile_text(text, "m.yaml")


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("categorical_crossentropy", "cross_entropy"),  # closest in spelling: binary_cross_entropy
        ("sparse_categorical_crossentropy", "cross_entropy"),
        ("CrossEntropyLoss", "cross_entropy"),
        ("binary_crossentropy", "binary_cross_entropy"),
        ("BCEWithLogitsLoss", "binary_cross_entropy"),
        ("mean_squared_error", "mse"),
        ("cross_entopy", "cross_entropy"),  # a typo: the closest name
    ],
)
def test_another_frameworks_loss_name_suggests_netspecs(name: str, meant: str) -> None:
    with pytest.raises(SpecError, match=rf"unknown loss '{name}'; did you mean '{meant}'\?"):
        compile_text(mlp(f"  loss: {name}\n"), "m.yaml")


def test_each_pattern_of_a_rule_is_checked_on_its_own() -> None:
    text = mlp("  regularize:\n    - {layers: ['dense*', relu], l1: 0.1}\n")
    with pytest.raises(
        SpecError, match=r"m\.yaml:9:27: error: train\.regularize\[0\]\.layers\[1\]: 'relu'"
    ) as info:
        compile_text(text, "m.yaml")
    assert len(info.value.problems) == 1


@pytest.mark.parametrize("command", ["validate", "summary"])
def test_validate_and_summary_run_the_train_checks(tmp_path: Path, command: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(mlp("  augment: {shift: 0.1}\n"))
    result = CliRunner().invoke(app, [command, str(spec)])
    assert result.exit_code == 2, result.output
    assert (
        f"{spec}:8:13: error: train.augment.shift: augmentation needs image input" in result.stderr
    )
    assert "(train stage)" in result.stderr  # the CLI names the stage that refused the spec


IMAGE = """\
name: img
input: [13, 8, 8]
layers:
  - flatten
  - dense: {units: 3, activation: softmax}
train:
  data: {source: arrays, path: nowhere.npz, rgb_bands: [4, 3, 14]}
"""


def test_rgb_bands_must_be_bands_of_an_image_input() -> None:
    with pytest.raises(
        SpecError,
        match=r"^i\.yaml:7:63: error: train\.data\.rgb_bands\[2\]: rgb_bands: band 14 does not "
        r"exist; the input has 13 bands, numbered 1 to 13",
    ) as info:
        compile_text(IMAGE, "i.yaml")
    assert len(info.value.problems) == 1
    assert compile_text(IMAGE.replace("14]", "2]"), "i.yaml").train.data.rgb_bands == [4, 3, 2]
    with pytest.raises(SpecError, match=r"train\.data\.rgb_bands: rgb_bands needs image input"):
        compile_text(mlp().replace("nowhere.npz}", "nowhere.npz, rgb_bands: [1, 2, 3]}"), "m.yaml")
    with pytest.raises(SpecError, match=r"rgb_bands"):  # three bands, no more, no less
        compile_text(IMAGE.replace("[4, 3, 14]", "[4, 3]"), "i.yaml")
