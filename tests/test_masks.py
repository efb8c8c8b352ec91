"""Padding masks: a padded batch gives each sequence exactly what it gets alone, unpadded, for
every mask-aware kind, in torch and in the exported ONNX (onnxruntime); and the located errors
where a mask would reach a layer that mixes padded steps."""

from __future__ import annotations

import numpy as np
import pytest

import netspec
from netspec.errors import SpecError
from netspec.masks import mask_flow

torch = pytest.importorskip("torch")

from netspec.backends.lowering import build_module  # noqa: E402


def spec(input_shape: str, *items: str) -> str:
    lines = "\n".join(f"  - {item}" for item in items)
    return f"name: masked\ninput: {input_shape}\nlayers:\n{lines}\n"


IDS = "embedding: {input_dim: 11, output_dim: 4, mask_zero: true}"
FEATURES = 3

# Each case: the layers after the mask source. Ids feed `IDS`; "float" cases feed [T, 3]
# sequences zero-padded, through `masking`.
CASES: dict[str, tuple[str, ...]] = {
    **{
        f"{kind}-{'bi' if bi else 'uni'}-{'seq' if seq else 'last'}": (
            IDS,
            f"{kind}: {{units: 3, bidirectional: {str(bi).lower()}, "
            f"return_sequences: {str(seq).lower()}}}",
        )
        for kind in ("simple_rnn", "gru", "lstm")
        for bi in (False, True)
        for seq in (False, True)
    },
    "attention-self": (IDS, "multi_head_attention: {num_heads: 2, key_dim: 3}"),
    "attention-causal": (IDS, "multi_head_attention: {num_heads: 2, key_dim: 3, causal: true}"),
    "attention-cross": (
        IDS + "\n    name: e",
        "dense: {units: 3, activation: tanh}\n    name: v",
        "multi_head_attention: {num_heads: 2, key_dim: 2, causal: true}\n    inputs: [e, v]",
    ),
    **{
        f"seq_pool-{op}": (IDS, "dense: {units: 5}", f"seq_pool: {{op: {op}}}")
        for op in ("mean", "max", "last")
    },
    "position_embedding": (IDS, "position_embedding: {max_length: 12}"),
    "dense-layernorm": (
        IDS,
        "dense: {units: 5, activation: relu}",
        "layernorm",
        "dropout: {rate: 0.2}",
    ),
    "transformer-block": (
        IDS,
        "position_embedding: {max_length: 12}\n    name: x",
        "multi_head_attention: {num_heads: 2, key_dim: 2}\n    name: a",
        "add:\n    inputs: [x, a]",
        "layernorm",
        "gru: {units: 3, bidirectional: true, return_sequences: true}",
        "seq_pool: {op: mean}",
        "dense: {units: 2, activation: softmax}",
    ),
    "masking-lstm": ("masking: {value: 0.0}", "lstm: {units: 3, bidirectional: true}"),
    "masking-gru-seq": (
        "masking: {value: 0.0}",
        "gru: {units: 3, return_sequences: true}",
        "seq_pool: {op: last}",
    ),
}


def compile_case(case: str, steps: int):
    items = CASES[case]
    shape = f"[{steps}, {FEATURES}]" if items[0].startswith("masking") else f"[{steps}]"
    return netspec.compile_text(spec(shape, *items), f"<{case} {steps}>")


def padded_batch(case: str, lengths: list[int], steps: int, rng: np.random.Generator) -> np.ndarray:
    """Sequences of the given lengths, padded at the end to `steps` (ids 0, or zero steps)."""
    floats = CASES[case][0].startswith("masking")
    x = np.zeros((len(lengths), steps, FEATURES) if floats else (len(lengths), steps), np.float32)
    for i, n in enumerate(lengths):
        if floats:
            x[i, :n] = rng.standard_normal((n, FEATURES)) + 3.0  # never a zero step
        else:
            x[i, :n] = rng.integers(1, 11, n)
    return x


def module_for(case: str, steps: int, state=None):
    torch.manual_seed(steps)
    module = build_module(compile_case(case, steps)).eval()
    if state is None:
        with torch.no_grad():
            for p in module.parameters():
                p.uniform_(-0.6, 0.6)
    else:
        module.load_state_dict(state)
    return module


BATCHES = [(7, [3, 7, 1]), (10, [10, 4, 2, 6, 5])]  # (padded length, each sequence's length)


@pytest.mark.parametrize("case", list(CASES))
def test_padded_batch_is_each_sequence_alone(case: str) -> None:
    """Torch on the padded batch = torch on each sequence alone (a network compiled for its
    length, the same weights); onnxruntime on the padded batch = torch on it, at two padded
    lengths and two batch sizes. Masked outputs ([T, ...]) are compared at real steps."""
    ort = pytest.importorskip("onnxruntime")
    from netspec.backends.export.model import check_model, export_onnx
    from netspec.backends.weights import module_weights

    rng = np.random.default_rng(0)
    for steps, lengths in BATCHES:
        graph = compile_case(case, steps)
        masked_output = graph.output.name in mask_flow(graph)
        module = module_for(case, steps)
        x = padded_batch(case, lengths, steps, rng)
        with torch.no_grad():
            padded = module(torch.from_numpy(x)).numpy()
        for i, n in enumerate(lengths):
            alone_module = module_for(case, n, module.state_dict())
            with torch.no_grad():
                alone = alone_module(torch.from_numpy(x[i : i + 1, :n])).numpy()[0]
            got = padded[i, :n] if masked_output else padded[i]
            np.testing.assert_allclose(got, alone, atol=2e-6, err_msg=f"{case} sample {i}")
        model = export_onnx(graph, module_weights(module))
        check_model(model, graph)
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        onnx_out = session.run(None, {"input": x})[0]
        np.testing.assert_allclose(onnx_out, padded, atol=2e-6, err_msg=f"{case} onnx")


