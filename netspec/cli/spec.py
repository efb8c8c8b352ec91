"""Commands that read a spec and load no framework: summary, validate, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netspec.cli.common import SpecArg, app, fail, report
from netspec.errors import NetspecError


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
def schema(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write the schema to this file (e.g. netspec.schema.json) instead of printing it.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print the JSON Schema of the spec language, for editor completion and checking (README: Editors)."""
    from netspec.fileio import write_text
    from netspec.schema import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        write_text(out, text)
    except OSError as exc:
        raise fail(NetspecError(f"cannot write {out}: {exc.strerror or exc}")) from None
    typer.echo(f"wrote {out}")
