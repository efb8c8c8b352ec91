"""Sequence layers: Keras' parameter counts, the stored gate orders, ONNX parity at several
sequence lengths and batch sizes, and the located errors of what is not supported yet."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import netspec
from netspec.errors import SpecError


def spec(input_shape: str, *items: str) -> str:
    lines = "\n".join(f"  - {item}" for item in items)
    return f"name: seq\ninput: {input_shape}\nlayers:\n{lines}\n"


def keras_count(kind: str, f: int, u: int, bidirectional: bool = False) -> int:
    """Keras' documented counts, per direction."""
    per = {
        "lstm": 4 * (u * (f + u) + u),
        "gru": 3 * (u * (f + u) + 2 * u),  # reset_after=True
        "simple_rnn": u * (f + u) + u,
    }[kind]
    return per * (2 if bidirectional else 1)


SIZES = [(1, 1), (3, 4), (28, 128), (12, 7), (64, 32)]
RECURRENT = ["lstm", "gru", "simple_rnn"]


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("f,u", SIZES)
@pytest.mark.parametrize("kind", RECURRENT)
def test_recurrent_counts_are_keras(kind: str, f: int, u: int, bidirectional: bool) -> None:
    bi = str(bidirectional).lower()
    graph = netspec.compile_text(
        spec(f"[9, {f}]", f"{kind}: {{units: {u}, bidirectional: {bi}}}"), "<count>"
    )
    node = graph.nodes[0]
    assert node.params == node.trainable_params == keras_count(kind, f, u, bidirectional)
    assert node.shape == ((2 if bidirectional else 1) * u,)
    torch = pytest.importorskip("torch")
    from netspec.backends.lowering import build_module

    module = build_module(graph)
    assert sum(p.numel() for p in module.parameters()) == node.params
    assert sum(b.numel() for b in module.buffers()) == 0
    assert isinstance(module(torch.zeros(2, 9, f)), torch.Tensor)


def test_summary_shows_keras_counts() -> None:
    from netspec.summary import render

    graph = netspec.compile_text(
        spec(
            "[20]",
            "embedding: {input_dim: 1000, output_dim: 16}",
            "gru: {units: 8, return_sequences: true, bidirectional: true}",
            "lstm: {units: 32}",
            "dense: {units: 3, activation: softmax}",
        ),
        "<summary>",
    )
    counts = [n.params for n in graph.nodes]
    assert counts == [16_000, 2 * 3 * (8 * 24 + 16), 4 * (32 * 48 + 32), 99]
    text = render(graph)
    assert f"{sum(counts):,}" in text and "lstm" in text and "gru" in text
    # MACs per sequence of the input's 20 steps: every step multiplies by both kernels.
    assert graph.nodes[2].macs == 20 * 4 * 32 * (16 + 32)


def test_position_embedding_count_and_shorter_sequences() -> None:
    graph = netspec.compile_text(
        spec(
            "[5]",
            "embedding: {input_dim: 30, output_dim: 8}",
            "position_embedding: {max_length: 12}",
        ),
        "<positions>",
    )
    assert graph.nodes[1].params == 12 * 8 and graph.nodes[1].shape == (5, 8)


def test_embedding_and_position_free_shapes() -> None:
    graph = netspec.compile_text(
        spec(
            "[6]",
            "embedding: {input_dim: 50, output_dim: 4}",  # (6, 4)
            "permute: {dims: [1, 0]}",  # (4, 6)
            "conv1d: {filters: 5, kernel: 3}",  # (5, 4)
            "permute: {dims: [1, 0]}",  # (4, 5)
            "simple_rnn: {units: 3, return_sequences: true}",
        ),
        "<shapes>",
    )
    assert [n.shape for n in graph.nodes] == [(6, 4), (4, 6), (5, 4), (4, 5), (4, 3)]


