"""The `netspec` command line: thin Typer commands that call library functions."""

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


def fail(err: NetspecError) -> typer.Exit:
    """Print a user error (every problem, located) and return the exit to raise: code 2."""
    typer.echo(err.format(), err=True)
    return typer.Exit(code=2)


@app.command()
def summary(
    spec: SpecArg,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Print every layer's output shape, parameters and MACs, and the totals."""
    from netspec.compiler import compile_file
    from netspec.summary import render, to_dict

    try:
        graph = compile_file(spec)
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
    from netspec.compiler import compile_file
    from netspec.summary import rows, totals

    bad = 0
    for path in specs:
        try:
            graph = compile_file(path)
        except NetspecError as err:
            bad += 1
            typer.echo(err.format(), err=True)
            continue
        t = totals(rows(graph))
        typer.echo(
            f"ok: {path}: {len(graph.nodes)} layers, {t.total_params:,} params, "
            f"output {graph.output.shape}"
        )
    if bad:
        typer.echo(f"{bad} of {len(specs)} specs are invalid", err=True)
        raise typer.Exit(code=2)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec language (for editor completion and checking)."""
    from netspec.schema import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
