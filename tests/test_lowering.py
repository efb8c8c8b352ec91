"""The PyTorch lowering: every example spec runs with the IR's shapes and counts, and the padding,
pooling, crop and head conventions match independent reference computations."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from helpers import plain_specs, spec_params  # noqa: E402

import netspec  # noqa: E402
from netspec.backends.export.parity import token_ids  # noqa: E402
from netspec.backends.lowering import (  # noqa: E402
    LOWERINGS,
    NetModule,
    build_module,
    count_tensors,
)
from netspec.ir import Graph, at_length, default_length  # noqa: E402

SPECS = plain_specs()
# The valid-convolution U-Net at its 572x572 tile is ~150 GMACs a sample; 188x188 is the
# smallest tile at which every skip crop works out, at a tenth of the cost.
SMALL_INPUTS = {"unet.yaml": [1, 188, 188]}


def ir_counts(graph: Graph) -> tuple[int, int]:
    return (
        sum(n.trainable_params for n in graph.nodes),
        sum(n.non_trainable_params for n in graph.nodes),
    )


def spec_graph(path: Path) -> Graph:
    if path.name not in SMALL_INPUTS:
        return netspec.compile_file(path)
    text = path.read_text()
    small, n = re.subn(
        r"^input: \[[0-9, ]+\]", f"input: {SMALL_INPUTS[path.name]}", text, flags=re.M
    )
    assert n == 1, f"{path.name}: no top-level `input:` line to replace"
    graph = netspec.compile_text(small, str(path))
    assert list(graph.input_shape) == SMALL_INPUTS[path.name]
    return graph


def build(text: str, seed: int = 0) -> tuple[Graph, NetModule]:
    graph = netspec.compile_text(text)
    torch.manual_seed(seed)
    return graph, build_module(graph)


def check_against_ir(graph: Graph, module: NetModule, batch: int = 2) -> torch.Tensor:
    """Forward a random batch; every node's shape, the output shape and the counts match the IR."""
    ids = token_ids(graph)  # an embedding reads the input: valid ids, not normal draws
    if graph.dynamic:  # a dynamic time axis: forwarded and compared at the default length
        graph = at_length(replace(graph, length=default_length(graph)))
    x = torch.randn(batch, *graph.input_shape)
    if ids is not None:
        x = torch.randint(0, ids, x.shape).float()
    with torch.no_grad():
        y = module(x)
    assert tuple(y.shape) == (batch, *graph.output.shape)
    assert module.trace_shapes(x) == {n.name: tuple(n.shape) for n in graph.nodes}
    assert count_tensors(module) == ir_counts(graph)
    return y


# --- every example spec ----------------------------------------------------------------------


def test_specs_found() -> None:
    assert len(SPECS) >= 10


@pytest.mark.parametrize("path", spec_params(SPECS))
def test_spec_lowers(path: Path) -> None:
    graph = spec_graph(path)
    torch.manual_seed(0)
    module = build_module(graph).eval()
    y = check_against_ir(graph, module)
    assert torch.isfinite(y).all()
    assert set(module.layers.keys()) == {n.name for n in graph.nodes}
    if module.head == "softmax":
        sums = y.sum(dim=module.head_dim)
        torch.testing.assert_close(sums, torch.ones_like(sums))


def test_unet_small_tile_shapes() -> None:
    graph = spec_graph(next(p for p in SPECS if p.name == "unet.yaml"))
    assert graph.output.shape == (2, 4, 4)
    assert graph.node("dec1/skip_crop").shape == (64, 8, 8)


# --- state dict, names, init, freezing ---------------------------------------------------------


MLP = """
name: mlp
input: [6]
layers:
  - dense: {units: 5, activation: relu}
    name: hidden
  - batchnorm
  - dense: {units: 3, activation: softmax}
    name: out
"""


def test_state_dict_keys_are_layer_names() -> None:
    _, module = build(MLP)
    assert list(module.state_dict()) == [
        "hidden.weight",
        "hidden.bias",
        "batchnorm.weight",
        "batchnorm.bias",
        "batchnorm.running_mean",
        "batchnorm.running_var",
        "batchnorm.num_batches_tracked",
        "out.weight",
        "out.bias",
    ]
    assert module.layers["hidden"] is module.layer("hidden")


