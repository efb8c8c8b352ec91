"""`netspec bench`: PyTorch eager vs onnxruntime rows per engine and batch size, the parity
number, and the CLI (tables, JSON, errors). Nothing here asserts a timing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from helpers import fails, invoke
from typer.testing import CliRunner

from netspec.backends.bench.result import ORT, TORCH, TORCH_CL, BenchRow
from netspec.backends.bench.run import bench, parse_batches
from netspec.backends.bench.timing import BenchError, interleave, p90
from netspec.backends.export.parity import ParityError
from netspec.cli import app

TINY = """\
name: tiny
input: [1, 8, 8]
layers:
  - conv2d: {filters: 4, kernel: 3, activation: relu}
  - batchnorm
  - flatten
  - dense: {units: 3, activation: softmax}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


def test_bench_rows_for_every_engine_and_every_batch(tiny: Path) -> None:
    result = bench(tiny, (1, 5), threads=1, repeats=5)
    assert result.model == "tiny"
    assert result.threads == 1
    # A 2-d convnet: eager PyTorch in NCHW and in channels-last (what netspec trains with).
    assert {(r.engine, r.batch) for r in result.rows} == {
        (e, b) for e in (TORCH, TORCH_CL, ORT) for b in (1, 5)
    }
    for row in result.rows:
        assert isinstance(row, BenchRow)
        assert row.runs == 5
        assert 0 < row.median_ms <= row.p90_ms
        assert row.samples_per_s > 0
    with pytest.raises(AttributeError):
        result.rows[0].median_ms = 1.0  # type: ignore[misc]  # frozen
    # Both engines' outputs were compared before timing.
    assert result.max_abs_diff is not None and 0 <= result.max_abs_diff <= 1e-4
    assert result.speedup(1) is not None and result.speedup(1) > 0
    cl = result.speedup(5, TORCH_CL)
    assert cl is not None and cl > 0
    assert cl == pytest.approx(result.row(TORCH_CL, 5).median_ms / result.row(ORT, 5).median_ms)


def test_no_channels_last_row_without_2d_convolutions(tmp_path: Path) -> None:
    dense = tmp_path / "dense.yaml"
    dense.write_text(
        "name: dense\ninput: [6]\nlayers:\n  - dense: {units: 3, activation: softmax}\n",
        encoding="utf-8",
    )
    result = bench(dense, (2,), threads=1, repeats=2)
    assert [r.engine for r in result.rows] == [TORCH, ORT]
    assert result.speedup(2, TORCH_CL) is None


def test_onnx_alone_without_a_run(tiny: Path, tmp_path: Path) -> None:
    import netspec
    from netspec.backends.export.model import export_onnx
    from netspec.backends.lowering import build_module
    from netspec.backends.weights import module_weights

    graph = netspec.compile_file(tiny)
    path = tmp_path / "alone" / "tiny.onnx"
    path.parent.mkdir()
    path.write_bytes(export_onnx(graph, module_weights(build_module(graph))).SerializeToString())
    result = bench(path, (2,), threads=1, repeats=3)
    assert [(r.engine, r.batch) for r in result.rows] == [(ORT, 2)]
    assert result.max_abs_diff is None
    assert any("onnxruntime timed alone" in n for n in result.notes)


def test_parse_batches_and_p90() -> None:
    assert parse_batches("1, 64,1") == (1, 64)
    for bad in ("", "0", "a,2", "-3"):
        with pytest.raises(BenchError):
            parse_batches(bad)
    assert p90([5.0, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]) == 9.0
    calls = {"x": lambda: None, "y": lambda: None}
    times = interleave(calls, 4, warmup=1, warmup_s=0.0)
    assert {k: len(v) for k, v in times.items()} == {"x": 4, "y": 4}


def test_cli_bench_prints_both_engines(tiny: Path) -> None:
    result = CliRunner().invoke(
        app, ["bench", str(tiny), "--batches", "1,3", "--threads", "1", "--repeats", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "pytorch" in result.output and "onnxruntime" in result.output
    assert "batch 1" in result.output and "batch 3" in result.output
    assert "speedup onnxruntime / pytorch: " in result.output
    assert "pytorch channels-last " in result.output
    assert "speedup onnxruntime / pytorch channels-last: " in result.output


def test_cli_bench_json(tiny: Path) -> None:
    result = CliRunner().invoke(
        app, ["bench", str(tiny), "--batches", "2", "--threads", "1", "--repeats", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {r["engine"] for r in data["rows"]} == {TORCH, TORCH_CL, ORT}
    assert data["max_abs_diff"] is not None and set(data["speedup"]) == {"2"}
    assert data["speedup_channels_last"]["2"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["no/such/spec.yaml"],
            "no/such/spec.yaml: error: no such spec, run directory or .onnx file",
        ),
        (["{txt}"], "{txt}: error: expected a spec (.yaml), a run directory or an .onnx file"),
        (["{tiny}", "--batches", "0"], "error: --batches 0: expected positive integers"),
        (["{tiny}", "--repeats", "0"], "error: --repeats 0: expected a positive integer"),
        (["{tiny}", "--threads", "0"], "error: --threads 0: expected a positive integer"),
    ],
)
def test_cli_bench_errors_exit_2(tiny: Path, args: list[str], message: str) -> None:
    txt = tiny.with_suffix(".txt")
    txt.write_text("not a spec", encoding="utf-8")
    args = [a.replace("{tiny}", str(tiny)).replace("{txt}", str(txt)) for a in args]
    result = invoke("bench", *args)
    fails(result, message.replace("{txt}", str(txt)))


def test_float16_exports_get_the_float16_tolerance(quickstart_copy: Path) -> None:
    # float16 weights behind float32 inputs: the precision is read from the graph, not the input.
    exported = invoke("export", quickstart_copy, "--fp16", "--no-check")
    assert exported.exit_code == 0, exported.output
    result = bench(quickstart_copy / "model.onnx", (7,), threads=1, repeats=2)
    assert result.tolerance == 1e-2 and not result.quantized
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-2
    with pytest.raises(ParityError, match=r"> 1e-09"):
        bench(quickstart_copy / "model.onnx", (7,), threads=1, repeats=2, tolerance=1e-9)