@pytest.mark.parametrize(
    "text,message",
    [
        (
            spec("[5, 3]", "gru: {units: 4, reset_after: false}"),
            "reset_after: false is not supported yet",
        ),
        (
            spec("[5]", "embedding: {input_dim: 9, output_dim: 2, mask_zero: true}", "flatten"),
            "a padding mask (from 'embedding') reaches it",
        ),
        (spec("[5]", "lstm: {units: 4}"), "lstm needs a sequence input [time, features]"),
        (spec("[2, 3]", "permute: {dims: [0, 2]}"), "is not a permutation of the axes 0..1"),
        (
            spec("[9, 4]", "position_embedding: {max_length: 8}"),
            "the sequence has 9 steps, more than max_length 8",
        ),
        (spec("[9]", "seq_pool: {op: max}"), "seq_pool needs a sequence input [time, features]"),
        (spec("[9, 2]", "seq_pool: {op: avg}"), "expected a pooling: one of mean, max, last"),
        (
            spec("[2, 3]", "dense: {units: 4}\n    name: a", "multiply:\n    inputs: [input, a]"),
            "do not broadcast",
        ),
    ],
)
def test_unsupported_or_wrong_is_one_located_error(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        netspec.compile_text(text, "bad.yaml")
    problems = info.value.problems
    assert len(problems) == 1 and message in problems[0].message
    assert problems[0].line is not None and problems[0].line >= 4


# --- torch: the stored tensors are what torch's own modules and Keras' equations compute with -----


def _module(kind: str, f: int, u: int, bi: bool, seq: bool):
    from netspec.backends.lowering import build_module

    flags = f"bidirectional: {str(bi).lower()}, return_sequences: {str(seq).lower()}"
    graph = netspec.compile_text(spec(f"[6, {f}]", f"{kind}: {{units: {u}, {flags}}}"), "<m>")
    return graph, build_module(graph).eval()


@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("kind", RECURRENT)
def test_same_as_torch_nn_modules(kind: str, bi: bool) -> None:
    """Loaded into nn.LSTM/GRU/RNN (LSTM and RNN: bias_hh zero), the output is the same:
    the storage is torch's gate order."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    graph, module = _module(kind, 3, 5, bi, True)
    layer = module.layer(graph.nodes[0].name)
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-0.5, 0.5)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple_rnn": torch.nn.RNN}[kind]
    ref = cls(3, 5, batch_first=True, bidirectional=bi)
    state = {}
    for s in ("", "_reverse")[: 1 + bi]:
        state[f"weight_ih_l0{s}"] = getattr(layer, f"weight_ih{s}")
        state[f"weight_hh_l0{s}"] = getattr(layer, f"weight_hh{s}")
        if kind == "gru":
            state[f"bias_ih_l0{s}"] = getattr(layer, f"bias_ih{s}")
            state[f"bias_hh_l0{s}"] = getattr(layer, f"bias_hh{s}")
        else:
            state[f"bias_ih_l0{s}"] = getattr(layer, f"bias{s}")
            state[f"bias_hh_l0{s}"] = torch.zeros_like(getattr(layer, f"bias{s}"))
    ref.load_state_dict(state)
    x = torch.randn(4, 6, 3)
    with torch.no_grad():
        torch.testing.assert_close(module(x), ref(x)[0])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def test_lstm_storage_is_keras_gate_order() -> None:
    """Keras' LSTM equations with its kernel (F, 4u) = weight_ih.T in (i, f, c, o) order."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    graph, module = _module("lstm", 3, 4, False, False)
    t = {k: v.detach().numpy() for k, v in module.layer(graph.nodes[0].name).named_parameters()}
    kernel, recurrent, bias = t["weight_ih"].T, t["weight_hh"].T, t["bias"]
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    h = np.zeros((2, 4))
    c = np.zeros((2, 4))
    for step in range(6):
        z = x[:, step] @ kernel + h @ recurrent + bias
        i, f, g, o = np.split(z, 4, axis=1)  # Keras: i, f, c, o
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), h, atol=1e-5)


