"""Naming, groups, blocks, `repeat`, `$param` substitution and `trainable: false`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netspec import Graph, SpecError, compile_file, compile_text
from netspec.summary import render, rows, totals

REPO = Path(__file__).resolve().parents[1]


def spec(layers: str, *, input_shape: str = "[3, 16, 16]", blocks: str = "") -> Graph:
    """Compile a spec from its `layers:` (and `blocks:`) text, indented as in a file."""
    text = f"name: t\ninput: {input_shape}\n"
    if blocks:
        text += f"blocks:\n{blocks}"
    return compile_text(text + f"layers:\n{layers}", "t.yaml")


def names(graph: Graph) -> list[str]:
    return [n.name for n in graph.nodes]


def test_auto_names_are_keras_style():
    graph = spec(
        """\
  - conv2d: {filters: 4, kernel: 3}
  - conv2d: {filters: 4, kernel: 3}
  - relu
  - conv2d: {filters: 4, kernel: 3}
  - flatten
  - dense: {units: 2}
"""
    )
    assert names(graph) == ["conv2d", "conv2d_1", "relu", "conv2d_2", "flatten", "dense"]


def test_auto_names_skip_names_taken_by_hand():
    graph = spec(
        """\
  - dense: {units: 4}
    name: dense_1
  - dense: {units: 4}
  - dense: {units: 4}
""",
        input_shape="[8]",
    )
    assert names(graph) == ["dense_1", "dense", "dense_2"]


def test_block_instances_prefix_their_layer_names():
    graph = compile_file(REPO / "specs/unet.yaml")
    got = names(graph)
    assert got[:5] == [
        "enc1/conv2d",
        "enc1/conv2d_1",
        "enc2/maxpool2d",
        "enc2/double_conv/conv2d",  # a block used inside a block: both prefixes
        "enc2/double_conv/conv2d_1",
    ]
    assert got[-6:] == [
        "dec1/upconv",
        "dec1/skip_crop",
        "dec1/concat",
        "dec1/double_conv/conv2d",
        "dec1/double_conv/conv2d_1",
        "logits",
    ]


def test_unnamed_block_uses_are_numbered():
    graph = compile_file(REPO / "specs/cats_dogs_cnn.yaml")
    assert names(graph)[:4] == [
        "conv_pool/conv2d",
        "conv_pool/maxpool2d",
        "conv_pool_1/conv2d",
        "conv_pool_1/maxpool2d",
    ]


def test_repeat_of_a_group():
    graph = compile_file(REPO / "specs/mnist_mlp_deep.yaml")
    assert names(graph) == [
        "dense",
        "dropout",
        "dense_1",
        "dropout_1",
        "dense_2",
        "dropout_2",
        "dense_3",
    ]
    assert [n.params for n in graph.nodes if n.kind == "dense"] == [
        784 * 512 + 512,
        512 * 512 + 512,
        512 * 512 + 512,
        512 * 10 + 10,
    ]


def test_repeat_of_a_block_use_chains_the_instances():
    graph = compile_file(REPO / "specs/resnet_cifar.yaml")
    adds = [n for n in graph.nodes if n.kind == "add"]
    assert [n.name for n in adds[:3]] == ["residual/add", "residual_1/add", "residual_2/add"]
    # Each repeat reads the previous one's output; its shortcut is its own `input`.
    assert graph.node("residual_1/conv2d").inputs == ("residual/relu_1",)
    assert adds[1].inputs == ("residual/relu_1", "residual_1/residual")
    assert len(adds) == 9  # 3 stages of 3 residual blocks


def test_repeat_of_a_named_layer_numbers_the_name():
    graph = spec("  - dense: {units: 4}\n    name: hidden\n    repeat: 3\n", input_shape="[8]")
    assert names(graph) == ["hidden", "hidden_1", "hidden_2"]
    assert [n.inputs for n in graph.nodes] == [("input",), ("hidden",), ("hidden_1",)]


def test_param_substitution_and_defaults():
    blocks = """\
  conv:
    params: {filters: null, kernel: 3, activation: relu}
    layers:
      - conv2d: {filters: $filters, kernel: $kernel, activation: $activation}
