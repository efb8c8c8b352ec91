"""The `netspec` command line: thin Typer commands that call library functions.

Over 400 lines: ten commands, each declaring its options (most of the lines) and calling one
library function; the work itself lives in the library.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from netspec.errors import NetspecError

app = typer.Typer(
    name="netspec",
    help="Describe a neural network in YAML: validate it, summarize it, train it, export it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[Path, typer.Argument(help="A spec file (YAML).", show_default=False)]


def report(err: NetspecError) -> str:
    """Every problem, located, then the stage that refused the input (parse ... train, data)."""
    return err.format() + (f"\n({err.stage} stage)" if err.stage else "")


def fail(err: NetspecError) -> typer.Exit:
    """Print a user error (every problem, located) and return the exit to raise: code 2."""
    typer.echo(report(err), err=True)
    return typer.Exit(code=2)


@app.command()
def summary(
    spec: SpecArg,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Print every layer's output shape, parameters and MACs, and the totals."""
    from netspec import search
    from netspec.compiler import compile_source
    from netspec.source import read
    from netspec.summary import render, to_dict

    try:
        source = read(spec)
        if entries := search.find_search(source):  # a search spec: its ranges and sizes
            info = search.summary(source, entries, search.check_ends(source, entries))
            typer.echo(json.dumps(info, indent=2) if as_json else search.render(info, entries))
            return
        graph = compile_source(source)
    except NetspecError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(to_dict(graph), indent=2))
    else:
        typer.echo(render(graph), nl=False)