def test_gru_storage_reordered_is_keras_reset_after() -> None:
    """Keras' reset_after GRU equations, with gates (z, r, h) = stored blocks (1, 0, 2) and its
    bias (2, 3u) = [bias_ih; bias_hh]."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    graph, module = _module("gru", 3, 4, False, False)
    layer = module.layer(graph.nodes[0].name)
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-0.5, 0.5)
    t = {k: v.detach().numpy() for k, v in layer.named_parameters()}

    def keras(a: np.ndarray) -> np.ndarray:  # torch (r, z, n) blocks -> Keras (z, r, h)
        r, z, n = np.split(a, 3, axis=0)
        return np.concatenate([z, r, n], axis=0)

    kernel, recurrent = keras(t["weight_ih"]).T, keras(t["weight_hh"]).T
    b_in, b_rec = keras(t["bias_ih"]), keras(t["bias_hh"])
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    h = np.zeros((2, 4))
    for step in range(6):
        xz, xr, xh = np.split(x[:, step] @ kernel + b_in, 3, axis=1)
        hz, hr, hh = np.split(h @ recurrent + b_rec, 3, axis=1)
        z, r = _sigmoid(xz + hz), _sigmoid(xr + hr)
        cand = np.tanh(xh + r * hh)
        h = z * h + (1 - z) * cand
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), h, atol=1e-5)


# --- ONNX: the LSTM/GRU/RNN operators match torch at several lengths and batch sizes ------------


@pytest.mark.parametrize("seq", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("bi", [False, True], ids=["forward", "bidirectional"])
@pytest.mark.parametrize("kind", RECURRENT)
def test_onnx_parity_at_two_lengths_and_batches(kind: str, bi: bool, seq: bool) -> None:
    """The time axis is fixed per export, so each length is its own export; the batch is
    dynamic, so each export runs batches of 2 and 5."""
    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from netspec.backends.export.model import check_model, export_onnx
    from netspec.backends.export.parity import check_parity
    from netspec.backends.lowering import build_module
    from netspec.backends.weights import module_weights

    flags = f"bidirectional: {str(bi).lower()}, return_sequences: {str(seq).lower()}"
    rng = np.random.default_rng(0)
    for length in (3, 17):
        graph = netspec.compile_text(
            spec(f"[{length}, 5]", f"{kind}: {{units: 6, {flags}}}"), f"<{kind} {length}>"
        )
        torch.manual_seed(length)
        module = build_module(graph).eval()
        with torch.no_grad():
            for p in module.parameters():
                p.uniform_(-0.6, 0.6)
        weights = module_weights(module)
        model = export_onnx(graph, weights)
        check_model(model, graph)
        inputs = {
            f"batch {n}": rng.standard_normal((n, length, 5)).astype(np.float32) for n in (2, 5)
        }
        diffs = check_parity(graph, weights, model, inputs, module=module)
        assert max(diffs.values()) < 1e-5, diffs


def test_memory_counts_the_steps_a_recurrent_layer_keeps() -> None:
    from netspec.memory import activation_elements

    graph = netspec.compile_text(spec("[28, 28]", "lstm: {units: 128}"), "<memory>")
    # the input, the output, and (4 gates + cell + hidden) x 128 per step
    assert activation_elements(graph) == 28 * 28 + 128 + 28 * 6 * 128


# --- attention -----------------------------------------------------------------------------------


def keras_mha_count(dq: int, dv: int, h: int, k: int, v: int) -> int:
    """Keras MultiHeadAttention: query, key, value projections with biases, output back to Dq."""
    return (dq * h * k + h * k) + (dv * h * k + h * k) + (dv * h * v + h * v) + (h * v * dq + dq)


@pytest.mark.parametrize("dq,h,k,v", [(6, 2, 3, None), (16, 4, 8, 5), (64, 8, 16, None)])
def test_attention_counts_are_keras(dq: int, h: int, k: int, v: int | None) -> None:
    value_dim = "" if v is None else f", value_dim: {v}"
    graph = netspec.compile_text(
        spec(f"[7, {dq}]", f"multi_head_attention: {{num_heads: {h}, key_dim: {k}{value_dim}}}"),
        "<mha>",
    )
    node = graph.nodes[0]
    assert node.params == keras_mha_count(dq, dq, h, k, v or k)
    assert node.shape == (7, dq)
    torch = pytest.importorskip("torch")
    from netspec.backends.lowering import build_module

    module = build_module(graph)
    assert sum(p.numel() for p in module.parameters()) == node.params
    assert module(torch.randn(2, 7, dq)).shape == (2, 7, dq)


def test_attention_is_the_textbook_equation() -> None:
    """softmax(q k^T / sqrt(d) + causal mask) v per head, from the stored kernels, in numpy."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    graph = netspec.compile_text(
        spec(
            "[5, 4]", "multi_head_attention: {num_heads: 2, key_dim: 3, value_dim: 2, causal: true}"
        ),
        "<mha>",
    )
    from netspec.backends.lowering import build_module

    module = build_module(graph).eval()
    layer = module.layer(graph.nodes[0].name)
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-0.5, 0.5)
    t = {n: p.detach().numpy().astype(np.float64) for n, p in layer.named_parameters()}
    x = np.random.default_rng(0).standard_normal((2, 5, 4))
    q = (x @ t["query_kernel"] + t["query_bias"]).reshape(2, 5, 2, 3)
    k = (x @ t["key_kernel"] + t["key_bias"]).reshape(2, 5, 2, 3)
    v = (x @ t["value_kernel"] + t["value_bias"]).reshape(2, 5, 2, 2)
    scores = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(3)
    scores = np.where(np.tril(np.ones((5, 5), dtype=bool)), scores, -np.inf)
    w = np.exp(scores - scores.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = np.einsum("bhts,bshd->bthd", w, v).reshape(2, 5, 4)
    expected = o @ t["output_kernel"] + t["output_bias"]
    with torch.no_grad():
        got = module(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_onnx_parity_at_two_lengths(causal: bool) -> None:
    """Cross-attention of a length-T query on a length-S value, for two (T, S), batches 2 and 5."""
    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from netspec.backends.export.model import check_model, export_onnx
    from netspec.backends.export.parity import check_parity
    from netspec.backends.lowering import build_module
    from netspec.backends.weights import module_weights

    rng = np.random.default_rng(0)
    for steps, keys in ((3, 8), (16, 5)):
        graph = netspec.compile_text(
            spec(
                f"[{steps}, {keys}]",
                "multi_head_attention: {num_heads: 2, key_dim: 4}\n    name: self",
                "permute: {dims: [1, 0]}\n    inputs: [input]\n    name: value",
                f"multi_head_attention: {{num_heads: 3, key_dim: 2, causal: {str(causal).lower()}}}"
                "\n    inputs: [self, value]",
            ),
            "<mha parity>",
        )
        torch.manual_seed(steps)
        module = build_module(graph).eval()
        weights = module_weights(module)
        model = export_onnx(graph, weights)
        check_model(model, graph)
        inputs = {
            f"batch {n}": rng.standard_normal((n, steps, keys)).astype(np.float32) for n in (2, 5)
        }
        diffs = check_parity(graph, weights, model, inputs, module=module)
        assert max(diffs.values()) < 1e-5, diffs


# --- other runtimes ------------------------------------------------------------------------------

PORTABLE = {
    "lstm": "lstm: {units: 6, bidirectional: true}",
    "gru": "gru: {units: 6, bidirectional: true, return_sequences: true}",
    "simple_rnn": "simple_rnn: {units: 6}",
    "attention": "multi_head_attention: {num_heads: 2, key_dim: 4, causal: true}",
    "pooling": "seq_pool: {op: last}",
}


# One node process per JS runtime runs every case (starting node and compiling onnxruntime-web's
# wasm cost ~0.5-2 s a process); a case that fails reports its error, so its own test fails.
NODE_RUN = """
const ort = require(process.env.ORT_MODULE);
if (ort.env && ort.env.wasm) ort.env.wasm.numThreads = 1;  // web: no worker threads in node
let text = '';
process.stdin.on('data', (d) => { text += d; });
process.stdin.on('end', async () => {
  const results = {};
  for (const [key, job] of Object.entries(JSON.parse(text))) {
    try {
      const session = await ort.InferenceSession.create(job.model);
      const feeds = {};
      for (const [name, t] of Object.entries(job.inputs)) {
        const data = t.type === 'int64' ? BigInt64Array.from(t.data.map(BigInt)) : Float32Array.from(t.data);
        feeds[name] = new ort.Tensor(t.type, data, t.dims);
      }
      const out = await session.run(feeds);
      const y = out[session.outputNames[0]];
      results[key] = {dims: y.dims, data: Array.from(y.data, Number)};
    } catch (e) {
      results[key] = {error: String(e)};
    }
  }
  process.stdout.write(JSON.stringify(results));
});
"""

RUNTIME_CASES = {
    **{k: ("[7, 8]", v) for k, v in PORTABLE.items()},
    "masked": (
        "[9]",
        "embedding: {input_dim: 20, output_dim: 8, mask_zero: true}",
        PORTABLE["gru"],
    ),
}


def exported_case(case: str, folder: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """A RUNTIME_CASES network exported to ONNX, an input batch, and onnxruntime's output."""
    ort = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from netspec.backends.export.model import export_onnx
    from netspec.backends.lowering import build_module
    from netspec.backends.weights import module_weights

    shape, *items = RUNTIME_CASES[case]
    graph = netspec.compile_text(spec(shape, *items), f"<{case}>")
    torch.manual_seed(0)
    path = folder / f"{case}.onnx"
    path.write_bytes(export_onnx(graph, module_weights(build_module(graph))).SerializeToString())
    rng = np.random.default_rng(0)
    if case == "masked":  # three sequences of 9, 4 and 1 ids, padded with 0 at the end
        x = rng.integers(1, 20, (3, 9)).astype(np.float32)  # ids travel as floats, as trained
        x[1, 4:], x[2, 1:] = 0, 0
    else:
        x = rng.standard_normal((3, 7, 8)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return str(path), x, session.run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every RUNTIME_CASES network exported once for this file: case -> exported_case(...)."""
    folder = tmp_path_factory.mktemp("sequence-exports")
    return {case: exported_case(case, folder) for case in RUNTIME_CASES}


@pytest.mark.parametrize("case", list(RUNTIME_CASES))
def test_opencv_runs_the_sequence_exports(case: str, exported: dict) -> None:
    """OpenCV DNN (5.x) reads the exported LSTM/GRU/RNN operators, the attention graph and the
    mask's lengths (Equal, Range, ReduceMax, sequence_lens)."""
    cv2 = pytest.importorskip("cv2")
    path, x, expected = exported[case]
    net = cv2.dnn.readNetFromONNX(path)
    net.setInput(x)
    got = net.forward()
    np.testing.assert_allclose(got.reshape(expected.shape), expected, atol=1e-5)


@pytest.fixture(scope="module")
def js_outputs(exported: dict) -> Callable[[str], dict]:
    """runtime -> {case: the JS runtime's output (or its error)}, every case in one node
    process per runtime, run when a test first asks for that runtime."""
    import json
    import os
    import shutil
    import subprocess

    node, js = shutil.which("node"), Path(__file__).resolve().parents[1] / "docs" / "js"
    if (
        node is None
        or subprocess.run(
            [node, "-e", "require.resolve('onnxruntime-node')"], cwd=js, capture_output=True
        ).returncode
    ):
        pytest.skip("node or onnxruntime-node is not installed (cd docs/js && npm install)")
    jobs = {}
    for case, (path, x, _) in exported.items():
        feed = {"type": "float32", "data": x.ravel().tolist(), "dims": list(x.shape)}
        jobs[case] = {"model": path, "inputs": {"input": feed}}

    @functools.cache
    def outputs(runtime: str) -> dict:
        done = subprocess.run(
            [node, "-e", NODE_RUN],
            cwd=js,
            input=json.dumps(jobs),
            capture_output=True,
            text=True,
            env={**os.environ, "ORT_MODULE": runtime},
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return outputs


@pytest.mark.parametrize("runtime", ["onnxruntime-node", "onnxruntime-web"])
@pytest.mark.parametrize("case", list(RUNTIME_CASES))
def test_javascript_runtimes_run_the_sequence_exports(
    case: str, runtime: str, exported: dict, js_outputs: Callable[[str], dict]
) -> None:
    """onnxruntime-node (the JS example's runtime) and onnxruntime-web (its wasm backend, run in
    node) give Python onnxruntime's outputs for the recurrent operators, attention and a padded
    batch with a mask."""
    expected = exported[case][2]
    got = js_outputs(runtime)[case]
    assert "error" not in got, got["error"]
    assert got["dims"] == list(expected.shape)
    np.testing.assert_allclose(np.array(got["data"]).reshape(expected.shape), expected, atol=1e-5)
