"""Every layer kind is lowered: each kind in netspec.layers.LAYER_KINDS needs a row in
LOWERINGS and EXPORTS (its own, or its family's, found by `table_entry`) and an example spec
here, or this test fails (so a half-added kind fails CI)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import netspec  # noqa: E402
from netspec.backends.lowering import (  # noqa: E402
    LOWERINGS,
    NetModule,
    build_module,
    count_tensors,
)
from netspec.ir import Graph  # noqa: E402
from netspec.layers import (  # noqa: E402
    LAYER_KINDS,
    ActivationLayer,
    Conv,
    GlobalPool,
    Layer,
    Pool,
    Recurrent,
    table_entry,
)
from netspec.layers.base import ACTIVATIONS  # noqa: E402


def spec(input_shape: str, *items: str) -> str:
    lines = "\n".join(f"  - {item}" for item in items)
    return f"name: example\ninput: {input_shape}\nlayers:\n{lines}\n"


# One tiny spec per layer kind (the YAML key). A new kind without an entry fails its test.
EXAMPLES: dict[str, str] = {
    "dense": spec("[6]", "dense: {units: 4, activation: relu}", "dense: {units: 3, bias: false}"),
    "conv1d": spec("[2, 9]", "conv1d: {filters: 3, kernel: 3, stride: 2, padding: same}"),
    "conv2d": spec("[2, 7, 6]", "conv2d: {filters: 4, kernel: [3, 2], padding: same, stride: 2}"),
    "separable_conv2d": spec(
        "[3, 7, 6]",
        "separable_conv2d: {filters: 4, kernel: 3, padding: same, stride: 2, depth_multiplier: 2}",
        "separable_conv2d: {filters: 2, kernel: [2, 3], bias: false, activation: hard_swish}",
    ),
    "conv_transpose2d": spec("[3, 4, 5]", "conv_transpose2d: {filters: 2, kernel: 3, stride: 2}"),
    "maxpool1d": spec("[2, 9]", "maxpool1d: {size: 2, padding: same}"),
    "maxpool2d": spec("[2, 7, 6]", "maxpool2d: {size: 3, stride: 2, padding: same}"),
    "avgpool1d": spec("[2, 9]", "avgpool1d: {size: 3, stride: 2, padding: same}"),
    "avgpool2d": spec("[2, 7, 6]", "avgpool2d: {size: 2}"),
    "global_avgpool1d": spec("[3, 5]", "global_avgpool1d"),
    "global_avgpool2d": spec("[3, 4, 5]", "global_avgpool2d: {keepdims: true}"),
    "global_maxpool1d": spec("[3, 5]", "global_maxpool1d: {keepdims: true}"),
    "global_maxpool2d": spec("[3, 4, 5]", "global_maxpool2d"),
    "flatten": spec("[2, 3, 4]", "flatten"),
    "reshape": spec("[12]", "reshape: {shape: [3, -1]}"),
    "dropout": spec("[8]", "dropout: {rate: 0.3}"),
    "batchnorm": spec("[3, 4, 5]", "batchnorm: {momentum: 0.9}"),
    "layernorm": spec("[3, 5]", "layernorm"),
    "activation": spec("[6]", "activation: {fn: tanh}"),
    "relu": spec("[6]", "relu"),
    "leaky_relu": spec("[6]", "leaky_relu: {negative_slope: 0.1}"),
    "sigmoid": spec("[6]", "sigmoid"),
    "tanh": spec("[6]", "tanh"),
    "softmax": spec("[3, 4]", "softmax: {axis: -1}"),
    "gelu": spec("[6]", "gelu"),
    "silu": spec("[6]", "silu"),
    "relu6": spec("[6]", "relu6"),
    "hard_sigmoid": spec("[6]", "hard_sigmoid"),
    "hard_swish": spec("[2, 3, 3]", "hard_swish"),
    "elu": spec(
        "[2, 3, 3]", "elu: {alpha: 0.7}", "conv2d: {filters: 2, kernel: 1, activation: elu}"
    ),
    "clip": spec("[2, 3, 3]", "clip: {min: -0.5, max: 0.75}"),
    "prelu": spec("[3, 4, 5]", "prelu", "conv2d: {filters: 2, kernel: 1}", "prelu: {shared: true}"),
    "upsample2d": spec("[2, 3, 4]", "upsample2d: {scale: 2, mode: bilinear}"),
    "upsample1d": spec("[2, 5]", "upsample1d: {scale: 3}"),
    "zeropad1d": spec("[2, 5]", "zeropad1d: {padding: [2, 1]}"),
    "zeropad2d": spec("[2, 3, 4]", "zeropad2d: {padding: [1, 0, 2, 3]}"),
    "trim1d": spec("[2, 6]", "trim1d: {trim: [2, 1]}"),
    "trim2d": spec("[2, 5, 6]", "trim2d: {trim: [1, 0, 2, 3]}"),
    "crop2d": spec(
        "[2, 8, 8]",
        "conv2d: {filters: 2, kernel: 3}\n    name: small",
        "crop2d: {to: small}\n    inputs: [input]\n    name: crop",
        "concat:\n    inputs: [crop, small]",
    ),
    "concat": spec(
        "[2, 4, 4]",
        "conv2d: {filters: 3, kernel: 1}\n    name: a",
        "concat:\n    inputs: [input, a]",
    ),
    "add": spec(
        "[5]",
        "dense: {units: 5}\n    name: a",
        "add:\n    inputs: [input, a]",
    ),
    "permute": spec("[2, 3, 4]", "permute: {dims: [2, 0, 1]}"),
    "multiply": spec(
        "[4, 4]",
        "global_avgpool1d: {}\n    name: p",
        "dense: {units: 4, activation: sigmoid}\n    inputs: [input]\n    name: g",
        "multiply:\n    inputs: [input, g, p]",
    ),
    "embedding": spec("[5]", "embedding: {input_dim: 7, output_dim: 3}", "dense: {units: 2}"),
    "masking": spec(
        "[5, 3]",
        "masking: {value: 0.0}",
        "gru: {units: 4, bidirectional: true, return_sequences: true}",
        "seq_pool: {op: last}",
    ),
    "simple_rnn": spec(
        "[5, 3]", "simple_rnn: {units: 4, return_sequences: true}", "simple_rnn: {units: 2}"
    ),
    "gru": spec(
        "[5, 3]", "gru: {units: 4, bidirectional: true, return_sequences: true}", "gru: {units: 2}"
    ),
    "position_embedding": spec(
        "[4]",
        "embedding: {input_dim: 9, output_dim: 3}",
        "position_embedding: {max_length: 6}",
    ),
    "seq_pool": spec(
        "[5, 3]",
        "seq_pool: {op: mean}\n    name: mean",
        "seq_pool: {op: max}\n    inputs: [input]\n    name: max",
        "seq_pool: {op: last}\n    inputs: [input]\n    name: last",
        "concat:\n    inputs: [mean, max, last]",
    ),
    "multi_head_attention": spec(
        "[4, 6]",
        "multi_head_attention: {num_heads: 2, key_dim: 3, causal: true}\n    name: self",
        "permute: {dims: [1, 0]}\n    inputs: [input]\n    name: p",
        "multi_head_attention: {num_heads: 2, key_dim: 3, value_dim: 5}\n    inputs: [self, p]",
    ),
    "lstm": spec(
        "[5, 3]",
        "lstm: {units: 4, return_sequences: true}",
        "lstm: {units: 2, bidirectional: true}",
    ),
}


def ir_counts(graph: Graph) -> tuple[int, int]:
    return (
        sum(n.trainable_params for n in graph.nodes),
        sum(n.non_trainable_params for n in graph.nodes),
    )


def example_graph(kind: type[Layer]) -> Graph:
    if kind.kind not in EXAMPLES:
        pytest.fail(f"layer kind '{kind.kind}' has no example spec in tests/test_completeness.py")
    graph = netspec.compile_text(EXAMPLES[kind.kind], f"<example {kind.kind}>")
    assert any(type(n.layer) is kind for n in graph.nodes), f"the example does not use {kind.kind}"
    return graph


def token_ids(graph: Graph) -> int | None:
    """The number of valid ids when an embedding reads the input (the input is then token ids)."""
    dims = [n.layer.input_dim for n in graph.nodes if n.kind == "embedding" and "input" in n.inputs]
    return min(dims) if dims else None


def sample_input(graph: Graph, batch: int) -> torch.Tensor:
    """Standard-normal inputs, or valid token ids (as floats) for an embedding."""
    ids = token_ids(graph)
    if ids is None:
        return torch.randn(batch, *graph.input_shape)
    return torch.randint(0, ids, (batch, *graph.input_shape)).float()


# --- the checks every kind goes through ------------------------------------------------------


def check_torch_forward(graph: Graph, module: NetModule) -> None:
    """Forward (eval and train, with a backward) matches the IR's shapes and counts."""
    x = sample_input(graph, 2)
    module.eval()
    with torch.no_grad():
        y = module(x)
    assert tuple(y.shape) == (2, *graph.output.shape)
    assert torch.isfinite(y).all()
    assert module.trace_shapes(x) == {n.name: tuple(n.shape) for n in graph.nodes}
    assert count_tensors(module) == ir_counts(graph)
    module.train()
    out = module(x.requires_grad_(True))
    out.sum().backward()
    if token_ids(graph) is None:
        assert x.grad is not None and x.grad.shape == x.shape
    else:  # token ids carry no gradient; the table does
        assert all(p.grad is not None for p in module.parameters())