@app.command()
def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files to check.", show_default=False)],
) -> None:
    """Check one or more specs; report each file; exit 2 if any is invalid."""
    from netspec import search
    from netspec.compiler import compile_source
    from netspec.source import read
    from netspec.summary import one_line

    bad = 0
    for path in specs:
        try:
            source = read(path)
            entries = search.find_search(source)
            line = search.one_line(source, entries) if entries else one_line(compile_source(source))
        except NetspecError as err:
            bad += 1
            typer.echo(report(err), err=True)
            continue
        typer.echo(f"ok: {path}: {line}")
    if bad:
        typer.echo(f"{bad} of {len(specs)} specs are invalid", err=True)
        raise typer.Exit(code=2)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec language (for editor completion and checking)."""
    from netspec.schema import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


SetOpt = Annotated[
    list[str],
    typer.Option(
        "--set",
        help="Override a spec value, validated like the file: --set train.epochs=3 (repeatable).",
        show_default=False,
    ),
]


@app.command()
def train(
    spec: SpecArg,
    sets: SetOpt = [],  # noqa: B006 (typer reads the default; it is never mutated)
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory (default: runs/<spec name>/<timestamp>)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out (default: the latest run).")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[
        str | None,
        typer.Option(help="fp32, or bf16 (mixed precision, for CUDA); default: the spec's."),
    ] = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Live progress bar.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Train even if the memory estimate does not fit.")
    ] = False,
    nproc: Annotated[
        int | None,
        typer.Option(help="Data-parallel: start this many processes per node (torchrun, DDP)."),
    ] = None,
    nnodes: Annotated[int, typer.Option(help="With --nproc: the number of nodes.")] = 1,
    node_rank: Annotated[int, typer.Option(help="With --nproc: this node's rank.")] = 0,
    rdzv_endpoint: Annotated[
        str | None, typer.Option(help="With --nproc: HOST:PORT of the node with rank 0.")
    ] = None,
) -> None:
    """Train the network on the data of the spec's `train:` section; save a run directory."""
    from netspec.runs import prepare_run

    try:
        if precision is not None:
            sets = [*sets, f"train.precision={precision}"]
        graph, run_dir, spec_text, summary_text = prepare_run(spec, sets, out, resume)
        if nproc is not None:  # this process only launches: torchrun runs `netspec train` N times
            from netspec.backends.training.launch import launch_ranks

            code = launch_ranks(
                spec,
                sets,
                run_dir,
                graph.train.batch_size,
                device=device,
                resume=resume,
                progress=progress,
                force=force,
                nproc=nproc,
                nnodes=nnodes,
                node_rank=node_rank,
                endpoint=rdzv_endpoint,
            )
    except NetspecError as err:
        raise fail(err) from None
    if nproc is not None:
        raise typer.Exit(code)
    # Imported after the spec checks, so a spec error is reported without loading torch.
    from netspec.backends.training.loop import Interrupted
    from netspec.backends.training.run import train_run

    try:
        result = train_run(
            graph,
            run_dir,
            device=device,
            resume=resume,
            spec_text=spec_text,
            summary_text=summary_text,
            progress=progress,
            force=force,
            echo=lambda line: typer.echo(line, err=True),
        )
    except Interrupted as err:
        typer.echo(err.format(), err=True)
        raise typer.Exit(code=130) from None
    except NetspecError as err:
        raise fail(err) from None
    if result is not None:  # the process that writes (rank 0 of a data-parallel run)
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `netspec train`.")],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Evaluate on this data (same kind as the run's) instead of its test split."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Evaluate a trained run on its test split, or on other data; prints JSON metrics."""
    try:
        from netspec.backends.training.evaluate import evaluate_run

        result = evaluate_run(
            run_dir, data=data, device=device, log=lambda s: typer.echo(s, err=True)
        )
    except NetspecError as err:
        raise fail(err) from None
    for note in result.get("notes", ()):
        typer.echo(f"note: {note}", err=True)  # stdout stays one JSON object
    typer.echo(json.dumps(result, indent=2))


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
) -> None:
    """Export a trained run to ONNX, checked against the PyTorch model."""
    try:
        if not onnx:
            raise NetspecError("choose an export format: --onnx (the only one for now)")
        from netspec.backends.export.run import export_run, parse_batch

        report = export_run(
            source, out, opset=opset, batch=parse_batch(batch), fp16=fp16, check=check
        )
    except NetspecError as err:
        raise fail(err) from None
    typer.echo("\n".join(report.lines()))


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="An .onnx file.", show_default=False)],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Images (png, jpg, bmp, tiff), .npy arrays (one sample or a batch) or .csv rows; "
            "for segmentation, scenes of any size: images, multi-band .tif, .npy (C, H, W).",
            show_default=False,
        ),
    ],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes shown per input.")] = 5,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document instead of text.")
    ] = False,
    provider: Annotated[
        str, typer.Option(help="auto (CUDA when onnxruntime-gpu can use it), cpu or cuda.")
    ] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per run.")] = 64,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", help="Where segmentation masks go (default: here)."),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(
            "--overlap",
            help="Segmentation: pixels by which tiles overlap when a scene is predicted tile by "
            "tile (blended across the overlap); 0 or more, below the tile side. "
            "Default: a quarter of the tile side.",
            show_default=False,
        ),
    ] = None,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="Segmentation: test-time augmentation, averaging each tile's class "
            "probabilities over its 8 rotations and mirrors (4 for tiles that are not square).",
        ),
    ] = False,
) -> None:
    """Run an exported model with onnxruntime on inputs, preprocessed as the model records."""
    # onnxruntime only: predict never imports torch (a test checks it).
    from netspec.backends.predict.outputs import text_lines
    from netspec.backends.predict.predict import predict as run_predict

    results = []
    try:
        for i, result in enumerate(
            run_predict(
                model,
                inputs,
                top_k=top_k,
                provider=provider,
                batch_size=batch_size,
                out_dir=out_dir,
                overlap=overlap,
                tta=tta,
            )
        ):
            if as_json:
                results.append(result)
            else:
                typer.echo(("\n" if i else "") + "\n".join(text_lines(result)))
    except NetspecError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(results, indent=2))


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


@app.command()
def tune(
    spec: SpecArg,
    trials: Annotated[int, typer.Option(help="Trials in the study (finished ones count).")] = 20,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (default: sqlite:///<study folder>/study.db; a PostgreSQL "
            "URL lets several machines share one study)."
        ),
    ] = None,
    study: Annotated[str, typer.Option(help="Study name.")] = "main",
    workers: Annotated[int, typer.Option(help="Worker processes on this machine.")] = 1,
    pruner: Annotated[str, typer.Option(help="median, hyperband or none.")] = "median",
    out: Annotated[
        Path | None,
        typer.Option(help="Study folder (default: runs/<spec name>/tune-<study>)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Search a spec's {search: ...} values with Optuna (TPE, pruning); write the best spec."""
    try:
        from netspec.backends.tune.report import tune_study

        result, text = tune_study(spec, trials, storage, study, workers, pruner, device, out)
    except ModuleNotFoundError as err:
        if err.name != "optuna":
            raise
        raise fail(NetspecError("netspec tune needs Optuna: pip install 'netspec[tune]'")) from None
    except NetspecError as err:
        raise fail(err) from None
    typer.echo(json.dumps(result, indent=2) if as_json else text, nl=as_json)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
