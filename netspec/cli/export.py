"""Commands on exported models: export, inspect, bench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netspec.cli.common import JsonOpt, SetOpt, app, fail
from netspec.errors import NetspecError
from netspec.jsonio import dumps

Int8Opt = Annotated[
    bool,
    typer.Option(
        "--int8",
        help="Quantize to int8 (QLinearConv/QLinearMatMul, opset 19+), calibrated on the run's "
        "training samples, checked by accuracy on its test split and then run in every runtime "
        "installed (onnxruntime, the onnx reference evaluator, OpenCV, onnxruntime-node/-web).",
    ),
]

Int8RuntimeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--int8-runtime",
        help="With --int8: a runtime the model is meant for (repeatable; default: every one "
        "installed): onnxruntime, onnx-reference, opencv, onnxruntime-node, onnxruntime-web. "
        "The others are run and reported, not gated.",
        show_default=False,
    ),
]

MaxDropOpt = Annotated[
    float | None,
    typer.Option(
        help="With --int8: the most test accuracy it may lose, in percentage points (default 1)."
    ),
]

CheckOpt = Annotated[
    bool,
    typer.Option(
        "--check/--no-check",
        help="Check the model (onnx.checker, shapes) and compare it with PyTorch.",
    ),
]

PreprocessOpt = Annotated[
    bool,
    typer.Option(
        "--preprocess",
        help="Put the run's image preprocessing inside the graph (opset 18): the model takes "
        "uint8 (N, H, W, C) images of any size and resizes, converts and normalizes them itself.",
    ),
]

EnsembleOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--ensemble",
        help="Another run of the same task (repeatable): write one ONNX graph that averages "
        "the runs' probabilities (default: <run>/ensemble.onnx).",
        show_default=False,
    ),
]


@app.command()
def export(
    source: Annotated[
        Path,
        typer.Argument(
            help="A run directory made by `netspec train`, or its model.safetensors.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Output file (default: <run>/model.onnx).")
    ] = None,
    opset: Annotated[
        str, typer.Option(help="ONNX opset: a number, or auto (the lowest the network needs).")
    ] = "auto",
    batch_dim: Annotated[
        str,
        typer.Option(
            "--batch-dim", help="The graph's batch dimension: 'dynamic', or a fixed positive size."
        ),
    ] = "dynamic",
    fp16: Annotated[
        bool,
        typer.Option(
            "--fp16", help="Store weights and compute in float16 (input and output stay float32)."
        ),
    ] = False,
    fp16_io: Annotated[
        bool, typer.Option("--fp16-io", help="With --fp16: make the input and output float16 too.")
    ] = False,
    int8: Int8Opt = False,
    max_drop: MaxDropOpt = None,
    int8_runtime: Int8RuntimeOpt = None,
    check: CheckOpt = True,
    preprocess: PreprocessOpt = False,
    ensemble: EnsembleOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a trained run to ONNX, checked against the PyTorch model."""
    try:
        if out is not None:
            _check_target(out)
        from netspec.backends.export.opsets import parse_opset
        from netspec.backends.export.run import ExportOptions, export_run, parse_batch

        options = ExportOptions(
            opset=parse_opset(opset),
            batch=parse_batch(batch_dim),
            fp16=fp16,
            fp16_io=fp16_io,
            int8=int8,
            max_drop=max_drop,
            int8_runtimes=tuple(int8_runtime) if int8_runtime else None,
            check=check,
            preprocess=preprocess,
        )
        if ensemble:
            from netspec.backends.export.ensemble import export_ensemble

            report = export_ensemble([source, *ensemble], out, options)
        else:
            report = export_run(source, out, options)
    except NetspecError as err:
        raise fail(err, as_json) from None
    if as_json:
        typer.echo(dumps(report.to_dict()))
    else:
        typer.echo("\n".join(report.lines()))


def _is_sidecar(path: Path) -> bool:
    """A JSON sidecar netspec wrote (its `format` names it), as opposed to a user's JSON file."""
    from netspec.backends.export.sidecar import FORMAT

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT


def _check_target(out: Path) -> None:
    """`-o FILE` replaces an .onnx file and its netspec sidecar, never a user's other files."""
    from netspec.backends.export.sidecar import sidecar_path
    from netspec.fileio import check_replaceable

    hint = "name a new .onnx file (its sidecar is FILE.json beside it)"
    check_replaceable(out, lambda p: p.suffix.lower() == ".onnx", "netspec export", hint)
    check_replaceable(sidecar_path(out), _is_sidecar, "netspec export", hint)


@app.command()
def inspect(
    model: Annotated[Path, typer.Argument(help="Any .onnx file.", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Show a model's inputs, outputs, opsets, size, parameters, operators and netspec metadata."""
    from netspec.backends.export.inspection import inspect_model, render

    try:
        info = inspect_model(model)
    except NetspecError as err:
        raise fail(err, as_json) from None
    typer.echo(dumps(info) if as_json else render(info))


@app.command()
def bench(
    source: Annotated[
        Path,
        typer.Argument(
            help="A spec (random weights), a run directory, or an .onnx file (with its run beside).",
            show_default=False,
        ),
    ],
    sets: SetOpt = [],  # noqa: B006 (typer reads the default; it is never mutated)
    batches: Annotated[
        str, typer.Option("--batches", help="Batch sizes to time, comma-separated.")
    ] = "1,64",
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads for both engines (default: torch's).")
    ] = None,
    repeats: Annotated[int, typer.Option(help="Timed calls per engine and batch size.")] = 50,
    device: Annotated[str, typer.Option(help="auto (CUDA when usable), cpu or cuda.")] = "auto",
    tolerance: Annotated[
        float | None,
        typer.Option(
            help="Largest output difference from PyTorch, times the output's scale (default: the "
            "export's, 1e-4, or 1e-2 for float16; int8 models are compared, not checked)."
        ),
    ] = None,
    length: Annotated[
        int | None,
        typer.Option(
            help="Steps of a dynamic time axis (default: 100, within the model's limits)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Time PyTorch eager and onnxruntime on the same model and input, interleaved."""
    try:
        from netspec.backends.bench.result import render, to_dict
        from netspec.backends.bench.run import bench as run_bench
        from netspec.backends.bench.run import parse_batches

        result = run_bench(
            source,
            parse_batches(batches),
            threads=threads,
            repeats=repeats,
            device=device,
            tolerance=tolerance,
            sets=sets,
            length=length,
        )
    except NetspecError as err:
        raise fail(err, as_json) from None
    typer.echo(dumps(to_dict(result)) if as_json else render(result), nl=as_json)
