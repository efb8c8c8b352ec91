"""Pictures of a network: `netspec graph` (the network drawn) and `netspec visualize` (a trained run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netspec.cli.common import SetOpt, SpecArg, app, fail
from netspec.errors import NetspecError


@app.command()
def graph(
    spec: SpecArg,
    out: Annotated[
        Path,
        typer.Option(
            "-o",
            "--out",
            help="Picture file: .svg, .png, .mmd (Mermaid) or .md (Mermaid block).",
            show_default=False,
        ),
    ],
    expand: Annotated[
        bool, typer.Option("--expand", help="Open every block: draw its layers, not one box.")
    ] = False,
    sets: SetOpt = [],  # noqa: B006 - Typer reads the default, never mutates it
) -> None:
    """Draw the network: shapes on the edges, parameter counts on the nodes, blocks as one box."""
    from netspec.compiler import compile_source
    from netspec.graph_layout import drawing, layout
    from netspec.graph_render import write
    from netspec.source import apply_overrides, read

    try:
        source = read(spec)
        if sets:
            source = apply_overrides(source, list(sets))
        lay = layout(drawing(compile_source(source), expand=expand))
        fmt = write(lay, out)
    except NetspecError as err:
        raise fail(err) from None
    boxes = len(lay.drawing.boxes)
    typer.echo(f"wrote {out} ({fmt}, {boxes} nodes, {len(lay.drawing.links)} edges)")
