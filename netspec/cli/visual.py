"""Pictures of a network: `netspec graph` (the network drawn) and `netspec visualize` (a trained run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netspec.cli.common import JsonOpt, SetOpt, SpecArg, app, fail
from netspec.errors import NetspecError, UsageError


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
    as_json: JsonOpt = False,
) -> None:
    """Draw the network: shapes on the edges, parameter counts on the nodes, blocks as one box.

    A search spec is drawn with every searched value in the middle of its range.
    """
    from netspec import search
    from netspec.compiler import compile_source
    from netspec.graph_layout import drawing, layout
    from netspec.graph_render import write
    from netspec.source import apply_overrides, read

    try:
        source = read(spec)
        if sets:
            source = apply_overrides(source, list(sets))
        middle = None
        if entries := search.find_search(source):
            source = search.at_end(source, entries, "middle")
            middle = search.values(entries, "middle")
        lay = layout(drawing(compile_source(source), expand=expand))
        fmt = write(lay, out)
    except NetspecError as err:
        raise fail(err, as_json) from None
    boxes, links = len(lay.drawing.boxes), len(lay.drawing.links)
    if as_json:
        info = {"path": str(out), "format": fmt, "nodes": boxes, "edges": links}
        typer.echo(json.dumps({**info, "searched_values": middle}, indent=2))
        return
    note = "" if middle is None else f"; searched values in the middle of their ranges: {middle}"
    typer.echo(f"wrote {out} ({fmt}, {boxes} nodes, {links} edges){note}")


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
        from netspec.backends import visualize as vis
        from netspec.runs import read_run

        loaded = read_run(run)
        name = loaded.graph.name
        if filters is not None:
            f = vis.filters(loaded.graph, loaded.weights, filters)
            path = out or loaded.directory / f"filters-{filters.replace('/', '_')}.png"
            rows, cols = vis.plot_filters(f, path, f"{name}: filters")
            detail = f"{len(f.tiles)} filters, {rows}x{cols} grid"
        elif activations is not None:
            raw, x = vis.read_input(loaded, activations)
            module = vis.load(loaded)
            names = [s.strip() for s in layers.split(",") if s.strip()] if layers else None
            maps = vis.activations(module, x, names or vis.feature_convs(loaded.graph)[:8])
            path = out or loaded.directory / f"activations-{activations.stem}.png"
            vis.plot_activations(maps, path, f"{name}: feature maps of {activations.name}")
            detail = ", ".join(f"{k} ({len(v)} maps)" for k, v in maps.items())
        else:
            raw, x = vis.read_input(loaded, saliency)  # type: ignore[arg-type]
            meta = loaded.meta
            s = vis.saliency(vis.load(loaded), x, meta.task if meta else None)
            classes = (meta.classes if meta else None) or ()
            label = classes[s.label] if s.label < len(classes) else str(s.label)
            path = out or loaded.directory / f"saliency-{saliency.stem}.png"
            title = f"{name}: {saliency.name} predicted '{label}' ({s.score:.2f})"
            vis.plot_saliency(raw, s, path, title)
            detail = f"predicted '{label}' ({s.score:.2f}), Grad-CAM on {s.layer}"
    except NetspecError as err:
        raise fail(err, as_json) from None
    if as_json:
        typer.echo(json.dumps({"path": str(path), "detail": detail}, indent=2))
    else:
        typer.echo(f"wrote {path}: {detail}")
