"""The network as a picture's data: boxes and links (blocks collapsed or open), then a layered layout.

Over 400 lines: the layered layout (ranks, crossing sweeps, placement, routes) and the drawing
it lays out are one pipeline whose steps share the private _Layered state."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from netspec.ir import Graph, Node
from netspec.items import INPUT, block_use
from netspec.layers import Add, Multiply
from netspec.shapes import Shape
from netspec.summary import Row, rows

# Text metrics shared by every renderer: a 12 px sans-serif font, ~7.4 px per character.
FONT_PX = 12
CHAR_W = 7.4
LINE_H = 16
PAD_X, PAD_Y = 12, 8
GAP_X = 28  # between neighbouring boxes of one rank
GAP_Y = 46  # between ranks: room for the shape label under a box
DUMMY_W = 8  # a long edge's waypoint takes this much room in the ranks it crosses
MARGIN = 20
HEADER = 34


@dataclass(frozen=True)
class Box:
    """One drawn node: a layer, a collapsed block instance, or the input.

    `row` is its row of the summary (netspec.summary, `--blocks` where blocks are collapsed):
    its name (the box's id and title), output shape (written on the links leaving it) and
    parameters, so the picture and the table cannot disagree. `lines`: the text under the name.
    """

    row: Row
    lines: tuple[str, ...]
    layers: int = 1  # layers drawn as this box

    @property
    def id(self) -> str:
        return self.row.name

    @property
    def kind(self) -> str:
        """The layer kind, "block" or "input" (what the renderers colour by)."""
        return self.row.type.split()[0]  # a block's row is typed "block <name>"


@dataclass(frozen=True)
class Link:
    """An edge: `src`'s output read by `dst` (`ref`: read for its shape only, e.g. crop_to); `order`:
    its 1-based places among the inputs of a concat (empty where the order does not matter)."""

    src: str
    dst: str
    shape: Shape
    ref: bool = False
    order: tuple[int, ...] = ()


@dataclass(frozen=True)
class Drawing:
    """What a picture shows, in topological order; `groups` are the open blocks (expanded view)."""

    name: str
    boxes: tuple[Box, ...]
    links: tuple[Link, ...]
    params: int
    groups: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (instance, block, member ids)


UNORDERED = (Add.kind, Multiply.kind)  # merges whose edges need no number: the order is moot


def shape_text(shape: Shape) -> str:
    return "×".join(str(d) for d in shape)


def count_text(n: int) -> str:
    return f"{n:,} params"


def describe(node: Node) -> str:
    """The kind and its main arguments in a few characters: `conv2d 16 3×3 /2 relu`."""
    layer = node.layer
    parts: list[str] = [node.kind]
    for field in ("filters", "units", "kernel", "size", "stride", "rate", "activation", "fn"):
        v: Any = getattr(layer, field, None)
        if v is None or v == "linear":
            continue
        if isinstance(v, (tuple, list)):
            if field == "stride" and all(x == 1 for x in v):
                continue
            v = v[0] if field == "stride" and len(set(v)) == 1 else "×".join(str(x) for x in v)
        if field == "stride":
            v = f"/{v}"
        if field == "fn" and v == node.kind:
            continue
        parts.append(str(v))
    return " ".join(parts)


def _block_of(node: Node, expand: bool) -> tuple[str, str] | None:
    """(instance, block) of the outermost block use around a node, or None (top level or open)."""
    if expand or not node.origin.via:
        return None
    block, instance = block_use(node.origin.via[0])
    return instance, block


def drawing(graph: Graph, expand: bool = False) -> Drawing:
    """Boxes and links of a compiled graph; each top-level block use is one box unless `expand`."""
    owner: dict[str, str] = {INPUT: INPUT}  # node name -> box id
    members: dict[str, list[Node]] = {}
    for node in graph.nodes:
        use = _block_of(node, expand)
        box_id = use[0] if use else node.name
        owner[node.name] = box_id
        members.setdefault(box_id, []).append(node)

    boxes = [Box(Row(INPUT, INPUT, (), graph.input_shape, 0, 0, 0, False), (), 0)]
    for row in rows(graph, blocks=not expand):
        nodes = members[row.name]
        # A block's output is the last layer it expanded to (expand.py names the instance so).
        out = nodes[-1]
        if row.type.startswith("block "):
            n = len(nodes)
            lines = (f"{row.type.removeprefix('block ')} block, {n} layer{'s' * (n != 1)}",)
        else:
            lines = (describe(out),) if describe(out) != row.name else ()
        if row.params:
            lines = (*lines, count_text(row.params))
        boxes.append(Box(row, lines, len(nodes)))

    links: dict[tuple[str, str], Link] = {}
    for node in graph.nodes:
        dst = owner[node.name]
        ordered = dst == node.name and len(node.inputs) > 1 and node.kind not in UNORDERED
        reads = [(i, False) for i in node.inputs]
        reads += [(getattr(node.layer, f), True) for f in node.layer.ref_fields]
        for name, ref in reads:
            src = owner[name]
            if src == dst or (src, dst) in links:
                continue  # inside a collapsed block, or already drawn
            shape = graph.input_shape if name == INPUT else graph.node(name).shape
            order = tuple(k + 1 for k, i in enumerate(node.inputs) if owner[i] == src)
            links[(src, dst)] = Link(
                src, dst, tuple(shape), ref, order if ordered and not ref else ()
            )

    groups: list[tuple[str, str, tuple[str, ...]]] = []
    if expand:
        seen: dict[str, int] = {}
        for node in graph.nodes:
            if node.origin.via:
                block, instance = block_use(node.origin.via[0])
                if instance not in seen:
                    seen[instance] = len(groups)
                    groups.append((instance, block, ()))
                i = seen[instance]
                groups[i] = (instance, block, (*groups[i][2], node.name))
    return Drawing(
        graph.name,
        tuple(boxes),
        tuple(links.values()),
        sum(n.params for n in graph.nodes),
        tuple(groups),
    )


@dataclass(frozen=True)
class Placed:
    """A box at its place: centre (x, y), width and height in pixels."""

    box: Box
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Route:
    """A link's path: points from the source's bottom to the target's top, through waypoints."""

    link: Link
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Layout:
    drawing: Drawing
    width: float
    height: float
    placed: tuple[Placed, ...]
    routes: tuple[Route, ...]

    def at(self, box_id: str) -> Placed:
        return next(p for p in self.placed if p.box.id == box_id)


def box_size(box: Box) -> tuple[float, float]:
    # The title is bold: about a tenth wider than the other lines.
    w = max([len(box.id) * CHAR_W * 1.1, *(len(t) * CHAR_W for t in box.lines)]) + 2 * PAD_X
    return max(w, 60.0), (1 + len(box.lines)) * LINE_H + 2 * PAD_Y


def layout(d: Drawing, sweeps: int = 6) -> Layout:
    """A layered (Sugiyama-style) layout, top to bottom.

    Ranks by longest path from the input; links spanning several ranks get one waypoint per
    rank they cross, so skips (U-Net, ResNet) run beside the boxes instead of through them;
    barycentre sweeps order each rank to cut crossings; then each rank is packed around the
    mean x of its neighbours.
    """
    g = _layered(d)
    _order(g, sweeps)
    x = _place_x(g)
    _straighten(g.chains, g.rows, x, g.size)
    left = min(x[v] - g.size[v][0] / 2 for v in x)
    right = max(x[v] + g.size[v][0] / 2 for v in x)
    shift = MARGIN - left
    x = {v: p + shift for v, p in x.items()}
    row_h = [max((g.size[v][1] for v in row), default=0.0) for row in g.rows]
    y_top: list[float] = []
    at = MARGIN + HEADER
    for h in row_h:
        y_top.append(at)
        at += max(h, 1.0) + GAP_Y
    height = at + MARGIN  # the last GAP_Y holds the output's shape label
    placed = tuple(
        Placed(b, x[b.id], y_top[g.rank[b.id]] + row_h[g.rank[b.id]] / 2, *g.size[b.id])
        for b in d.boxes
    )
    routes = _routes(d, g, x, placed, [(y, y + h) for y, h in zip(y_top, row_h)])
    width = right - left + 2 * MARGIN
    width = max(width, len(title(d)) * CHAR_W * 1.2 + 2 * MARGIN)
    return Layout(d, width, height, placed, routes)


@dataclass
class _Layered:
    """The graph a layout works on: the boxes plus one waypoint ("~k~r") per rank a long link
    crosses, each with its rank, size and neighbours one rank up and down."""

    rank: dict[str, int]
    size: dict[str, tuple[float, float]]
    up: dict[str, list[str]]
    down: dict[str, list[str]]
    chains: list[list[str]]  # per link: its source, its waypoints, its destination
    rows: list[list[str]]  # per rank, left to right


def _layered(d: Drawing) -> _Layered:
    """Ranks by longest path from the input, waypoints on long links, rows in drawing order."""
    index = {b.id: i for i, b in enumerate(d.boxes)}
    rank: dict[str, int] = {}
    preds: dict[str, list[str]] = {b.id: [] for b in d.boxes}
    for link in d.links:
        preds[link.dst].append(link.src)
    for b in d.boxes:  # topological order
        rank[b.id] = max((rank[p] + 1 for p in preds[b.id]), default=0)
    g = _Layered(rank, {b.id: box_size(b) for b in d.boxes}, {}, {}, [], [])
    g.up = {b.id: [] for b in d.boxes}
    g.down = {b.id: [] for b in d.boxes}
    order_key: dict[str, float] = {b.id: float(index[b.id]) for b in d.boxes}
    for k, link in enumerate(d.links):
        chain = [link.src]
        for r in range(rank[link.src] + 1, rank[link.dst]):
            w = f"~{k}~{r}"
            rank[w], g.size[w] = r, (DUMMY_W, 0.0)
            g.up[w], g.down[w] = [], []
            order_key[w] = index[link.dst] - 0.5  # start beside the box it leads to
            chain.append(w)
        chain.append(link.dst)
        for a, b in pairwise(chain):
            g.down[a].append(b)
            g.up[b].append(a)
        g.chains.append(chain)
    g.rows = [[] for _ in range(max(rank.values()) + 1)]
    for v in sorted(rank, key=lambda v: order_key[v]):
        g.rows[rank[v]].append(v)
    return g


def _order(g: _Layered, sweeps: int) -> None:
    """Barycentre sweeps, down then up: each row sorted by its neighbours' mean position."""
    n_ranks = len(g.rows)
    pos = {v: float(i) for row in g.rows for i, v in enumerate(row)}
    for s in range(sweeps):
        going_down = s % 2 == 0
        seq = range(1, n_ranks) if going_down else range(n_ranks - 2, -1, -1)
        nbrs = g.up if going_down else g.down
        for r in seq:
            row = g.rows[r]
            key = {
                v: sum(pos[u] for u in nbrs[v]) / len(nbrs[v]) if nbrs[v] else pos[v] for v in row
            }
            row.sort(key=lambda v: key[v])
            for i, v in enumerate(row):
                pos[v] = float(i)


def _place_x(g: _Layered) -> dict[str, float]:
    """x of every box and waypoint: rows packed, then each pulled towards its neighbours,
    keeping the order and the gaps (the last two sweeps look both ways)."""
    x: dict[str, float] = {}
    for row in g.rows:
        at = 0.0
        for v in row:
            x[v] = at + g.size[v][0] / 2
            at += g.size[v][0] + GAP_X
    n_ranks = len(g.rows)
    for s in range(12):
        going_down = s % 2 == 0
        seq = range(n_ranks) if going_down else range(n_ranks - 1, -1, -1)
        for r in seq:
            row = g.rows[r]
            want = []
            for v in row:
                nb = (g.up[v] + g.down[v]) if s >= 10 else (g.up[v] if going_down else g.down[v])
                want.append(sum(x[u] for u in nb) / len(nb) if nb else x[v])
            for v, p in zip(row, _pack(want, [g.size[v][0] for v in row])):
                x[v] = p
    return x


def _routes(
    d: Drawing,
    g: _Layered,
    x: dict[str, float],
    placed: tuple[Placed, ...],
    row_y: list[tuple[float, float]],
) -> tuple[Route, ...]:
    """Each link from its source's bottom, straight down through its waypoints' rows, to its
    target's top; several links into one box land spread over its top, ordered by where they
    come from."""
    by_id = {p.box.id: p for p in placed}
    entry: dict[tuple[str, int], float] = {}
    for b in d.boxes:
        ins = [k for k, c in enumerate(g.chains) if c[-1] == b.id]
        ins.sort(key=lambda k: x[g.chains[k][-2]])
        p = by_id[b.id]
        for j, k in enumerate(ins):
            entry[(b.id, k)] = p.x - p.w / 2 + p.w * (j + 1) / (len(ins) + 1)
    routes = []
    for k, (link, chain) in enumerate(zip(d.links, g.chains)):
        s, t = by_id[link.src], by_id[link.dst]
        pts = [(s.x, s.y + s.h / 2)]
        for w in chain[1:-1]:
            top, bottom = row_y[g.rank[w]]
            pts += [(x[w], top), (x[w], bottom)]
        pts.append((entry[(link.dst, k)], t.y - t.h / 2))
        routes.append(Route(link, tuple(pts)))
    return tuple(routes)


def title(d: Drawing) -> str:
    return f"{d.name}: {count_text(d.params)}"


def _straighten(
    chains: list[list[str]],
    rows: list[list[str]],
    x: dict[str, float],
    size: dict[str, tuple[float, float]],
) -> None:
    """Line up a long link's waypoints on one x where the ranks it crosses leave room."""
    slot = {v: (r, i) for r, row in enumerate(rows) for i, v in enumerate(row)}
    for chain in chains:
        ways = chain[1:-1]
        if len(ways) < 2:
            continue
        for target in sorted((x[w] for w in ways), key=lambda t: -abs(t - x[ways[0]])):
            ok = True
            for w in ways:
                r, i = slot[w]
                row = rows[r]
                lo = row[i - 1] if i > 0 else None
                hi = row[i + 1] if i + 1 < len(row) else None
                if lo is not None and target - x[lo] < (size[lo][0] + DUMMY_W) / 2 + GAP_X / 2:
                    ok = False
                if hi is not None and x[hi] - target < (size[hi][0] + DUMMY_W) / 2 + GAP_X / 2:
                    ok = False
            if ok:
                for w in ways:
                    x[w] = target
                break


def _pack(want: list[float], widths: list[float]) -> list[float]:
    """Positions as close to `want` as the order and the gaps allow (mean of two greedy sweeps)."""
    n = len(want)
    a, b = list(want), list(want)
    for i in range(1, n):
        a[i] = max(want[i], a[i - 1] + (widths[i - 1] + widths[i]) / 2 + GAP_X)
    for i in range(n - 2, -1, -1):
        b[i] = min(want[i], b[i + 1] - (widths[i] + widths[i + 1]) / 2 - GAP_X)
    return [(p + q) / 2 for p, q in zip(a, b)]
