"""The transformer encoder block of specs/ucr_transformer.yaml: collapsed summary rows with exact
counts (Keras' formulas), and parity with torch.nn.TransformerEncoderLayer and with its ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import netspec
from netspec.cli import app
from netspec.ir import Graph
from netspec.summary import rows, totals

SPEC = Path(__file__).parent.parent / "specs" / "ucr_transformer.yaml"
DIM, HEADS, KEY_DIM, FF = 64, 4, 16, 128
ARGS = {"dim": DIM, "heads": HEADS, "key_dim": KEY_DIM, "ff": FF}


def encoder_blocks() -> dict:
    """The `blocks:` of the shipped spec, read verbatim (langid specs reuse it the same way)."""
    return yaml.safe_load(SPEC.read_text())["blocks"]


def block_graph(steps: int, uses: int = 1) -> Graph:
    """`uses` encoder blocks alone on a [steps, DIM] sequence."""
    spec = {
        "name": "encoder_only",
        "input": [steps, DIM],
        "blocks": encoder_blocks(),
        "layers": [{"encoder": dict(ARGS)} for _ in range(uses)],
    }
    return netspec.compile_text(yaml.safe_dump(spec, sort_keys=False), "<encoder>")


def keras_block_params(d: int, heads: int, key_dim: int, ff: int) -> int:
    """Keras: MultiHeadAttention (query, key, value projections with biases, output projection
    with bias) + 2 LayerNormalization (gamma, beta) + Dense(ff) + Dense(d)."""
    hk = heads * key_dim
    attention = 3 * (d * hk + hk) + (hk * d + d)
    return attention + 2 * (2 * d) + (d * ff + ff) + (ff * d + d)


def test_the_collapsed_row_sums_the_expanded_layers_and_equals_keras() -> None:
    graph = netspec.compile_file(SPEC)
    expanded, collapsed = rows(graph), rows(graph, blocks=True)
    keras = keras_block_params(DIM, HEADS, KEY_DIM, FF)
    assert keras == 33_472
    for use in ("encoder", "encoder_1"):
        (row,) = [r for r in collapsed if r.name == use]
        inside = [r for r in expanded if r.name.startswith(use + "/")]
        assert len(inside) == 9
        assert row.type == "block encoder"
        assert row.params == sum(r.params for r in inside) == keras
        assert row.macs == sum(r.macs for r in inside) > 0
        assert row.output_shape == (29, DIM)
    assert [r.inputs for r in collapsed if r.name.startswith("encoder")] == [
        ("position_embedding",),
        ("encoder",),
    ]
    assert ("encoder_1",) in [r.inputs for r in collapsed if r.name == "layernorm"]
    assert totals(collapsed) == totals(expanded)
    # the rest of the network: dense 12->64, positions 29x64, final layernorm, dense 64->9
    rest = (12 * 64 + 64) + 29 * 64 + 2 * 64 + (64 * 9 + 9)
    assert totals(collapsed).total_params == 2 * keras + rest == 70_345


def test_summary_blocks_option_prints_the_collapsed_rows() -> None:
    result = CliRunner().invoke(app, ["summary", str(SPEC), "--blocks"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert not any("encoder/" in line for line in lines)
    row = next(line for line in lines if line.startswith("encoder_1 (block encoder)"))
    assert "(29, 64)" in row and "33,472" in row
    assert "Total params: 70,345" in result.output
    doc = json.loads(CliRunner().invoke(app, ["summary", str(SPEC), "--blocks", "--json"]).output)
    assert doc["total_params"] == sum(layer["params"] for layer in doc["layers"]) == 70_345
    assert [layer["type"] for layer in doc["layers"]].count("block encoder") == 2
    expanded = json.loads(CliRunner().invoke(app, ["summary", str(SPEC), "--json"]).output)
    assert len(expanded["layers"]) == len(doc["layers"]) + 2 * 8


def test_nested_blocks_collapse_to_the_outer_use() -> None:
    graph = netspec.compile_file(Path(__file__).parent.parent / "specs" / "unet.yaml")
    collapsed = rows(graph, blocks=True)
    assert [r.name for r in collapsed][:2] == ["enc1", "enc2"]
    (dec4,) = [r for r in collapsed if r.name == "dec4"]
    assert dec4.type == "block up" and set(dec4.inputs) == {"bottleneck", "enc4"}
    assert totals(collapsed) == totals(rows(graph))


# --- parity ----------------------------------------------------------------------------------

torch = pytest.importorskip("torch")


def torch_layer(weights: dict, prefix: str = "encoder/") -> torch.nn.TransformerEncoderLayer:
    """torch's pre-norm encoder layer loaded with the block's tensors."""
    layer = torch.nn.TransformerEncoderLayer(
        DIM, HEADS, FF, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )

    def w(name: str) -> torch.Tensor:
        return weights[prefix + name]

    attn = "attention.{}_{}"
    kernels = [w(attn.format(p, "kernel")).T for p in ("query", "key", "value")]
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat(kernels))
        layer.self_attn.in_proj_bias.copy_(
            torch.cat([w(attn.format(p, "bias")) for p in ("query", "key", "value")])
        )
        layer.self_attn.out_proj.weight.copy_(w("attention.output_kernel").T)
        layer.self_attn.out_proj.bias.copy_(w("attention.output_bias"))
        for ours, theirs in (("norm1", layer.norm1), ("norm2", layer.norm2)):
            theirs.weight.copy_(w(f"{ours}.weight"))
            theirs.bias.copy_(w(f"{ours}.bias"))
        for ours, theirs in (("ff1", layer.linear1), ("ff2", layer.linear2)):
            theirs.weight.copy_(w(f"{ours}.weight"))
            theirs.bias.copy_(w(f"{ours}.bias"))
    return layer.eval()


def randomized_module(graph: Graph):  # type: ignore[no-untyped-def]
    from netspec.backends.lowering import build_module

    module = build_module(graph)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():  # norms and biases away from 1 and 0 too
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2 + (p == 1).float())
    return module.eval()


@pytest.mark.parametrize("steps", [1, 7, 29])
def test_the_block_is_torch_transformer_encoder_layer(steps: int) -> None:
    from netspec.backends.weights import weights

    module = randomized_module(block_graph(steps))
    reference = torch_layer(weights(module))
    x = torch.randn(3, steps, DIM, generator=torch.Generator().manual_seed(steps))
    with torch.no_grad():
        ours, theirs = module(x), reference(x)
    assert ours.shape == (3, steps, DIM)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_two_blocks_are_two_stacked_torch_layers() -> None:
    from netspec.backends.weights import weights

    module = randomized_module(block_graph(11, uses=2))
    tensors = weights(module)
    first, second = torch_layer(tensors, "encoder/"), torch_layer(tensors, "encoder_1/")
    x = torch.randn(2, 11, DIM, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(module(x), second(first(x)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec", ["block", "network"])
def test_the_onnx_export_matches_torch_in_onnxruntime(spec: str) -> None:
    pytest.importorskip("onnxruntime")
    from netspec.backends.export.model import check_model, export_onnx
    from netspec.backends.export.parity import check_parity, random_inputs
    from netspec.backends.weights import module_weights

    graph = block_graph(13) if spec == "block" else netspec.compile_file(SPEC)
    module = randomized_module(graph)
    tensors = module_weights(module)
    model = export_onnx(graph, tensors)
    check_model(model, graph)
    diffs = check_parity(graph, tensors, model, random_inputs(graph), module=module, tolerance=1e-5)
    assert set(diffs) == {"random batch 1", "random batch 7"}
    assert max(diffs.values()) <= 1e-5


def test_the_documented_block_is_the_shipped_one() -> None:
    """docs/language.md shows the encoder block as specs/ucr_transformer.yaml and
    specs/langid_transformer.yaml have it."""
    page = (SPEC.parent.parent / "docs" / "language.md").read_text(encoding="utf-8")
    start = page.index("<!-- file: encoder.yaml -->\n```yaml\n") + len(
        "<!-- file: encoder.yaml -->\n```yaml\n"
    )
    documented = yaml.safe_load(page[start : page.index("```", start)])
    assert documented["blocks"] == encoder_blocks()
    langid = yaml.safe_load((SPEC.parent / "langid_transformer.yaml").read_text(encoding="utf-8"))
    assert langid["blocks"] == encoder_blocks()
