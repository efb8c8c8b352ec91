"""`netspec graph` renderers: Mermaid text, SVG text and a PNG (matplotlib, imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from itertools import pairwise
from pathlib import Path

from netspec.errors import NetspecError
from netspec.fileio import save_figure, write_text
from netspec.graph_layout import (
    CHAR_W,
    FONT_PX,
    HEADER,
    LINE_H,
    MARGIN,
    PAD_Y,
    Drawing,
    Layout,
    drawing,
    layout,
    shape_text,
    title,
)
from netspec.layers import Add, Concat

# Fill colours by what a layer does; one place for SVG and PNG.
COLOURS = {
    "input": "#e8e8e8",
    "block": "#dbe8f7",
    "conv": "#cfe2ff",
    "dense": "#ffe0b8",
    "pool": "#d4f0d4",
    "norm": "#eeeeee",
    "merge": "#ead6f5",
    "other": "#fff7d6",
}
BORDER = "#555555"
EDGE = "#666666"
LABEL = "#1f4e9e"


def colour(kind: str) -> str:
    if kind in ("input", "block"):
        return COLOURS[kind]
    if "conv" in kind:
        return COLOURS["conv"]
    if kind == "dense":
        return COLOURS["dense"]
    if "pool" in kind:
        return COLOURS["pool"]
    if "norm" in kind:
        return COLOURS["norm"]
    if kind in (Concat.kind, Add.kind):
        return COLOURS["merge"]
    return COLOURS["other"]


def order_text(order: tuple[int, ...]) -> str:
    """An edge's place among its target's inputs: `1`, or `1,2` for an input read twice."""
    return ",".join(map(str, order))


def mermaid(d: Drawing) -> str:
    """A Mermaid flowchart: one node per box (params in its label), shapes on every edge."""
    ids = {b.id: f"n{i}" for i, b in enumerate(d.boxes)}

    def text(s: str) -> str:
        return s.replace('"', "#quot;")

    out = [f"%% {title(d)}", "flowchart TB"]
    grouped = {m: g for g in d.groups for m in g[2]}
    emitted: set[str] = set()
    for b in d.boxes:
        label = "<br/>".join(text(t) for t in (f"<b>{b.id}</b>", *b.lines))
        node = f'{ids[b.id]}["{label}"]'
        g = grouped.get(b.id)
        if g is None:
            out.append(f"  {node}")
        elif g[0] not in emitted:  # an open block: its layers in one subgraph
            emitted.add(g[0])
            out.append(f'  subgraph {ids[g[2][0]]}_g ["{text(g[0])} ({text(g[1])} block)"]')
            for m in g[2]:
                mb = next(x for x in d.boxes if x.id == m)
                ml = "<br/>".join(text(t) for t in (f"<b>{mb.id}</b>", *mb.lines))
                out.append(f'    {ids[m]}["{ml}"]')
            out.append("  end")
    for link in d.links:
        arrow = "-.->" if link.ref else "-->"
        label = (
            f"{order_text(link.order)}: {shape_text(link.shape)}"
            if link.order
            else shape_text(link.shape)
        )
        out.append(f'  {ids[link.src]} {arrow}|"{label}"| {ids[link.dst]}')
    return "\n".join(out) + "\n"


def _curve(points: tuple[tuple[float, float], ...]) -> list[tuple[str, list[tuple[float, float]]]]:
    """Path segments: ('M', [p]) then ('C', [c1, c2, p]) with vertical tangents at every point."""
    segs: list[tuple[str, list[tuple[float, float]]]] = [("M", [points[0]])]
    for (x0, y0), (x1, y1) in pairwise(points):
        my = (y0 + y1) / 2
        segs.append(("C", [(x0, my), (x1, my), (x1, y1)]))
    return segs


def svg(lay: Layout) -> str:
    """The layout as SVG text: boxes with name, kind and parameter count; shapes under each box."""
    d = lay.drawing
    w, h = round(lay.width), round(lay.height)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Verdana, sans-serif" '
        f'font-size="{FONT_PX}">',
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' "
        f"markerHeight='7' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='{EDGE}'/>"
        "</marker></defs>",
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text class="title" x="{MARGIN}" y="{MARGIN + HEADER / 2}" font-size="{FONT_PX + 4}" '
        f'font-weight="bold">{escape(title(d))}</text>',
    ]
    for r in lay.routes:
        path = " ".join(
            f"{op}" + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) for op, pts in _curve(r.points)
        )
        dash = ' stroke-dasharray="4 3"' if r.link.ref else ""
        out.append(
            f'<path class="edge" data-src="{escape(r.link.src)}" data-dst="{escape(r.link.dst)}" '
            f'd="{path}" fill="none" stroke="{EDGE}" stroke-width="1.3"{dash} '
            'marker-end="url(#arrow)"/>'
        )
        if r.link.order:  # which input of a concat: a number where the edge lands
            ex, ey = r.points[-1]
            out.append(
                f'<text class="order" data-src="{escape(r.link.src)}" '
                f'data-dst="{escape(r.link.dst)}" x="{ex + 3:.1f}" y="{ey - 4:.1f}" '
                f'font-size="{FONT_PX - 2}" fill="{EDGE}">{order_text(r.link.order)}</text>'
            )
    for p in lay.placed:
        b = p.box
        x0, y0 = p.x - p.w / 2, p.y - p.h / 2
        stroke = ' stroke-width="2"' if b.kind == "block" else ""
        out.append(
            f'<g class="node" data-id="{escape(b.id)}" data-params="{b.row.params}">'
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{p.w:.1f}" height="{p.h:.1f}" rx="6" '
            f'fill="{colour(b.kind)}" stroke="{BORDER}"{stroke}/>'
        )
        for i, t in enumerate((b.id, *b.lines)):
            weight = ' font-weight="bold"' if i == 0 else ""
            ty = y0 + PAD_Y + LINE_H * i + LINE_H * 0.75
            out.append(
                f'<text x="{p.x:.1f}" y="{ty:.1f}" text-anchor="middle"{weight}>{escape(t)}</text>'
            )
        out.append("</g>")
        # The output shape once per box, just under it, beside the links leaving it, on a
        # white patch so that the links it crosses do not strike it through.
        label = shape_text(b.row.output_shape)
        out.append(
            f'<rect x="{p.x + 4:.1f}" y="{y0 + p.h + 5:.1f}" width="{len(label) * CHAR_W * 0.95 + 4:.1f}" '
            f'height="{LINE_H - 2}" fill="white" fill-opacity="0.85"/>'
            f'<text class="shape" data-id="{escape(b.id)}" x="{p.x + 6:.1f}" '
            f'y="{y0 + p.h + 15:.1f}" fill="{LABEL}" font-size="{FONT_PX - 1}">'
            f"{escape(label)}</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


PNG_SCALE = 1.5  # PNG pixels per layout pixel


def png(lay: Layout, path: Path) -> tuple[int, int]:
    """Draw the layout with matplotlib into a PNG of (width, height) = layout size × PNG_SCALE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, PathPatch
    from matplotlib.path import Path as MPath

    d = lay.drawing
    dpi = 100 * PNG_SCALE
    size = (round(lay.width * PNG_SCALE), round(lay.height * PNG_SCALE))
    fig = plt.figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, lay.width)
    ax.set_ylim(lay.height, 0)  # y down, as in SVG
    ax.axis("off")
    pt = FONT_PX * 72 / 100  # font size in points that is FONT_PX layout pixels high
    ax.text(MARGIN, MARGIN + HEADER / 2, title(d), fontsize=pt + 3, weight="bold", va="center")
    for r in lay.routes:
        verts, codes = [], []
        for op, pts in _curve(r.points):
            verts += pts
            codes += [MPath.MOVETO] if op == "M" else [MPath.CURVE4] * 3
        ls = (0, (4, 3)) if r.link.ref else "-"
        ax.add_patch(PathPatch(MPath(verts, codes), fill=False, ec=EDGE, lw=1, ls=ls))
        (x1, y1) = r.points[-1]
        ax.add_patch(
            FancyArrowPatch(
                (x1, y1 - 6), (x1, y1), arrowstyle="-|>", mutation_scale=8, color=EDGE, lw=1
            )
        )
        if r.link.order:
            ax.text(x1 + 3, y1 - 4, order_text(r.link.order), fontsize=pt - 1.5, color=EDGE)
    for p in lay.placed:
        b = p.box
        x0, y0 = p.x - p.w / 2, p.y - p.h / 2
        ax.add_patch(
            FancyBboxPatch(
                (x0, y0),
                p.w,
                p.h,
                boxstyle="round,pad=0,rounding_size=6",
                fc=colour(b.kind),
                ec=BORDER,
                lw=1.6 if b.kind == "block" else 0.8,
            )
        )
        for i, t in enumerate((b.id, *b.lines)):
            ty = y0 + PAD_Y + LINE_H * i + LINE_H / 2
            ax.text(
                p.x, ty, t, ha="center", va="center", fontsize=pt, weight="bold" if i == 0 else None
            )
        ax.text(
            p.x + 6,
            y0 + p.h + 11,
            shape_text(b.row.output_shape),
            fontsize=pt - 0.7,
            color=LABEL,
            va="center",
            bbox={"fc": "white", "ec": "none", "pad": 0.5, "alpha": 0.85},
        )
    save_figure(fig, path, dpi=dpi)
    plt.close(fig)
    return size