def check_onnx_parity(graph: Graph, module: NetModule) -> None:
    """Export straight from the IR; onnx.checker, strict shape inference and onnxruntime agree."""
    pytest.importorskip("onnxruntime")
    from netspec.backends.export.emit import EXPORTS
    from netspec.backends.export.model import check_model, export_onnx
    from netspec.backends.export.parity import check_parity, random_inputs
    from netspec.backends.weights import module_weights

    for node in graph.nodes:
        assert table_entry(EXPORTS, type(node.layer)), (
            f"layer kind '{node.kind}' has no EXPORTS row"
        )
    randomize_batchnorm(module)
    weights = module_weights(module.eval())
    model = export_onnx(graph, weights)
    check_model(model, graph)
    diffs = check_parity(graph, weights, model, random_inputs(graph), module=module)
    assert set(diffs) == {"random batch 1", "random batch 7"}


def randomize_batchnorm(module: NetModule) -> None:
    """Running statistics and affine parameters away from their identity defaults."""
    gen = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=gen) * 2 - 1)
                m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(c, generator=gen) - 0.5)


# The list of checks run for every layer kind: the PyTorch forward, and the ONNX export with
# onnxruntime parity against that forward.
CHECKS = [
    pytest.param(check_torch_forward, id="torch"),
    pytest.param(check_onnx_parity, id="onnx"),
]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("kind", LAYER_KINDS, ids=[k.kind for k in LAYER_KINDS])
def test_layer_kind_is_lowered(kind: type[Layer], check: Callable[[Graph, NetModule], None]):
    assert table_entry(LOWERINGS, kind), f"layer kind '{kind.kind}' has no LOWERINGS row"
    graph = example_graph(kind)
    torch.manual_seed(0)
    check(graph, build_module(graph))


