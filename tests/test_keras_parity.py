"""Sequence layers against Keras 3 itself (torch backend), where Keras is installed: the same
parameter counts, and with Keras' weights moved into netspec's tensors, the same outputs,
padding masks included (Keras' mask_zero against netspec's lengths)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import netspec

os.environ.setdefault("KERAS_BACKEND", "torch")
torch = pytest.importorskip("torch")

from netspec.backends.importing.keras_weights import keras_tensors  # noqa: E402
from netspec.backends.weights import load_module  # noqa: E402
from netspec.summary import rows, totals  # noqa: E402

# Keras, set by `_keras` when this file's first test runs (not at collection: conftest.py's
# keras_module says why).
keras: Any = None


@pytest.fixture(scope="module", autouse=True)
def _keras(keras_module: Any) -> None:
    global keras
    keras = keras_module


def _numpy(t) -> np.ndarray:
    """A Keras (torch backend) tensor or variable value as numpy, without Keras' converter
    (it trips numpy 2's __array__ deprecation)."""
    return t.detach().cpu().numpy()


def netspec_weights(layer, name: str) -> dict[str, np.ndarray]:
    """One Keras layer's weights under netspec's `<layer>.<tensor>` names, by the importer's
    own conversion (netspec import)."""
    w = [_numpy(v.value) for v in layer.weights]
    tensors = keras_tensors(type(layer).__name__, layer.get_config(), w)
    return {f"{name}.{k}": v for k, v in tensors.items()}


def compare(spec: str, model, x: np.ndarray, names: dict[str, str]) -> None:
    """The spec has Keras' count; with Keras' weights its output is Keras'."""
    graph = netspec.compile_text(spec, "<keras>")
    assert totals(rows(graph)).total_params == model.count_params()
    weights: dict[str, np.ndarray] = {}
    for keras_name, ours in names.items():
        weights |= netspec_weights(model.get_layer(keras_name), ours)
    module = load_module(graph, {k: np.ascontiguousarray(v) for k, v in weights.items()})
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    want = _numpy(model(x, training=False))
    np.testing.assert_allclose(got, want, atol=2e-5)


def _ids(rng: np.random.Generator, lengths: list[int], t: int, vocab: int) -> np.ndarray:
    x = np.zeros((len(lengths), t), np.float32)
    for i, n in enumerate(lengths):
        x[i, :n] = rng.integers(1, vocab, n)
    return x


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("mask", [False, True], ids=["unmasked", "mask_zero"])
def test_recurrent_stack_matches_keras(cls: str, mask: bool) -> None:
    """Embedding -> bidirectional layer with sequences -> layer -> dense softmax; with mask_zero,
    Keras skips the padding by its mask and netspec by the lengths."""
    kind = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn"}[cls]
    layer = getattr(keras.layers, cls)
    keras.utils.set_random_seed(0)
    inp = keras.Input((9,))
    h = keras.layers.Embedding(30, 6, mask_zero=mask, name="emb")(inp)
    h = keras.layers.Bidirectional(layer(5, return_sequences=True), name="bi")(h)
    h = layer(4, name="rnn")(h)
    out = keras.layers.Dense(3, activation="softmax", name="head")(h)
    model = keras.Model(inp, out)
    for w in model.weights:  # non-zero biases, so their placement is tested too
        w.assign(np.random.default_rng(1).uniform(-0.5, 0.5, w.shape).astype(np.float32))
    spec = f"""name: k
input: [9]
layers:
  - embedding: {{input_dim: 30, output_dim: 6, mask_zero: {str(mask).lower()}}}
  - {kind}: {{units: 5, bidirectional: true, return_sequences: true}}
  - {kind}: {{units: 4}}
  - dense: {{units: 3, activation: softmax}}
"""
    x = _ids(np.random.default_rng(2), [9, 5, 1], 9, 30)
    names = {"emb": "embedding", "bi": kind, "rnn": f"{kind}_1", "head": "dense"}
    compare(spec, model, x, names)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_transformer_encoder_layer_matches_keras(causal: bool) -> None:
    """Embedding, self-attention with its own value_dim, residual, layernorm, a feed-forward
    block, masked mean pooling: Keras' MultiHeadAttention and LayerNormalization exactly."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    e = keras.layers.Embedding(20, 12, mask_zero=True, name="emb")(inp)
    a = keras.layers.MultiHeadAttention(3, 4, value_dim=5, name="att")(e, e, use_causal_mask=causal)
    h = keras.layers.LayerNormalization(epsilon=1e-5, name="ln")(keras.layers.Add()([e, a]))
    f = keras.layers.Dense(16, activation="relu", name="ff1")(h)
    f = keras.layers.Dense(12, name="ff2")(f)
    h = keras.layers.LayerNormalization(epsilon=1e-5, name="ln2")(keras.layers.Add()([h, f]))
    out = keras.layers.Dense(4, activation="softmax", name="head")(
        keras.layers.GlobalAveragePooling1D()(h)
    )
    model = keras.Model(inp, out)
    for w in model.weights:
        w.assign(np.random.default_rng(3).uniform(-0.4, 0.4, w.shape).astype(np.float32))
    spec = f"""name: k
input: [8]
layers:
  - embedding: {{input_dim: 20, output_dim: 12, mask_zero: true}}
  - multi_head_attention: {{num_heads: 3, key_dim: 4, value_dim: 5, causal: {str(causal).lower()}}}
  - add:
    inputs: [embedding, multi_head_attention]
  - layernorm:
    name: ln
  - dense: {{units: 16, activation: relu}}
    name: ff1
  - dense: {{units: 12}}
    name: ff2
  - add:
    inputs: [ln, ff2]
  - layernorm:
    name: ln2
  - seq_pool: {{op: mean}}
  - dense: {{units: 4, activation: softmax}}
    name: head
"""
    x = _ids(np.random.default_rng(4), [8, 6, 2], 8, 20)
    names = {
        "emb": "embedding",
        "att": "multi_head_attention",
        "ln": "ln",
        "ff1": "ff1",
        "ff2": "ff2",
        "ln2": "ln2",
        "head": "head",
    }
    compare(spec, model, x, names)