def write(lay: Layout, path: Path) -> str:
    """Write the picture in the format the suffix names; returns that format."""
    suffix = path.suffix.lower()
    if suffix == ".svg":
        write_text(path, svg(lay))
    elif suffix == ".png":
        png(lay, path)
    elif suffix in (".mmd", ".md", ".mermaid"):
        text = mermaid(lay.drawing)
        write_text(path, f"```mermaid\n{text}```\n" if suffix == ".md" else text)
    else:
        raise NetspecError.one(
            f"cannot tell the picture format from '{path.name}'", hint="use .svg, .png, .mmd or .md"
        )
    return suffix.lstrip(".")


@dataclass(frozen=True)
class Drawn:
    """What `netspec graph` wrote: the file, its format, the counts, and any searched values."""

    path: Path
    format: str
    nodes: int
    edges: int
    searched_values: str | None  # `name=value, ...` a search spec was drawn with (its middle)

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "format": self.format,
            "nodes": self.nodes,
            "edges": self.edges,
            "searched_values": self.searched_values,
        }


def draw_spec(spec: str | Path, out: Path, expand: bool = False, sets: Sequence[str] = ()) -> Drawn:
    """Read the spec (with `--set` values), compile it, lay it out and write the picture to `out`.

    A search spec is drawn with every searched value in the middle of its range. Raises the
    NetspecError of the stage that refused the spec, or of an unknown picture format.
    """
    from netspec import search
    from netspec.compiler import compile_source
    from netspec.source import apply_overrides, read

    source = read(spec)
    if sets:
        source = apply_overrides(source, list(sets))
    middle = None
    if entries := search.find_search(source):
        source = search.at_end(source, entries, "middle")
        middle = search.values(entries, "middle")
    lay = layout(drawing(compile_source(source), expand=expand))
    fmt = write(lay, out)
    return Drawn(out, fmt, len(lay.drawing.boxes), len(lay.drawing.links), middle)
