"""A dynamic time axis (`input: [null, F]`): shapes carry None, counts never depend on it, MACs
and memory at a stated length, the graph and the schema know it, exports keep it dynamic and
match PyTorch at several lengths and batch sizes, predict takes any length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import fails, invoke

import netspec
from netspec.errors import SpecError
from netspec.ir import DEFAULT_LENGTH
from netspec.memory import estimate, total


def spec(input_shape: str, *items: str, train: str = "") -> str:
    lines = "\n".join(f"  - {item}" for item in items)
    return f"name: dyn\ninput: {input_shape}\nlayers:\n{lines}\n{train}"


def compile_(input_shape: str, *items: str) -> netspec.Graph:
    return netspec.compile_text(spec(input_shape, *items), "<dyn>")


def refused(input_shape: str, *items: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        compile_(input_shape, *items)
    assert len(info.value.problems) == 1
    return info.value


# Networks over a sequence: [time, features] or [channels, time] or token ids [time].
NETWORKS = {
    "recurrent": (
        "{t}, 12",
        "lstm: {units: 16, return_sequences: true, bidirectional: true}",
        "gru: {units: 8, return_sequences: true}",
        "simple_rnn: {units: 4}",
        "dense: {units: 3, activation: softmax}",
    ),
    "transformer": (
        "{t}",
        "embedding: {input_dim: 50, output_dim: 16}",
        "position_embedding: {max_length: 40}\n    name: x",
        "multi_head_attention: {num_heads: 2, key_dim: 8, causal: true}",
        "add: {}\n    inputs: [x, multi_head_attention]",
        "layernorm",
        "dense: {units: 32, activation: gelu}",
        "dense: {units: 16}",
        "seq_pool: {op: last}",
        "dense: {units: 4, activation: softmax}",
    ),
    "conv": (
        "6, {t}",
        "conv1d: {filters: 8, kernel: 5, padding: same, activation: relu}",
        "batchnorm",
        "maxpool1d: {size: 2}",
        "conv1d: {filters: 8, kernel: 3, stride: 2}",
        "avgpool1d: {size: 3, stride: 1, padding: same}",
        "permute: {dims: [1, 0]}\n    name: seq",
        "dense: {units: 8, activation: sigmoid}",
        "multiply: {}\n    inputs: [seq, dense]",
        "seq_pool: {op: max}",
        "dense: {units: 2, activation: softmax}",
    ),
    "squeeze_excite": (
        "4, {t}",
        "conv1d: {filters: 8, kernel: 3, padding: same}\n    name: c",
        "global_avgpool1d: {keepdims: true}",
        "conv1d: {filters: 8, kernel: 1, activation: sigmoid}",
        "multiply: {}\n    inputs: [c, conv1d]",
        "concat: {axis: 1}\n    inputs: [c, multiply]",
        "global_maxpool1d",
        "dense: {units: 2}",
    ),
}


def network(name: str, length: int | None) -> netspec.Graph:
    shape, *items = NETWORKS[name]
    t = "null" if length is None else str(length)
    return compile_("[" + shape.format(t=t) + "]", *items)


# --- the spec, the shapes and the counts --------------------------------------------------------


@pytest.mark.parametrize("name", list(NETWORKS))
def test_counts_never_depend_on_the_time_axis(name: str) -> None:
    dynamic, fixed = network(name, None), network(name, 23)
    assert dynamic.dynamic and not fixed.dynamic
    assert [n.params for n in dynamic.nodes] == [n.params for n in fixed.nodes]
    assert [n.trainable_params for n in dynamic.nodes] == [n.trainable_params for n in fixed.nodes]
    assert None in dynamic.input_shape
    # Where the length survives, it is None; where it is pooled away, the shapes are equal.
    for d, f in zip(dynamic.nodes, fixed.nodes):
        assert len(d.shape) == len(f.shape)
        assert all(a is None or a == b for a, b in zip(d.shape, f.shape)), (d.name, d.shape)
    assert dynamic.output.shape == fixed.output.shape


@pytest.mark.parametrize("name", list(NETWORKS))
def test_macs_at_the_stated_length_are_the_fixed_networks(name: str) -> None:
    from netspec.spec_report import measured

    dynamic = network(name, None)
    cap = 40 if name == "transformer" else DEFAULT_LENGTH
    assert dynamic.length == min(DEFAULT_LENGTH, cap)
    for length in (17, 31):
        at = measured(dynamic, length)
        assert at.length == length
        assert [n.macs for n in at.nodes] == [n.macs for n in network(name, length).nodes]


def test_the_default_length_is_one_the_network_runs_at() -> None:
    """Seven stride-2 pools need 128 steps: measured there, not refused at 100."""
    graph = compile_("[2, null]", *["maxpool1d: {size: 2}"] * 7, "global_maxpool1d")
    assert graph.length == 128 and graph.nodes[-2].shape == (2, None)
    assert [n.macs for n in graph.nodes] == [0] * 8


def test_shapes_carry_none_through_each_layer() -> None:
    graph = network("conv", None)
    shapes = {n.name: n.shape for n in graph.nodes}
    assert shapes["conv1d"] == (8, None)
    assert shapes["maxpool1d"] == (8, None)
    assert shapes["seq"] == (None, 8)
    assert shapes["multiply"] == (None, 8)
    assert shapes["seq_pool"] == (8,)
    graph = network("transformer", None)
    assert graph.node("x").shape == (None, 16)  # no max_length check on an unknown length
    assert graph.node("multi_head_attention").shape == (None, 16)


@pytest.mark.parametrize(
    "input_shape,needle",
    [
        ("[3, null, 5]", "only in a sequence input"),
        ("[null, 8, 8]", "only in a sequence input"),
        ("[null, null]", "only one axis may be dynamic"),
    ],
)
def test_a_null_outside_a_sequence_time_axis_is_located(input_shape: str, needle: str) -> None:
    err = refused(input_shape, "dense: {units: 2}")
    (p,) = err.problems
    assert needle in p.message
    assert (p.line, p.path is not None and p.path.startswith("input[")) == (2, True)


@pytest.mark.parametrize(
    "input_shape,items,needle,hint",
    [
        ("[null, 4]", ["flatten"], "cannot flatten: the size", "seq_pool"),
        ("[4, null]", ["reshape: {shape: [-1]}"], "cannot reshape", "global pool"),
        ("[4, null]", ["dense: {units: 3}"], "dynamic time axis", "permute"),
        ("[4, null]", ["layernorm"], "dynamic time axis", "permute"),
        ("[4, null]", ["lstm: {units: 3}"], "dynamic time axis", "permute"),
        ("[null, 4]", ["conv1d: {filters: 2, kernel: 3}"], "dynamic time axis", "permute"),
        ("[null, 4]", ["global_avgpool1d"], "is the dynamic time axis", "seq_pool"),
        (
            "[4, null]",
            ["conv1d: {filters: 2, kernel: 3, stride: 2, padding: same}"],
            "needs a known length",
            "padding: valid",
        ),
        (
            "[4, null]",
            ["avgpool1d: {size: 2, stride: 1, padding: same}"],
            "uneven padding",
            "maxpool1d",
        ),
    ],
)
def test_what_needs_the_length_is_one_located_error(
    input_shape: str, items: list[str], needle: str, hint: str
) -> None:
    (p,) = refused(input_shape, *items).problems
    assert needle in p.message, p.message
    assert p.hint is not None and hint in p.hint, p.hint
    assert p.line is not None


def test_broadcast_with_a_dynamic_axis() -> None:
    from netspec.layers.multiply import broadcast

    assert broadcast((None, 8), (8,)) == (None, 8)
    assert broadcast((None, 8), (1, 8)) == (None, 8)
    assert broadcast((None, 8), (None, 1)) == (None, 8)
    assert broadcast((None, 8), (5, 8)) is None


def test_the_schema_allows_null_in_input() -> None:
    from netspec.schema import json_schema

    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    spec = {"name": "s", "input": [None, 8], "layers": [{"lstm": {"units": 4}}]}
    assert list(validator.iter_errors(spec)) == []
    spec["input"] = [0, 8]  # a size is still positive
    assert [e.message for e in validator.iter_errors(spec)] == [
        "0 is less than or equal to the minimum of 0"
    ]


def test_training_memory_is_estimated_at_the_length() -> None:
    from netspec.spec_report import measured

    graph = network("recurrent", None)
    short, long = (total(estimate(measured(graph, t), 16)) for t in (10, 200))
    fixed = total(estimate(network("recurrent", 200), 16))
    assert short < long == fixed


# --- the command line: summary, graph ------------------------------------------------------------


def write(tmp_path: Path, name: str, length: int | None = None) -> Path:
    shape, *items = NETWORKS[name]
    t = "null" if length is None else str(length)
    path = tmp_path / f"{name}_{t}.yaml"
    path.write_text(spec("[" + shape.format(t=t) + "]", *items))
    return path


def test_summary_shows_none_and_the_length(tmp_path: Path) -> None:
    path = write(tmp_path, "recurrent")
    text = invoke("summary", path).output
    assert "(None, 12)" in text and "(None, 32)" in text
    assert f"MACs and memory at length {DEFAULT_LENGTH}" in text
    at = invoke("summary", path, "--length", "7")
    assert at.exit_code == 0 and "MACs and memory at length 7" in at.output
    fixed = invoke("summary", write(tmp_path, "recurrent", 7)).output
    macs = [line for line in fixed.splitlines() if line.startswith("MACs per sample")]
    assert macs[0] in at.output
    data = __import__("json").loads(invoke("summary", path, "--json", "--length", "9").output)
    assert data["input_shape"] == [None, 12] and data["length"] == 9
    # The default length respects a position_embedding's max_length.
    assert "at length 40" in invoke("summary", write(tmp_path, "transformer")).output


def test_the_python_api_counts_at_a_length_as_the_cli(tmp_path: Path) -> None:
    import netspec

    path = write(tmp_path, "recurrent")
    net = netspec.load_spec(path)
    at7 = net.summary(length=7)
    assert str(at7) in invoke("summary", path, "--length", "7").output
    fixed = netspec.load_spec(write(tmp_path, "recurrent", 7)).summary()
    assert at7.totals == fixed.totals  # counts and MACs of the length-7 network
    assert net.summary().totals.total_params == fixed.totals.total_params


def test_summary_length_of_a_fixed_network_is_refused(tmp_path: Path) -> None:
    fails(invoke("summary", write(tmp_path, "recurrent", 9), "--length", "7"), "no dynamic")
    fails(invoke("summary", write(tmp_path, "recurrent"), "--length", "0"), "positive")
    # Longer than the position table: the shapes stage says so, located at the layer.
    fails(invoke("summary", write(tmp_path, "transformer"), "--length", "41"), "max_length 40")


def test_graph_draws_the_dynamic_axis(tmp_path: Path) -> None:
    out = tmp_path / "g.mmd"
    result = invoke("graph", write(tmp_path, "conv"), "--out", out)
    assert result.exit_code == 0, result.output
    assert "6×None" in out.read_text() and "None×8" in out.read_text()


# --- PyTorch and ONNX -----------------------------------------------------------------------------


def _module_and_weights(graph: netspec.Graph, seed: int = 0):
    torch = pytest.importorskip("torch")
    from netspec.backends.lowering import build_module
    from netspec.backends.weights import module_weights

    torch.manual_seed(seed)
    module = build_module(graph).eval()
    return module, module_weights(module)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_export_keeps_the_time_axis_and_matches_torch(name: str) -> None:
    """One export runs every length: parity at three lengths, batches of 1 and 7 (random_inputs),
    and at two more lengths with batches of 2 and 5."""
    pytest.importorskip("onnxruntime")
    from netspec.backends.export.model import TIME_PARAM, check_model, export_onnx
    from netspec.backends.export.parity import check_parity, parity_lengths, random_inputs

    graph = network(name, None)
    module, weights = _module_and_weights(graph)
    model = export_onnx(graph, weights)
    check_model(model, graph)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert TIME_PARAM in dims and "batch" in dims
    lengths = parity_lengths(graph)
    assert len(lengths) >= 2
    inputs = random_inputs(graph)
    assert len(inputs) == 2 * len(lengths)
    rng = np.random.default_rng(1)
    ids = name == "transformer"
    for t in (9, 23):
        for n in (2, 5):
            shape = tuple(t if d is None else d for d in graph.input_shape)
            x = rng.integers(0, 50, (n, *shape)) if ids else rng.standard_normal((n, *shape))
            inputs[f"batch {n}, length {t}"] = x.astype(np.float32)
    diffs = check_parity(graph, weights, model, inputs, module=module)
    assert max(diffs.values()) < 1e-4, diffs


def test_predict_refuses_a_sequence_shorter_than_the_windows(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from netspec.backends.export.card import Card
    from netspec.backends.export.model import export_onnx
    from netspec.ir import shortest_length

    graph = network("conv", None)
    # maxpool 2 then a kernel of 3 at stride 2: floor(t / 2) >= 3
    assert shortest_length(graph) == 6
    assert shortest_length(network("recurrent", None)) == 1
    _, weights = _module_and_weights(graph)
    model = export_onnx(graph, weights)
    assert Card.of(model).min_length == 6 and Card.of(model).max_length is None
    path = tmp_path / "conv.onnx"
    path.write_bytes(model.SerializeToString())
    for t in (5, 6, 40):
        np.save(tmp_path / f"x{t}.npy", np.ones((6, t), dtype=np.float32))
    ok = invoke("predict", path, tmp_path / "x6.npy", tmp_path / "x40.npy")
    assert ok.exit_code == 0, ok.output
    fails(invoke("predict", path, tmp_path / "x5.npy"), "sequence of 5 steps", "at least 6")


def test_torch_module_takes_any_length() -> None:
    torch = pytest.importorskip("torch")
    module, _ = _module_and_weights(network("recurrent", None))
    for t in (1, 9, 130):
        assert module(torch.zeros(2, t, 12)).shape == (2, 3)
    with pytest.raises(ValueError, match="expects input of shape"):
        module(torch.zeros(2, 9, 11))


# --- training, export and predict end to end ----------------------------------------------------

TRAIN = """train:
  data: {{source: arrays, path: seq.npz, val: 0.0}}
  epochs: 1
  batch_size: 16
  log: {{pictures: false}}
  seed: 0
