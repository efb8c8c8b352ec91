"""Pictures of a network: `netspec graph` (the network drawn) and `netspec visualize` (a trained run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netspec.cli.common import JsonOpt, SetOpt, SpecOrRunArg, app, fail, spec_of
from netspec.errors import NetspecError, UsageError
from netspec.jsonio import dumps


@app.command()
def graph(
    spec: SpecOrRunArg,
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
    as_json: JsonOpt = False,
) -> None:
    """Draw the network: shapes on the edges, parameter counts on the nodes, blocks as one box.

    A search spec is drawn with every searched value in the middle of its range.
    """
    from netspec.graph_render import draw_spec

    try:
        drawn = draw_spec(spec_of(spec), out, expand=expand, sets=sets)
    except NetspecError as err:
        raise fail(err, as_json) from None
    if as_json:
        typer.echo(dumps(drawn.to_dict()))
        return
    middle = drawn.searched_values
    note = "" if middle is None else f"; searched values in the middle of their ranges: {middle}"
    typer.echo(f"wrote {out} ({drawn.format}, {drawn.nodes} nodes, {drawn.edges} edges){note}")


@app.command()
def visualize(
    run: Annotated[
        Path, typer.Argument(help="A run directory made by `netspec train`.", show_default=False)
    ],
    filters: Annotated[
        str | None,
        typer.Option("--filters", help="Draw this convolution's filters as a grid of images."),
    ] = None,
    activations: Annotated[
        Path | None,
        typer.Option("--activations", help="Draw the feature maps this input (image, .npy) makes."),
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option(
            "--layers",
            help="With --activations: comma-separated layers (default: the first 8 convs).",
        ),
    ] = None,
    saliency: Annotated[
        Path | None,
        typer.Option(
            "--saliency", help="Gradient and Grad-CAM (last conv) of this input's top class."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="PNG file (default: in the run, named after the view)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Look inside a trained run: filters, feature maps, or saliency (one view per call)."""
    chosen = [v for v in (filters, activations, saliency) if v is not None]
    try:
        if len(chosen) != 1:
            raise UsageError(
                "choose one view: --filters LAYER, --activations IMAGE or --saliency IMAGE"
            )
        if layers is not None and activations is None:
            raise UsageError("--layers goes with --activations")
        from netspec.backends.visualize import visualize as draw

        names = [s.strip() for s in layers.split(",") if s.strip()] if layers else None
        view = draw(
            run, filters=filters, activations=activations, layers=names, saliency=saliency, out=out
        )
    except NetspecError as err:
        raise fail(err, as_json) from None
    if as_json:
        typer.echo(dumps({"path": str(view.path), "detail": view.detail}))
    else:
        typer.echo(f"wrote {view.path}: {view.detail}")
