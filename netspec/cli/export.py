"""Commands on exported models: export, inspect, bench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netspec.cli.common import app, fail
from netspec.errors import NetspecError


@app.command()
def export(
    source: Annotated[
        Path,
        typer.Argument(
            help="A run directory made by `netspec train`, or its model.safetensors.",
            show_default=False,
        ),
    ],
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (the only format).")] = False,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Output file (default: <run>/model.onnx).")
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 17,
    batch: Annotated[
        str, typer.Option(help="Batch size: 'dynamic', or a fixed positive integer.")
    ] = "dynamic",
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Store weights, input and output as float16.")
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Check the model (onnx.checker, shapes) and compare it with PyTorch.",
        ),
    ] = True,
    ensemble: Annotated[
        list[Path] | None,
        typer.Option(
            "--ensemble",
            help="Another run of the same task (repeatable): write one ONNX graph that averages "
            "the runs' probabilities (default: <run>/ensemble.onnx).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Export a trained run to ONNX, checked against the PyTorch model."""
    try:
        if not onnx:
            raise NetspecError("choose an export format: --onnx (the only one for now)")
        from netspec.backends.export.run import export_run, parse_batch

        if ensemble:
            from netspec.backends.export.ensemble import export_ensemble

            if fp16:
                raise NetspecError("--ensemble: --fp16 is not supported for ensembles")
            report = export_ensemble(
                [source, *ensemble], out, opset=opset, batch=parse_batch(batch), check=check
            )
        else:
            report = export_run(
                source, out, opset=opset, batch=parse_batch(batch), fp16=fp16, check=check
            )
    except NetspecError as err:
        raise fail(err) from None
    typer.echo("\n".join(report.lines()))


@app.command()
def inspect(
    model: Annotated[Path, typer.Argument(help="Any .onnx file.", show_default=False)],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of text.")
    ] = False,
) -> None:
    """Show a model's inputs, outputs, opsets, size, parameters, operators and netspec metadata."""
    from netspec.backends.export.inspection import inspect_model, render

    try:
        info = inspect_model(model)
    except NetspecError as err:
        raise fail(err) from None
    typer.echo(json.dumps(info, indent=2) if as_json else render(info))


@app.command()
def bench(
    source: Annotated[
        Path,
        typer.Argument(
            help="A spec (random weights), a run directory, or an .onnx file (with its run beside).",
            show_default=False,
        ),
    ],
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,64",
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads for both engines (default: torch's).")
    ] = None,
    repeats: Annotated[int, typer.Option(help="Timed calls per engine and batch size.")] = 50,
    device: Annotated[str, typer.Option(help="auto (CUDA when usable), cpu or cuda.")] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
) -> None:
    """Time PyTorch eager and onnxruntime on the same model and input, interleaved."""
    try:
        from netspec.backends.bench import bench as run_bench
        from netspec.backends.bench import parse_batches, render, to_dict

        result = run_bench(
            source, parse_batches(batch), threads=threads, repeats=repeats, device=device
        )
    except NetspecError as err:
        raise fail(err) from None
    typer.echo(json.dumps(to_dict(result), indent=2) if as_json else render(result), nl=as_json)