def test_names_torch_cannot_use_are_mapped() -> None:
    text = """
name: odd_names
input: [4]
layers:
  - dense: {units: 3}
    name: a.b
  - dense: {units: 3}
    name: a_b
  - dense: {units: 3}
    name: train
  - dense: {units: 3}
    name: layers
  - dense: {units: 3}
    name: _stale
  - dense: {units: 2}
    name: keys
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    keys = module.module_keys
    assert keys["a_b"] == "a_b"
    assert "." not in keys["a.b"] and keys["a.b"] != "a_b"
    assert keys["train"] != "train" and keys["keys"] != "keys" and keys["layers"] != "layers"
    assert keys["_stale"] != "_stale"
    assert len(set(keys.values())) == 6
    assert set(module.layers.keys()) == set(keys.values())
    assert f"{keys['a.b']}.weight" in module.state_dict()
    assert module.layer("a.b").out_features == 3
    assert module.layer("keys").out_features == 2
    module.train()  # the method still works
    assert module.training


def test_glorot_uniform_kernels_and_zero_biases() -> None:
    text = """
name: init
input: [3, 12, 12]
layers:
  - conv2d: {filters: 40, kernel: 3}
  - conv_transpose2d: {filters: 20, kernel: 2, stride: 2}
  - flatten
  - dense: {units: 30}
"""
    _, module = build(text)
    for name, fan_in, fan_out in [
        ("conv2d", 3 * 9, 40 * 9),
        ("conv_transpose2d", 20 * 4, 40 * 4),
        ("dense", 20 * 20 * 20, 30),
    ]:
        layer = module.layer(name)
        limit = math.sqrt(6 / (fan_in + fan_out))
        w = layer.weight.detach()
        assert w.abs().max() <= limit
        assert w.abs().max() > 0.9 * limit  # uniform over the whole range, not torch's kaiming
        assert torch.equal(layer.bias.detach(), torch.zeros_like(layer.bias))


def test_deterministic_under_manual_seed() -> None:
    _, a = build(MLP, seed=3)
    _, b = build(MLP, seed=3)
    _, c = build(MLP, seed=4)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert not torch.equal(a.state_dict()["hidden.weight"], c.state_dict()["hidden.weight"])


def test_frozen_layers() -> None:
    text = """
name: frozen
input: [4, 6, 6]
layers:
  - conv2d: {filters: 5, kernel: 3}
    trainable: false
  - batchnorm:
    trainable: false
  - flatten
  - dense: {units: 2}
