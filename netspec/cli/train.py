"""Commands that train and evaluate: train, evaluate, tune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netspec.cli.common import JsonOpt, SetOpt, SpecArg, app, fail
from netspec.errors import Interrupted, NetspecError
from netspec.fileio import check_own_folder
from netspec.jsonio import dumps
from netspec.run_record import RunLayout, StudyLayout

NprocOpt = Annotated[
    int | None,
    typer.Option(help="Data-parallel: start this many processes per node (torchrun, DDP)."),
]
EndpointOpt = Annotated[
    str | None, typer.Option(help="With --nproc: HOST:PORT of the node with rank 0.")
]


@app.command()
def train(
    spec: SpecArg,
    sets: SetOpt = [],  # noqa: B006 (typer reads the default; it is never mutated)
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="Run directory (default: runs/<spec name>/<timestamp>)."),
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
    nproc: NprocOpt = None,
    nnodes: Annotated[int, typer.Option(help="With --nproc: the number of nodes.")] = 1,
    node_rank: Annotated[int, typer.Option(help="With --nproc: this node's rank.")] = 0,
    rdzv_endpoint: EndpointOpt = None,
    rdzv_timeout: Annotated[
        int,
        typer.Option(help="With --nnodes: seconds to wait for every node to arrive; then exit 2."),
    ] = 300,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='The result is JSON anyway; with --json, errors are too ({"error": {...}}).',
        ),
    ] = False,
) -> None:
    """Train the network on the data of the spec's `train:` section; save a run directory."""
    from netspec.api import train_spec
    from netspec.runs import TrainOptions

    options = TrainOptions(device, resume, progress, force)

    if precision is not None:
        sets = [*sets, f"train.precision={precision}"]
    if nproc is not None:  # this process only launches: torchrun runs `netspec train` N times
        try:
            from netspec.backends.training.launch import launch_train

            code = launch_train(
                spec,
                sets,
                out,
                options,
                nproc,
                nnodes,
                node_rank,
                endpoint=rdzv_endpoint,
                rdzv_timeout=rdzv_timeout,
            )
        except NetspecError as err:
            raise fail(err, as_json) from None
        raise typer.Exit(code)
    try:
        _, result = train_spec(
            spec, sets, out, options, echo=lambda line: typer.echo(line, err=True)
        )
    except Interrupted as err:  # Ctrl-C: the last finished epoch is saved
        typer.echo(err.format(), err=True)
        raise typer.Exit(code=130) from None
    except NetspecError as err:
        raise fail(err, as_json) from None
    if result is not None:  # the process that writes (rank 0 of a data-parallel run)
        shown = {k: v for k, v in result.items() if k != "history"}
        typer.echo(dumps(shown))


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
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Classification: folder for the report files (default: the run directory; "
            "with --data, RUN/evaluate/<data name>).",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='The metrics are JSON anyway; with --json, errors are too ({"error": {...}}).',
        ),
    ] = False,
) -> None:
    """Evaluate a trained run on its test split, or on other data; prints JSON metrics.

    Classification runs also write classification_report.txt/.json, confusion_matrix.png,
    mistakes.png (images) and roc.png (two classes), and print the per-class table on stderr.
    """
    from netspec.run_api import load_run

    try:
        if out is not None and out.resolve() != run_dir.resolve():
            check_own_folder(out, RunLayout.REPORT_FILES.__contains__, "netspec evaluate")
        result = load_run(run_dir).evaluate(
            data, device=device, echo=lambda s: typer.echo(s, err=True), out=out
        )
    except NetspecError as err:
        raise fail(err, as_json) from None
    for note in result.get("notes", ()):
        typer.echo(f"note: {note}", err=True)  # stdout stays one JSON object
    if "report" in result:
        from netspec.classreport import render_report

        typer.echo(render_report(result["report"]), err=True, nl=False)

    typer.echo(dumps(result))


@app.command()
def tune(
    spec: SpecArg,
    sets: SetOpt = [],  # noqa: B006 (typer reads the default; it is never mutated)
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
        typer.Option("-o", "--out", help="Study folder (default: runs/<spec name>/tune-<study>)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    heartbeat: Annotated[
        int,
        typer.Option(
            help="Seconds between a running trial's heartbeats; a trial silent for 3 of them "
            "(its worker killed, its machine lost) is marked failed."
        ),
    ] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Search a spec's {search: ...} values with Optuna (TPE, pruning); write the best spec."""
    try:
        if out is not None:
            check_own_folder(out, StudyLayout.owns, "netspec tune")
        from netspec.backends.tune.report import none_completed, tune_study
        from netspec.backends.tune.study import StudyOptions

        options = StudyOptions(storage, study, pruner, device, out, tuple(sets), heartbeat)
        result, text = tune_study(spec, trials, workers, options)
        if result["best"] is None:  # the table first: it holds every trial's reason
            if not as_json:
                typer.echo(text, nl=False)
            raise none_completed(result)
    except ModuleNotFoundError as err:
        if err.name != "optuna":
            raise
        missing = NetspecError("netspec tune needs Optuna: pip install 'netspec[tune]'")
        raise fail(missing, as_json) from None
    except NetspecError as err:
        raise fail(err, as_json) from None
    typer.echo(dumps(result) if as_json else text, nl=as_json)