def test_no_stale_examples() -> None:
    kinds = {k.kind for k in LAYER_KINDS}
    assert set(EXAMPLES) <= kinds, f"examples for unknown kinds: {set(EXAMPLES) - kinds}"


def stale_rows(table: dict[type[Layer], object]) -> list[type[Layer]]:
    """Rows that serve no layer kind: neither a kind nor a base class of one."""
    return [c for c in table if not any(issubclass(k, c) for k in LAYER_KINDS)]


def test_both_backends_key_the_same_classes() -> None:
    """LOWERINGS and EXPORTS have one row per kind or family, the same rows, none stale."""
    from netspec.backends.export.emit import EXPORTS

    assert not stale_rows(LOWERINGS), stale_rows(LOWERINGS)
    assert set(LOWERINGS) == set(EXPORTS)


@pytest.mark.parametrize(
    "family", [ActivationLayer, Conv, Pool, GlobalPool, Recurrent], ids=lambda f: f.__name__
)
def test_a_family_member_needs_no_backend_row(family: type[Layer]) -> None:
    """Every kind of a family (every activation, conv1d/2d, the pools, the recurrent layers) is served by the
    family's one row in each backend, found through the class hierarchy."""
    from netspec.backends.export.emit import EXPORTS

    members = [k for k in LAYER_KINDS if issubclass(k, family)]
    assert len(members) >= 2
    for table in (LOWERINGS, EXPORTS):
        assert not set(members) & set(table)
        assert {table_entry(table, k) for k in members} == {table[family]}