"""
    graph = spec(
        "  - conv: {filters: 8}\n  - conv: {filters: 2, kernel: 1, activation: linear}\n",
        blocks=blocks,
    )
    first, second = graph.nodes
    assert (first.layer.filters, first.layer.kernel, first.layer.activation) == (8, (3, 3), "relu")
    assert (second.layer.filters, second.layer.kernel, second.layer.activation) == (
        2,
        (1, 1),
        "linear",
    )
    assert first.params == 8 * 3 * 3 * 3 + 8
    assert second.params == 2 * 8 + 2


def test_block_input_is_the_input_of_the_use_not_of_the_network():
    graph = compile_file(REPO / "specs/inception_mini.yaml")
    # The second inception reads the first one's concat; its branches all start from there.
    for name in ("inception_1/branch1", "inception_1/conv2d", "inception_1/conv2d_1"):
        assert graph.node(name).inputs == ("inception/concat",)
    assert graph.node("inception_1/maxpool2d").inputs == ("inception/concat",)
    assert graph.node("inception/branch1").inputs == ("maxpool2d",)


def test_block_params_can_name_layers():
    graph = compile_file(REPO / "specs/unet.yaml")
    # `skip: enc4` means the output of the block use named enc4.
    crop = graph.node("dec4/skip_crop")
    assert crop.inputs == ("enc4/double_conv/conv2d_1",)
    assert crop.layer.to == "dec4/upconv"
    assert crop.input_shapes == ((512, 64, 64),)
    assert crop.shape == (512, 56, 56)
    assert graph.node("dec1/skip_crop").inputs == ("enc1/conv2d_1",)


def test_batchnorm_counts_four_per_channel_two_frozen():
    graph = spec("  - batchnorm\n")
    (bn,) = graph.nodes
    assert (bn.params, bn.trainable_params, bn.non_trainable_params) == (12, 6, 6)


def test_trainable_false_on_a_layer():
    graph = spec(
        """\
  - conv2d: {filters: 4, kernel: 3}
    trainable: false
  - batchnorm:
    trainable: false
  - flatten
  - dense: {units: 2}
"""
    )
    conv, bn, _, dense = graph.nodes
    assert (conv.params, conv.trainable_params) == (4 * 27 + 4, 0)
    assert (bn.params, bn.trainable_params) == (16, 0)
    assert dense.trainable_params == dense.params == 4 * 14 * 14 * 2 + 2
    t = totals(rows(graph))
    assert t.non_trainable_params == 112 + 16
    assert t.trainable_params == dense.params
    assert re.search(r"^conv2d \(conv2d\) \[frozen\]", render(graph), re.MULTILINE)


def test_trainable_false_on_a_block_use_freezes_all_its_layers():
    blocks = """\
  stage:
    params: {filters: null}
    layers:
      - conv2d: {filters: $filters, kernel: 3, padding: same}
      - batchnorm
      - relu
"""
    graph = spec(
        "  - stage: {filters: 4}\n    trainable: false\n  - stage: {filters: 4}\n",
        blocks=blocks,
    )
    frozen = [n for n in graph.nodes if n.name.startswith("stage/")]
    free = [n for n in graph.nodes if n.name.startswith("stage_1/")]
    assert [n.trainable for n in frozen] == [False] * 3
    assert sum(n.trainable_params for n in frozen) == 0
    assert sum(n.params for n in frozen) == (4 * 27 + 4) + 16
    # The second use is trainable: conv and BatchNorm's gamma and beta; the moving stats are not.
    assert [n.trainable_params for n in free] == [4 * 36 + 4, 8, 0]
    t = totals(rows(graph))
    assert (t.trainable_params, t.non_trainable_params) == (148 + 8, 128 + 8)


def test_a_group_can_be_frozen_and_repeated():
    graph = spec(
        "  - layers: [{dense: {units: 4}}]\n    repeat: 2\n    trainable: false\n"
        "  - dense: {units: 1}\n",
        input_shape="[4]",
    )
    assert [(n.name, n.trainable_params) for n in graph.nodes] == [
        ("dense", 0),
        ("dense_1", 0),
        ("dense_2", 5),
    ]


def test_blocks_reject_recursion():
    with pytest.raises(SpecError, match=r"blocks nest more than 16 deep"):
        spec("  - loop\n", blocks="  loop:\n    layers: [loop]\n")


def test_unet_spec_is_short():
    lines = (REPO / "specs/unet.yaml").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 70
