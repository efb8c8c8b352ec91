"""torch's attention through torch.onnx (opset 17, batch_first): nn.MultiheadAttention's
self-attention, alone and inside nn.TransformerEncoderLayer, imports as multi_head_attention
with the packed in_proj split into query/key/value kernels (a causal attn_mask as `causal`),
torch's counts and outputs; another mask on the scores, or a key padding mask input, is refused
with a located message."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from helpers import runner  # noqa: E402
from torch import nn  # noqa: E402

from netspec.backends.importing.onnx_import import read_onnx  # noqa: E402
from netspec.backends.importing.write import write_import  # noqa: E402
from netspec.backends.weights import load_module  # noqa: E402
from netspec.cli import app  # noqa: E402
from netspec.runs import read_run  # noqa: E402
from netspec.summary import rows, totals  # noqa: E402

RNG = np.random.default_rng(0)


class SelfAttention(nn.Module):
    def __init__(self, mask: str | None = None) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 12)
        self.att = nn.MultiheadAttention(12, 3, batch_first=True)
        self.head = nn.Linear(12, 2)
        self.mask = None
        if mask == "causal":
            self.mask = nn.Transformer.generate_square_subsequent_mask(6)
        elif mask == "band":  # each step sees its neighbours only: no netspec form
            self.mask = torch.where(
                (torch.arange(6)[:, None] - torch.arange(6)).abs() > 1, -1e9, 0.0
            )

    def forward(self, x):
        h = self.embed(x)
        h = self.att(h, h, h, attn_mask=self.mask)[0]  # need_weights: torch's default
        return self.head(h.mean(1))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.enc(x).mean(1))


class Stack(nn.Module):
    """Two pre-norm layers cloned from one: torch.onnx shares their equal weights (Identity)."""

    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.enc(x).mean(1))


class Padded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x, pad):
        return self.att(x, x, x, key_padding_mask=pad, need_weights=False)[0]


def _export(model: nn.Module, path: Path, *shapes: tuple[int, ...]) -> Path:
    torch.manual_seed(0)
    args = tuple(torch.randn(2, *s) if s else torch.zeros(2, 6, dtype=torch.bool) for s in shapes)
    names = ["x", "pad"][: len(shapes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            args,
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=names,
            dynamic_axes={n: {0: "batch"} for n in names},
        )
    return path


@pytest.mark.parametrize(
    ("make", "shape", "heads", "kinds"),
    [
        (SelfAttention, (6, 4), 3, ["dense", "multi_head_attention", "seq_pool", "dense"]),
        (
            lambda: SelfAttention("causal"),
            (6, 4),
            3,
            ["dense", "multi_head_attention", "seq_pool", "dense"],
        ),
        (
            Encoder,
            (5, 8),
            2,
            [
                "multi_head_attention",
                "add",
                "layernorm",
                "dense",
                "dense",
                "add",
                "layernorm",
                "seq_pool",
                "dense",
            ],
        ),
    ],
)
def test_torch_attention_imports_with_parity(tmp_path: Path, make, shape, heads, kinds) -> None:
    """The packed in_proj split into the query/key/value kernels, out_proj's transposed."""
    torch.manual_seed(0)
    model = make().eval()
    path = _export(model, tmp_path / "m.onnx", shape)
    imported = read_onnx(path)
    att = next(i for i in imported.spec["layers"] if "multi_head_attention" in i)
    causal = getattr(model, "mask", None) is not None  # the causal one
    assert att["multi_head_attention"] == {
        "num_heads": heads,
        "key_dim": 4,
        **({"causal": True} if causal else {}),
    }
    run = write_import(imported, tmp_path / "run")
    graph = read_run(run).graph
    assert [n.kind for n in graph.nodes] == kinds
    assert totals(rows(graph)).total_params == sum(p.numel() for p in model.parameters())
    x = RNG.standard_normal((3, *shape)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    loaded = read_run(run)
    with torch.no_grad():
        got = load_module(loaded.graph, loaded.weights)(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))
    assert runner.invoke(app, ["export", str(run)]).exit_code == 0
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.abs(out - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_masked_torch_attention_is_refused(tmp_path: Path) -> None:
    for name, model, shapes, words in (
        ("band", SelfAttention("band"), [(6, 4)], "a mask on the attention scores other"),
        ("padded", Padded(), [(6, 8), ()], "2 inputs"),
    ):
        path = _export(model, tmp_path / f"{name}.onnx", *shapes)
        out = tmp_path / f"{name}_run"
        result = runner.invoke(app, ["import", str(path), "-o", str(out)])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert words in result.output, result.output
        assert not out.exists()


def test_torch_encoder_stack_with_shared_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Stack().eval()
    imported = read_onnx(_export(model, tmp_path / "m.onnx", (5, 8)))
    names = [i["name"] for i in imported.spec["layers"] if "multi_head_attention" in i]
    assert names == ["enc.layers.0.self_attn", "enc.layers.1.self_attn"]
    run = write_import(imported, tmp_path / "run")
    loaded = read_run(run)
    assert totals(rows(loaded.graph)).total_params == sum(p.numel() for p in model.parameters())
    x = RNG.standard_normal((3, 5, 8)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
        got = load_module(loaded.graph, loaded.weights)(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))