# --- the torch lowering against Layer.weights --------------------------------------------------


@pytest.mark.parametrize("kind", LAYER_KINDS, ids=[k.kind for k in LAYER_KINDS])
def test_torch_tensors_are_the_layer_weights(kind: type[Layer]) -> None:
    """Per node, the state_dict is exactly `Layer.weights()` (names and shapes); a trainable
    Weight is a parameter with requires_grad, a non-trainable one a buffer."""
    assert table_entry(LOWERINGS, kind), f"layer kind '{kind.kind}' has no LOWERINGS row"
    graph = example_graph(kind)
    module = build_module(graph)
    for node in graph.nodes:
        sub = module.layer(node.name)
        # torch's batchnorm step counter is bookkeeping, not a weight of the layer.
        state = {
            k: tuple(v.shape)
            for k, v in sub.state_dict().items()
            if k.rsplit(".", 1)[-1] != "num_batches_tracked"
        }
        expected = node.weights
        assert state == {k: tuple(w.shape) for k, w in expected.items()}, node.name
        params = dict(sub.named_parameters())
        buffers = {k for k, _ in sub.named_buffers() if not k.endswith("num_batches_tracked")}
        for name, w in expected.items():
            if w.trainable:
                assert name in params, f"{node.name}.{name} should be a parameter"
                assert params[name].requires_grad == node.trainable, f"{node.name}.{name}"
            else:
                assert name in buffers, f"{node.name}.{name} should be a buffer"


@pytest.mark.parametrize("fn", ACTIVATIONS)
def test_every_activation_name_lowers(fn: str) -> None:
    """The fused `activation:` of dense and the bare `activation` layer compute the same function."""
    graph = netspec.compile_text(
        spec(
            "[5]",
            f"dense: {{units: 4, activation: {fn}}}\n    name: fused",
            f"activation: {{fn: {fn}}}\n    name: bare",
        ),
        f"<activation {fn}>",
    )
    torch.manual_seed(0)
    module = build_module(graph).eval()
    fused, bare = module.layer("fused"), module.layer("bare")
    x = torch.randn(3, 5)
    with torch.no_grad():
        z = fused.forward_linear(x)
        torch.testing.assert_close(fused(x), bare(z), rtol=0, atol=0)
        assert fused.act_name == fn
        if fn != "linear":
            assert not torch.equal(bare(z), z), f"activation '{fn}' lowered to the identity"


# --- the ONNX side: every kind and activation is emitted, from the declared weights only ---------