"""
    graph, module = build(text)
    assert all(not p.requires_grad for p in module.layer("conv2d").parameters())
    assert all(not p.requires_grad for p in module.layer("batchnorm").parameters())
    assert all(p.requires_grad for p in module.layer("dense").parameters())
    assert count_tensors(module) == ir_counts(graph) == (80 * 2 + 2, 5 * 4 * 9 + 5 + 4 * 5)
    # A frozen batchnorm keeps using (and never updates) its running statistics, as in Keras.
    module.train()
    bn = module.layer("batchnorm")
    before = bn.running_mean.clone()
    module(torch.randn(4, 4, 6, 6) * 3 + 1)
    assert torch.equal(bn.running_mean, before)


def test_batchnorm_momentum_and_eps() -> None:
    text = "name: bn\ninput: [3, 4]\nlayers:\n  - batchnorm: {momentum: 0.9, eps: 0.01}\n"
    graph, module = build(text)
    bn = module.layer("batchnorm")
    assert isinstance(bn, torch.nn.BatchNorm1d)
    assert bn.momentum == pytest.approx(0.1)
    assert bn.eps == 0.01
    assert count_tensors(module) == ir_counts(graph) == (6, 6)


def test_wrong_input_shape_is_explained() -> None:
    _, module = build(MLP)
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 6\), got \(2, 7\)"):
        module(torch.randn(2, 7))


def test_unknown_kind_has_no_silent_fallback() -> None:
    graph, _ = build(MLP)
    node = graph.node("hidden")
    saved = LOWERINGS.pop(type(node.layer))
    try:
        with pytest.raises(NotImplementedError, match="no PyTorch lowering for layer kind 'dense'"):
            build_module(graph)
    finally:
        LOWERINGS[type(node.layer)] = saved


# --- heads: forward vs forward_logits ----------------------------------------------------------


@pytest.mark.parametrize(
    "last",
    [
        "dense: {units: 4, activation: softmax}",
        "softmax",
        "activation: {fn: softmax}",
    ],
)
def test_softmax_head(last: str) -> None:
    text = f"name: h\ninput: [5]\nlayers:\n  - dense: {{units: 4, activation: tanh}}\n  - {last}\n"
    if last.startswith("dense"):
        text = f"name: h\ninput: [5]\nlayers:\n  - {last}\n"
    _, module = build(text)
    module = module.double()
    assert module.head == "softmax" and module.head_dim == 1
    x = torch.randn(8, 5, dtype=torch.float64) * 3
    with torch.no_grad():
        lhs = F.log_softmax(module.forward_logits(x), dim=1)
        rhs = torch.log(module(x))
    torch.testing.assert_close(lhs, rhs, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "last",
    ["dense: {units: 1, activation: sigmoid}", "sigmoid", "activation: {fn: sigmoid}"],
)
def test_sigmoid_head(last: str) -> None:
    text = f"name: h\ninput: [5]\nlayers:\n  - dense: {{units: 1}}\n  - {last}\n"
    if last.startswith("dense"):
        text = f"name: h\ninput: [5]\nlayers:\n  - {last}\n"
    _, module = build(text)
    assert module.head == "sigmoid"
    x = torch.randn(8, 5)
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(module.forward_logits(x)), module(x))
        assert not torch.allclose(module.forward_logits(x), module(x))


def test_conv_softmax_head_is_over_channels() -> None:
    text = """
name: seg
input: [2, 5, 5]
layers:
  - conv2d: {filters: 3, kernel: 1, activation: softmax}
"""
    _, module = build(text)
    assert (module.head, module.head_dim) == ("softmax", 1)
    x = torch.randn(2, 2, 5, 5)
    with torch.no_grad():
        y = module(x)
        torch.testing.assert_close(y.sum(1), torch.ones(2, 5, 5))
        torch.testing.assert_close(torch.softmax(module.forward_logits(x), 1), y)


def test_no_head() -> None:
    text = "name: r\ninput: [5]\nlayers:\n  - dense: {units: 2, activation: relu}\n"
    _, module = build(text)
    assert module.head is None
    x = torch.randn(3, 5)
    with torch.no_grad():
        torch.testing.assert_close(module.forward_logits(x), module(x))


# --- SAME convolution: TF-style reference ------------------------------------------------------


def tf_same_pads(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME: output ceil(n/s); the odd extra pad goes at the end."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize(
    ("h", "w", "k", "s", "d"),
    [(8, 8, 3, 2, 1), (7, 7, 3, 2, 1), (8, 7, 4, 2, 1), (9, 6, 2, 2, 1), (10, 9, 3, 2, 2)],
)
def test_conv2d_same_matches_tf(h: int, w: int, k: int, s: int, d: int) -> None:
    text = f"""