def test_recurrent_outputs_at_padded_steps_are_zero_and_train() -> None:
    """As ONNX's operators: every padded step of a return_sequences output is 0; gradients
    flow through the packed sequence."""
    module = module_for("lstm-bi-seq", 6)
    x = torch.from_numpy(padded_batch("lstm-bi-seq", [2, 6, 4], 6, np.random.default_rng(1)))
    with torch.no_grad():
        y = module(x)
    assert (y[0, 2:] == 0).all() and (y[2, 4:] == 0).all() and (y[1] != 0).any(-1).all()
    module.train()
    module(x).sum().backward()
    assert all(p.grad is not None for p in module.parameters())


def test_lengths_are_the_last_real_step_plus_one() -> None:
    """Trailing padding: an id 0 (or a zero step) inside a sequence is a real step; a sequence
    of padding only counts one step."""
    from netspec.backends.lowering.sequence import value_lengths, zero_lengths

    ids = torch.tensor([[1.0, 0, 2, 0, 0], [0, 0, 0, 0, 0], [3, 3, 3, 3, 3]])
    assert zero_lengths(ids).tolist() == [3, 1, 5]
    x = torch.zeros(2, 4, 2)
    x[0, 1, 1] = 5.0
    x[1, 3, 0] = -1.0
    assert value_lengths(x, 0.0).tolist() == [2, 4]
    assert value_lengths(torch.full((1, 3, 2), 7.0), 7.0).tolist() == [1]


def test_mask_flow_in_the_ir() -> None:
    graph = netspec.compile_text(
        spec(
            "[6]",
            IDS + "\n    name: emb",
            "embedding: {input_dim: 11, output_dim: 4, mask_zero: true}\n    inputs: [input]"
            "\n    name: same_ids",
            "add:\n    inputs: [emb, same_ids]\n    name: both",
            "lstm: {units: 3, return_sequences: true}\n    name: seq",
            "gru: {units: 2}\n    name: last",
        ),
        "<flow>",
    )
    # two embeddings of the same ids carry one mask; the last recurrent layer consumes it
    assert mask_flow(graph) == {"emb": "emb", "same_ids": "emb", "both": "emb", "seq": "emb"}
    unmasked = netspec.compile_text(spec("[6]", "embedding: {input_dim: 5, output_dim: 2}"), "<u>")
    assert mask_flow(unmasked) == {}


def test_unmasked_export_is_unchanged() -> None:
    """No mask, no cost: no lengths are computed and the recurrent op has four inputs."""
    from netspec.backends.export.model import export_onnx
    from netspec.backends.weights import module_weights

    graph = netspec.compile_text(
        spec("[6]", "embedding: {input_dim: 5, output_dim: 2}", "lstm: {units: 3}"), "<u>"
    )
    model = export_onnx(graph, module_weights(build_module(graph)))
    ops = [n.op_type for n in model.graph.node]
    assert "Range" not in ops and "Less" not in ops
    assert [len(n.input) for n in model.graph.node if n.op_type == "LSTM"] == [4]


@pytest.mark.parametrize(
    "items,message,where",
    [
        ((IDS, "flatten"), "a padding mask (from 'embedding') reaches it", "flatten"),
        (
            (IDS, "permute: {dims: [1, 0]}", "conv1d: {filters: 2, kernel: 3}"),
            "mixes the steps",
            "permute",
        ),
        (("masking", "conv1d: {filters: 2, kernel: 3}"), "mixes the steps", "conv1d"),
        ((IDS, "global_avgpool1d"), "mixes the steps", "global_avgpool1d"),
        ((IDS, "softmax"), "its softmax runs over the time axis", "softmax"),
        ((IDS, "concat:\n    inputs: [embedding, embedding]"), "along the time axis", "concat"),
        (
            (
                IDS + "\n    name: a",
                "masking: {}\n    inputs: [a]\n    name: b",
                "add:\n    inputs: [a, b]",
            ),
            "carry different padding masks (from 'a', 'b')",
            "add",
        ),
    ],
)
def test_a_mask_reaching_a_step_mixing_layer_is_one_located_error(
    items: tuple[str, ...], message: str, where: str
) -> None:
    text = spec("[6, 3]" if items[0] == "masking" else "[6]", *items)
    with pytest.raises(SpecError) as info:
        netspec.compile_text(text, "bad.yaml")
    (problem,) = info.value.problems
    assert message in problem.message and f"({where})" in problem.message
    assert problem.line is not None and problem.line >= 4 and problem.file == "bad.yaml"
    assert info.value.stage == "shapes"


def test_cli_names_the_layer_and_exits_2(tmp_path) -> None:
    from typer.testing import CliRunner

    from netspec.cli import app

    path = tmp_path / "bad.yaml"
    path.write_text(spec("[6]", IDS, "flatten"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "flatten" in result.output and "seq_pool" in result.output
