"""Commands that read a spec and load no framework: summary, validate, schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netspec.cli.common import (
    JsonOpt,
    SetOpt,
    SpecOrRunArg,
    app,
    error_json,
    fail,
    report,
    spec_of,
)
from netspec.errors import NetspecError
from netspec.jsonio import dumps


@app.command()
def summary(
    spec: SpecOrRunArg,
    sets: SetOpt = [],  # noqa: B006 (typer reads the default; it is never mutated)
    as_json: JsonOpt = False,
    length: Annotated[
        int | None,
        typer.Option(
            help="For an input with a dynamic (null) time axis: the length MACs and the memory "
            "estimate are counted at (default: 100, or a position_embedding's shorter max_length).",
        ),
    ] = None,
    blocks: Annotated[
        bool,
        typer.Option(
            "--blocks",
            help="One row per block use (its layers' parameters and MACs summed; same totals).",
        ),
    ] = False,
) -> None:
    """Print every layer's output shape, parameters and MACs, and the totals (of a spec or a run)."""
    from netspec.spec_report import summarize

    try:
        result = summarize(spec_of(spec), sets, length)
    except NetspecError as err:
        raise fail(err, as_json) from None
    if as_json:
        typer.echo(dumps(result.to_dict(blocks=blocks)))
    else:
        typer.echo(result.text(blocks=blocks), nl=False)


@app.command()
def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files to check.", show_default=False)],
    sets: SetOpt = [],  # noqa: B006 (typer reads the default; it is never mutated)
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print one JSON list instead of text: {"file", "ok": true, "summary"} or '
            '{"file", "ok": false, "error": {...}} per spec.',
        ),
    ] = False,
) -> None:
    """Check one or more specs; report each file; exit 2 if any is invalid."""
    from netspec.spec_report import check

    bad = 0
    results = []
    for path in specs:
        try:
            line = check(path, sets)
        except NetspecError as err:
            bad += 1
            results.append({"file": str(path), "ok": False, **error_json(err.located(str(path)))})
            if not as_json:
                typer.echo(report(err), err=True)
            continue
        results.append({"file": str(path), "ok": True, "summary": line})
        if not as_json:
            typer.echo(f"ok: {path}: {line}")
    if as_json:
        typer.echo(dumps(results))
    elif bad:
        typer.echo(f"{bad} of {len(specs)} specs are invalid", err=True)
    if bad:
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
    as_json: Annotated[
        bool, typer.Option("--json", help="Accepted for uniformity: the schema is JSON.")
    ] = False,
) -> None:
    """Print the JSON Schema of the spec language, for editor completion and checking (README: Editors)."""
    from netspec.fileio import write_text
    from netspec.schema import json_schema

    text = dumps(json_schema()) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        write_text(out, text)
    except OSError as exc:
        raise fail(NetspecError(f"cannot write {out}: {exc.strerror or exc}"), as_json) from None
    typer.echo(f"wrote {out}")