"""


def _sequence_run(tmp_path: Path, length: int, max_length: int = 24) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, (48, length)).astype(np.float32)
    y = (x[:, 0] > 4).astype(np.int64)
    np.savez(tmp_path / "seq.npz", x=x, y=y)
    path = tmp_path / "seq.yaml"
    path.write_text(
        spec(
            "[null]",
            "embedding: {input_dim: 10, output_dim: 8}",
            f"position_embedding: {{max_length: {max_length}}}",
            "multi_head_attention: {num_heads: 2, key_dim: 4, causal: true}",
            "seq_pool: {op: mean}",
            "dense: {units: 2, activation: softmax}",
            train=TRAIN.format(),
        )
    )
    return path


def test_train_export_predict_any_length(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    import json

    path = _sequence_run(tmp_path, 16)
    run = tmp_path / "run"
    result = invoke("train", path, "--out", run)
    assert result.exit_code == 0, result.output
    assert "dynamic time axis is 16 steps" in result.output
    meta = json.loads((run / "model.json").read_text())
    assert meta["input_shape"] == [None] and meta["preprocessing"]["raw_shape"] == [None]
    result = invoke("export", run)
    assert result.exit_code == 0, result.output
    assert "length 24" in result.output and "length 13" in result.output  # parity lengths
    sidecar = json.loads((run / "model.onnx.json").read_text())
    assert sidecar["max_length"] == 24
    files = []
    for t in (3, 16, 24):
        np.save(tmp_path / f"x{t}.npy", np.ones(t, dtype=np.float32))
        files.append(tmp_path / f"x{t}.npy")
    result = invoke("predict", run / "model.onnx", *files, "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 3
    np.save(tmp_path / "x25.npy", np.ones(25, dtype=np.float32))
    fails(
        invoke("predict", run / "model.onnx", tmp_path / "x25.npy"),
        "sequence of 25 steps",
        "at most 24",
    )


def test_training_data_longer_than_the_position_table_is_located(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    path = _sequence_run(tmp_path, 30)
    out = fails(invoke("train", path, "--out", tmp_path / "run"), "max_length 24")
    assert "position_embedding" in out and "seq.yaml:" in out


def test_training_data_of_another_layout_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    np.savez(tmp_path / "seq.npz", x=np.zeros((8, 6, 20), np.float32), y=np.arange(8) % 2)
    path = tmp_path / "seq.yaml"
    path.write_text(
        spec("[null, 6]", "lstm: {units: 3}", "dense: {units: 2}", train=TRAIN.format())
    )
    fails(invoke("train", path, "--out", tmp_path / "run"), "[null, 6]", "[channels, null]")


def test_bench_times_a_dynamic_token_model_at_a_length(tmp_path: Path) -> None:
    """`netspec bench` fills the time axis (--length, default 100 within max_length) and feeds
    token ids from the embedding's vocabulary, so PyTorch and onnxruntime agree on real input."""
    pytest.importorskip("onnxruntime")
    path = tmp_path / "tok.yaml"
    path.write_text(
        spec(
            "[null]",
            "embedding: {input_dim: 50, output_dim: 8, mask_zero: true}",
            "position_embedding: {max_length: 40}",
            "lstm: {units: 8}",
            "dense: {units: 3, activation: softmax}",
        )
    )
    done = invoke("bench", path, "--batches", "2", "--repeats", "2", "--length", "12", "--json")
    assert done.exit_code == 0, done.output
    result = __import__("json").loads(done.output)
    assert any("length 12" in note for note in result["notes"])
    assert result["max_abs_diff"] < 1e-4
    default = invoke("bench", path, "--batches", "1", "--repeats", "2", "--json")
    assert "length 40" in default.output  # 100 capped by the position table
    fails(invoke("bench", path, "--length", "41"), "at most 40 steps")
    fails(invoke("bench", write(tmp_path, "recurrent", 9), "--length", "7"), "no dynamic")