def test_every_kind_has_an_onnx_emission() -> None:
    from netspec.backends.export.emit import EXPORTS

    missing = [k.kind for k in LAYER_KINDS if table_entry(EXPORTS, k) is None]
    assert not missing, f"layer kinds without a row in export.emit.EXPORTS: {missing}"
    assert not stale_rows(EXPORTS), "EXPORTS lists classes that serve no layer kind"


def test_every_activation_has_an_onnx_emission() -> None:
    from netspec.backends.export.emitter import ACT_EXPORTS

    assert set(ACT_EXPORTS) == set(ACTIVATIONS), (
        f"export.emitter.ACT_EXPORTS lacks {set(ACTIVATIONS) - set(ACT_EXPORTS)}, "
        f"has unknown {set(ACT_EXPORTS) - set(ACTIVATIONS)}"
    )


# Each activation name, bare and fused into the weighted layers (dense on rank 1 and 2, conv2d).
ACTIVATION_USES = {
    "bare": lambda fn: spec("[3, 4]", f"activation: {{fn: {fn}}}"),
    "dense": lambda fn: spec("[6]", f"dense: {{units: 4, activation: {fn}}}"),
    "dense_rank2": lambda fn: spec("[3, 6]", f"dense: {{units: 4, activation: {fn}}}"),
    "conv2d": lambda fn: spec("[2, 5, 5]", f"conv2d: {{filters: 3, kernel: 3, activation: {fn}}}"),
}


@pytest.mark.parametrize("use", list(ACTIVATION_USES))
@pytest.mark.parametrize("fn", ACTIVATIONS)
def test_activation_exports_with_parity(fn: str, use: str) -> None:
    """Every activation name, bare or fused, passes the ONNX checks and matches PyTorch."""
    pytest.importorskip("onnxruntime")
    from netspec.backends.export.model import check_model, export_onnx
    from netspec.backends.export.parity import check_parity, random_inputs
    from netspec.backends.weights import module_weights

    graph = netspec.compile_text(ACTIVATION_USES[use](fn), f"<{use} {fn}>")
    torch.manual_seed(0)
    module = build_module(graph).eval()
    weights = module_weights(module)
    model = export_onnx(graph, weights)
    check_model(model, graph)
    check_parity(graph, weights, model, random_inputs(graph), module=module)


class ReadLog(dict):
    """A weights dict that records every tensor name the exporter asks for."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> object:
        self.asked.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: object = None) -> object:
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


@pytest.mark.parametrize("fold", [False, True], ids=["plain", "folded"])
@pytest.mark.parametrize("kind", LAYER_KINDS, ids=[k.kind for k in LAYER_KINDS])
def test_onnx_initializers_are_the_declared_weights(kind: type[Layer], fold: bool) -> None:
    """Exporting with exactly the tensors `Layer.weights` declares works, asks for no other,
    and (unfolded) every `<layer>.<tensor>` initializer is a declared tensor, values unchanged."""
    from onnx import numpy_helper

    from netspec.backends.export.model import export_onnx

    graph = example_graph(kind)
    rng = np.random.default_rng(0)
    declared = {
        f"{n.name}.{t}": rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
        for n in graph.nodes
        for t, w in n.weights.items()
    }
    weights = ReadLog(declared)
    model = export_onnx(graph, weights, fold_batchnorm=fold)
    assert weights.asked <= set(declared), f"asked for undeclared {weights.asked - set(declared)}"
    if fold:
        return
    layers = {n.name for n in graph.nodes}
    stored = {
        i.name: numpy_helper.to_array(i)
        for i in model.graph.initializer
        if i.name.split(".", 1)[0] in layers
    }
    # A dense layer on a rank > 1 input stores its kernel transposed, as `weight_t`.
    as_declared = {
        name.removesuffix("_t"): array.T if name.endswith(".weight_t") else array
        for name, array in stored.items()
    }
    assert set(as_declared) == set(declared)
    for name, array in as_declared.items():
        np.testing.assert_array_equal(array, declared[name], err_msg=name)