name: same
input: [3, {h}, {w}]
layers:
  - conv2d: {{filters: 4, kernel: {k}, stride: {s}, dilation: {d}, padding: same}}
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    assert graph.output.shape == (4, -(-h // s), -(-w // s))
    conv = module.layer("conv2d")
    x = torch.randn(2, 3, h, w)
    (ht, hb), (wl, wr) = tf_same_pads(h, k, s, d), tf_same_pads(w, k, s, d)
    ref = F.conv2d(F.pad(x, (wl, wr, ht, hb)), conv.weight, conv.bias, stride=s, dilation=d)
    with torch.no_grad():
        torch.testing.assert_close(module(x), ref)


@pytest.mark.parametrize(("n", "k", "s"), [(10, 3, 2), (11, 4, 2), (9, 5, 3)])
def test_conv1d_same_matches_tf(n: int, k: int, s: int) -> None:
    text = f"""
name: same1d
input: [2, {n}]
layers:
  - conv1d: {{filters: 3, kernel: {k}, stride: {s}, padding: same, activation: relu}}
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    conv = module.layer("conv1d")
    x = torch.randn(2, 2, n)
    ref = F.relu(F.conv1d(F.pad(x, tf_same_pads(n, k, s)), conv.weight, conv.bias, stride=s))
    with torch.no_grad():
        torch.testing.assert_close(module(x), ref)


def test_symmetric_padding_uses_the_conv_argument() -> None:
    text = """
name: pad
input: [1, 6, 6]
layers:
  - conv2d: {filters: 1, kernel: 3, padding: same}
    name: same
  - conv2d: {filters: 1, kernel: 3, padding: [2, 1], groups: 1, bias: false}
    name: explicit
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    assert module.layer("same").padding == (1, 1) and module.layer("same").pre_pad is None
    assert module.layer("explicit").padding == (2, 1)


def test_grouped_conv_matches_torch() -> None:
    text = """
name: grouped
input: [4, 7, 7]
layers:
  - conv2d: {filters: 6, kernel: 3, groups: 2, padding: 1, bias: false}
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    conv = module.layer("conv2d")
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(module(x), F.conv2d(x, conv.weight, None, padding=1, groups=2))


# --- pooling -----------------------------------------------------------------------------------


def manual_pool2d(x: torch.Tensor, k: int, s: int, pads: tuple[int, int, int, int], op: str):
    """Loop reference: max or mean over the in-bounds cells of each window."""
    top, bottom, left, right = pads
    n, c, h, w = x.shape
    oh = (h + top + bottom - k) // s + 1
    ow = (w + left + right - k) // s + 1
    out = torch.empty(n, c, oh, ow, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s - top, j * s - left
            win = x[:, :, max(r0, 0) : min(r0 + k, h), max(c0, 0) : min(c0 + k, w)]
            out[:, :, i, j] = win.amax((2, 3)) if op == "max" else win.mean((2, 3))
    return out


@pytest.mark.parametrize("kind", ["avgpool2d", "maxpool2d"])
@pytest.mark.parametrize(
    ("h", "w", "k", "s"), [(5, 5, 2, 2), (6, 7, 3, 2), (6, 6, 3, 1), (7, 4, 3, 3), (4, 4, 1, 2)]
)
def test_pool2d_same_excludes_padding(kind: str, h: int, w: int, k: int, s: int) -> None:
    text = f"""
name: pool
input: [2, {h}, {w}]
layers:
  - {kind}: {{size: {k}, stride: {s}, padding: same}}
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    x = torch.randn(2, 2, h, w, dtype=torch.float64)
    pads = (*tf_same_pads(h, k, s), *tf_same_pads(w, k, s))
    ref = manual_pool2d(x, k, s, pads, "max" if kind == "maxpool2d" else "avg")
    with torch.no_grad():
        torch.testing.assert_close(module.double()(x), ref)


def test_avgpool_same_border_value() -> None:
    # 5x5 ones*position, size 2 stride 2 SAME: the last row/column of windows holds only real
    # cells of the input's last row/column, so their mean is that of 2 (or 1) cells, not 4.
    text = "name: p\ninput: [1, 5, 5]\nlayers:\n  - avgpool2d: {size: 2, padding: same}\n"
    _, module = build(text)
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    y = module(x)
    assert y.shape == (1, 1, 3, 3)
    assert y[0, 0, 2, 2].item() == 24.0
    assert y[0, 0, 2, 0].item() == pytest.approx((20 + 21) / 2)
    assert y[0, 0, 0, 2].item() == pytest.approx((4 + 9) / 2)


def test_avgpool_explicit_padding_excludes_padding() -> None:
    # padding 2 with a window of 3 is more than torch's pools allow natively.
    text = "name: p\ninput: [1, 4, 4]\nlayers:\n  - avgpool2d: {size: 3, stride: 1, padding: 2}\n"
    graph, module = build(text)
    check_against_ir(graph, module)
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(module.double()(x), manual_pool2d(x, 3, 1, (2, 2, 2, 2), "avg"))


def manual_pool1d(x: torch.Tensor, k: int, s: int, pads: tuple[int, int], op: str):
    n = x.shape[-1]
    out = []
    for i in range((n + sum(pads) - k) // s + 1):
        start = i * s - pads[0]
        win = x[..., max(start, 0) : min(start + k, n)]
        out.append(win.amax(-1) if op == "max" else win.mean(-1))
    return torch.stack(out, -1)


@pytest.mark.parametrize("kind", ["avgpool1d", "maxpool1d"])
@pytest.mark.parametrize(("n", "k", "s"), [(7, 2, 2), (9, 3, 2), (8, 3, 1), (8, 4, 3)])
def test_pool1d_same(kind: str, n: int, k: int, s: int) -> None:
    text = f"name: p\ninput: [3, {n}]\nlayers:\n  - {kind}: {{size: {k}, stride: {s}, padding: same}}\n"
    graph, module = build(text)
    check_against_ir(graph, module)
    x = torch.randn(2, 3, n, dtype=torch.float64)
    ref = manual_pool1d(x, k, s, tf_same_pads(n, k, s), kind[:3])
    with torch.no_grad():
        torch.testing.assert_close(module.double()(x), ref)


def test_pool_stride_defaults_to_size() -> None:
    text = "name: p\ninput: [1, 6, 9]\nlayers:\n  - maxpool2d: {size: [2, 3]}\n"
    graph, module = build(text)
    check_against_ir(graph, module)
    x = torch.randn(2, 1, 6, 9)
    torch.testing.assert_close(module(x), F.max_pool2d(x, (2, 3)))


def test_avgpool_follows_device_and_dtype() -> None:
    text = "name: p\ninput: [1, 5, 5]\nlayers:\n  - avgpool2d: {size: 2, padding: same}\n"
    _, module = build(text)
    y = module.to(torch.float64)(torch.ones(1, 1, 5, 5, dtype=torch.float64))
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, torch.ones(1, 1, 3, 3, dtype=torch.float64))
    assert count_tensors(module) == (0, 0)
    assert list(module.state_dict()) == []


def test_global_pools() -> None:
    text = """
name: g
input: [3, 4, 5]
layers:
  - global_maxpool2d: {keepdims: true}
    name: gmax
  - global_avgpool2d:
    name: gavg
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(module(x), x.amax((2, 3)))


# --- crop, transposed convolution, merges ------------------------------------------------------


def test_crop2d_odd_difference_cuts_extra_at_the_end() -> None:
    text = """
name: crop
input: [1, 8, 9]
layers:
  - conv2d: {filters: 1, kernel: [4, 4]}
    name: small
  - crop2d: {to: small}
    inputs: [input]
    name: cropped
  - concat:
    inputs: [cropped, small]
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    assert graph.node("small").shape == (1, 5, 6)
    x = torch.randn(2, 1, 8, 9)
    with torch.no_grad():
        y = module(x)
    # Differences 3 and 3: one row/column cut at the top/left, two at the bottom/right.
    torch.testing.assert_close(y[:, :1], x[:, :, 1:6, 1:7])
    torch.testing.assert_close(y[:, 1:], module.layer("small")(x))


@pytest.mark.parametrize(
    ("k", "s"),
    [
        (3, 2),
        (2, 2),
        (4, 2),
        (5, 3),
        (3, 1),
        (1, 2),
        (2, 3),
    ],
)
def test_conv_transpose_same_gives_n_times_s(k: int, s: int) -> None:
    h, w = 5, 6
    text = f"""
name: up
input: [2, {h}, {w}]
layers:
  - conv_transpose2d: {{filters: 3, kernel: {k}, stride: {s}, padding: same}}
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    assert graph.output.shape == (3, h * s, w * s)
    layer = module.layer("conv_transpose2d")
    x = torch.randn(2, 2, h, w)
    # The full output is (n-1)s + k; when k < s it is s - k short of n*s, and the missing
    # rows at the end see no input (bias only): torch's output_padding gives exactly that.
    grow = max(s - k, 0)
    full = F.conv_transpose2d(x, layer.weight, layer.bias, stride=s, output_padding=grow)
    begin = max(k - s, 0) // 2  # of the full output, SAME keeps n*s from here
    ref = full[:, :, begin : begin + h * s, begin : begin + w * s]
    with torch.no_grad():
        torch.testing.assert_close(module(x), ref)


@pytest.mark.parametrize(("k", "s"), [(1, 2), (2, 3), (3, 2), (2, 2)])
def test_conv_transpose_valid_follows_keras(k: int, s: int) -> None:
    # Keras: valid gives n*s + max(k - s, 0).
    h, w = 4, 7
    text = f"""
name: up
input: [2, {h}, {w}]
layers:
  - conv_transpose2d: {{filters: 3, kernel: {k}, stride: {s}}}
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    assert graph.output.shape == (3, h * s + max(k - s, 0), w * s + max(k - s, 0))


def test_conv_transpose_output_padding_and_explicit_padding() -> None:
    text = """
name: up
input: [2, 4, 4]
layers:
  - conv_transpose2d: {filters: 3, kernel: 3, stride: 2, padding: 1, output_padding: 1, activation: relu}
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    assert graph.output.shape == (3, 8, 8)
    layer = module.layer("conv_transpose2d")
    x = torch.randn(2, 2, 4, 4)
    ref = F.relu(
        F.conv_transpose2d(x, layer.weight, layer.bias, stride=2, padding=1, output_padding=1)
    )
    with torch.no_grad():
        torch.testing.assert_close(module(x), ref)


def test_concat_axis_and_add() -> None:
    text = """
name: merge
input: [2, 3, 4]
layers:
  - conv2d: {filters: 2, kernel: 1}
    name: a
  - add:
    inputs: [input, a, input]
    name: s
  - concat: {axis: -1}
    inputs: [s, a]
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    x = torch.randn(2, 2, 3, 4)
    with torch.no_grad():
        a = module.layer("a")(x)
        torch.testing.assert_close(module(x), torch.cat([x + a + x, a], dim=3))


def test_intermediate_tensors_are_dropped_after_last_use() -> None:
    text = """
name: skip
input: [4]
layers:
  - dense: {units: 4}
    name: a
  - dense: {units: 4}
    name: b
  - dense: {units: 4}
    name: c
  - add:
    inputs: [a, c]
"""
    _, module = build(text)
    frees = {step: set(f) for step, (_, _, _, f) in enumerate(module._programs[0])}
    # slots: 0 input, 1 a, 2 b, 3 c, 4 add. b dies after c reads it; a and c after the add.
    assert frees[0] == set() and frees[1] == set() and frees[2] == {2} and frees[3] == {1, 3}


# --- the remaining layer semantics -------------------------------------------------------------


def test_flatten_is_channels_first_and_reshape_keeps_batch() -> None:
    text = """
name: fl
input: [2, 3, 4]
layers:
  - flatten
  - reshape: {shape: [4, -1]}
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    x = torch.randn(5, 2, 3, 4)
    torch.testing.assert_close(module(x), x.reshape(5, 24).reshape(5, 4, 6))


def test_dense_on_last_axis_and_layernorm() -> None:
    text = """
name: seq
input: [3, 5]
layers:
  - dense: {units: 4, activation: gelu}
  - layernorm: {eps: 0.001}
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    d = module.layer("dense")
    x = torch.randn(2, 3, 5)
    ref = F.layer_norm(F.gelu(x @ d.weight.T + d.bias), (4,), eps=0.001)
    with torch.no_grad():
        torch.testing.assert_close(module(x), ref)


@pytest.mark.parametrize(
    ("item", "fn"),
    [
        ("relu", F.relu),
        ("leaky_relu: {negative_slope: 0.2}", lambda x: F.leaky_relu(x, 0.2)),
        ("activation: {fn: leaky_relu}", lambda x: F.leaky_relu(x, 0.01)),
        ("sigmoid", torch.sigmoid),
        ("tanh", torch.tanh),
        ("softmax", lambda x: torch.softmax(x, 1)),
        ("softmax: {axis: -1}", lambda x: torch.softmax(x, 3)),
        ("softmax: {axis: 1}", lambda x: torch.softmax(x, 2)),
        ("gelu", F.gelu),
        ("gelu: {approximate: tanh}", lambda x: F.gelu(x, approximate="tanh")),
        ("silu", F.silu),
        ("relu6", F.relu6),
        ("activation: {fn: linear}", lambda x: x),
        ("activation: {fn: relu6}", F.relu6),
    ],
)
def test_activation_layers(item: str, fn) -> None:
    text = f"name: a\ninput: [3, 4, 5]\nlayers:\n  - {item}\n"
    graph, module = build(text)
    check_against_ir(graph, module)
    x = torch.randn(2, 3, 4, 5) * 8
    torch.testing.assert_close(module(x), fn(x))


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsample_and_zeropad(mode: str) -> None:
    text = f"""
name: up
input: [2, 3, 4]
layers:
  - upsample2d: {{scale: [2, 3], mode: {mode}}}
  - zeropad2d: {{padding: [1, 2, 3, 4]}}
"""
    graph, module = build(text)
    check_against_ir(graph, module)
    x = torch.randn(2, 2, 3, 4)
    if mode == "nearest":
        up = x.repeat_interleave(2, dim=2).repeat_interleave(3, dim=3)
    else:
        up = F.interpolate(x, size=(6, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(module(x), F.pad(up, (3, 4, 1, 2)))


def test_dropout_only_while_training() -> None:
    text = "name: d\ninput: [1000]\nlayers:\n  - dropout: {rate: 0.25}\n"
    _, module = build(text)
    x = torch.ones(4, 1000)
    assert torch.equal(module.eval()(x), x)
    y = module.train()(x)
    assert 0.15 < (y == 0).float().mean().item() < 0.35
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))


def test_backward_through_a_branching_graph() -> None:
    graph = spec_graph(next(p for p in SPECS if p.name == "resnet_cifar.yaml"))
    torch.manual_seed(0)
    module = build_module(graph).train()
    x = torch.randn(4, *graph.input_shape)
    target = torch.tensor([0, 1, 2, 3])
    loss = F.nll_loss(F.log_softmax(module.forward_logits(x), 1), target)
    loss.backward()
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# --- nn.Module behaviour: hooks, replaced children, copies ---------------------------------------

BRANCHY = """
name: branchy
input: [3]
layers:
  - dense: {units: 3}
    name: a
  - relu
  - add:
    inputs: [input, relu]
  - dense: {units: 2}
"""


def test_hooks_on_stateless_layers_fire() -> None:
    _, module = build(BRANCHY)
    x = torch.randn(2, 3)
    seen: list[str] = []
    handle = module.layer("relu").register_forward_hook(lambda m, i, o: seen.append("relu"))
    module(x)
    assert seen == ["relu"]
    handle.remove()
    module(x)
    assert seen == ["relu"]
    register = torch.nn.modules.module.register_module_forward_hook
    handle = register(lambda m, i, o: seen.append(type(m).__name__))
    try:
        module(x)
    finally:
        handle.remove()
    assert seen[1:] == ["LinearAct", "ReLU", "Sum", "LinearAct", "NetModule"]


def test_replaced_child_is_used() -> None:
    _, module = build(BRANCHY)
    x = torch.randn(2, 3)
    module(x)
    module.relu = torch.nn.Tanh()
    assert isinstance(module.layers["relu"], torch.nn.Tanh)
    with torch.no_grad():
        a = module.layer("a")(x)
        torch.testing.assert_close(module(x), module.layer("dense")(x + torch.tanh(a)))


def test_deepcopy_is_independent() -> None:
    import copy

    _, module = build(BRANCHY)
    clone = copy.deepcopy(module)
    x = torch.randn(2, 3)
    with torch.no_grad():
        clone.layer("dense").weight.add_(1.0)
        assert not torch.allclose(clone(x), module(x))
        assert clone.layers["dense"] is clone.layer("dense") is not module.layer("dense")
