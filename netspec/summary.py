"""The summary: rows of data from the IR first, rendered as a table or JSON second."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from netspec.ir import Graph
from netspec.items import INPUT, block_use
from netspec.memory import total as memory_total

FLOAT32_BYTES = 4


@dataclass(frozen=True)
class Row:
    name: str
    type: str
    inputs: tuple[str, ...]
    output_shape: tuple[int | None, ...]  # None: the dynamic time axis
    params: int
    trainable_params: int
    macs: int
    trainable: bool


@dataclass(frozen=True)
class Totals:
    total_params: int
    trainable_params: int
    non_trainable_params: int
    macs: int
    param_bytes: int


def rows(graph: Graph, *, blocks: bool = False) -> tuple[Row, ...]:
    """One row per layer; with `blocks`, one row per top-level block use instead of its layers."""
    table = tuple(
        Row(n.name, n.kind, n.inputs, n.shape, n.params, n.trainable_params, n.macs, n.trainable)
        for n in graph.nodes
    )
    return _by_block(graph, table) if blocks else table


def _by_block(graph: Graph, table: tuple[Row, ...]) -> tuple[Row, ...]:
    """Each top-level block use as one row: named like the use, typed `block <name>`, fed by
    what feeds it from outside, shaped like its output (its last layer), its layers' parameters
    and MACs summed, so the totals are those of the expanded rows. A reference to any layer
    inside a use reads as the use's name."""
    use = {n.name: block_use(n.origin.via[0]) for n in graph.nodes if n.origin.via}

    def outer(name: str) -> str:
        return use[name][1] if name in use else name

    out: list[Row] = []
    i = 0
    while i < len(table):
        here = use.get(table[i].name)
        if here is None:
            out.append(replace(table[i], inputs=tuple(outer(x) for x in table[i].inputs)))
            i += 1
            continue
        j = i
        while j < len(table) and use.get(table[j].name) == here:
            j += 1
        group, inner = table[i:j], {r.name for r in table[i:j]}
        feeds = (outer(x) for r in group for x in r.inputs if x not in inner)
        out.append(
            Row(
                here[1],
                f"block {here[0]}",
                tuple(dict.fromkeys(feeds)),
                group[-1].output_shape,
                sum(r.params for r in group),
                sum(r.trainable_params for r in group),
                sum(r.macs for r in group),
                all(r.trainable for r in group),
            )
        )
        i = j
    return tuple(out)


def totals(table: tuple[Row, ...]) -> Totals:
    """Summed from the rows, so the table and the totals cannot disagree."""
    total = sum(r.params for r in table)
    trainable = sum(r.trainable_params for r in table)
    return Totals(
        total, trainable, total - trainable, sum(r.macs for r in table), total * FLOAT32_BYTES
    )


def to_dict(graph: Graph, *, blocks: bool = False) -> dict[str, Any]:
    table = rows(graph, blocks=blocks)
    t = totals(table)
    return {
        "name": graph.name,
        "input_shape": list(graph.input_shape),
        "output_shape": list(graph.output.shape),
        **asdict(t),
        **({"length": graph.length} if graph.length is not None else {}),
        **({"training_memory": _memory_dict(graph)} if graph.train is not None else {}),
        "layers": [
            {
                "name": r.name,
                "type": r.type,
                "inputs": list(r.inputs),
                "output_shape": list(r.output_shape),
                "params": r.params,
                "trainable_params": r.trainable_params,
                "non_trainable_params": r.params - r.trainable_params,
                "macs": r.macs,
            }
            for r in table
        ],
    }


def _memory_dict(graph: Graph) -> dict[str, Any]:
    """The training-memory estimate, by part (the data's included), for --json."""
    from netspec.memory_data import training_rows

    assert graph.train is not None
    parts = training_rows(graph)
    return {
        "batch_size": graph.train.batch_size,
        "total_bytes": memory_total(parts),
        "parts": [{"what": r.what, "bytes": r.bytes, "note": r.note} for r in parts],
    }


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def human_count(n: int) -> str:
    for unit, scale in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _shape(shape: tuple[int | None, ...]) -> str:
    return str(tuple(shape))


def _table(header: list[str], body: list[list[str]], right: set[int]) -> list[str]:
    """Plain-text columns (no terminal library: the summary must start fast)."""
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "─" * (sum(widths) + 2 * (len(widths) - 1))
    return [rule, line(header), rule, *(line(r) for r in body), rule]


# A run of a repeated pattern of rows longer than this is shown once, then one line for the rest:
# `repeat: 1000` prints a few rows, not a thousand. No shipped spec has a run this long.
COLLAPSE_ROWS = 24
_MAX_PERIOD = 8  # the longest repeated pattern looked for, in rows


def _signature(r: Row) -> tuple[Any, ...]:
    return (r.type, r.output_shape, r.params, r.macs, r.trainable)


def runs(table: tuple[Row, ...]) -> list[tuple[int, int, int]]:
    """(start, period, repeats) of each long run of a repeated pattern of rows, in order.

    Rows are alike when their type, shape, parameters, MACs and trainability are equal.
    """
    sig = [_signature(r) for r in table]
    out = []
    i = 0
    while i < len(sig):
        best = (1, 1)  # (period, repeats)
        for p in range(1, _MAX_PERIOD + 1):
            k = 1
            while (
                i + (k + 1) * p <= len(sig) and sig[i + k * p : i + (k + 1) * p] == sig[i : i + p]
            ):
                k += 1
            if k > 1 and k * p > best[0] * best[1]:
                best = (p, k)
        p, k = best
        if p * k > COLLAPSE_ROWS:
            out.append((i, p, k))
            i += p * k
        else:
            i += 1
    return out


@dataclass(frozen=True)
class Cells:
    """The summary table as text cells, shared by the text, HTML and rich renderings."""

    title: str
    header: list[str]
    body: list[list[str]]
    right: set[int]  # columns aligned right (the numbers)
    notes: list[str]  # the totals lines under the table


def cells(graph: Graph, *, blocks: bool = False) -> Cells:
    """The Keras-style table of `graph`, then the totals summed from the same rows."""
    table_rows = rows(graph, blocks=blocks)
    t = totals(table_rows)
    graphlike = not graph.sequential
    header = ["Layer (type)", *(["Inputs"] if graphlike else []), "Output shape", "Param #", "MACs"]
    body = [[f"{INPUT} (Input)", *([""] if graphlike else []), _shape(graph.input_shape), "0", "0"]]
    skip: dict[int, tuple[int, int]] = {}  # first hidden row -> (rows hidden, period)
    for start, period, repeats in runs(table_rows):
        skip[start + period] = ((repeats - 1) * period, period)
    i = 0
    while i < len(table_rows):
        if i in skip:
            hidden, period = skip[i]
            kinds = ", ".join(dict.fromkeys(r.type for r in table_rows[i - period : i]))
            more = f"{hidden // period:,} more"
            what = f"{kinds} rows" if period == 1 else f"groups of {period} rows ({kinds})"
            line = f"… {more} {what} like the above …"
            body.append([line, *([""] if graphlike else []), "", "", ""])
            i += hidden
            continue
        r = table_rows[i]
        i += 1
        label = f"{r.name} ({r.type})" + ("" if r.trainable else " [frozen]")
        body.append(
            [
                label,
                *([", ".join(r.inputs)] if graphlike else []),
                _shape(r.output_shape),
                f"{r.params:,}",
                human_count(r.macs) if r.macs else "0",
            ]
        )
    n = len(header)
    notes = [
        f"Total params: {t.total_params:,} ({human_bytes(t.param_bytes)} as float32)",
        f"Trainable params: {t.trainable_params:,}",
        f"Non-trainable params: {t.non_trainable_params:,}",
        f"MACs per sample: {t.macs:,} ({human_count(t.macs)})",
    ]
    if graph.length is not None:
        notes.append(
            f"MACs and memory at length {graph.length} (None is the dynamic time axis; "
            "set it with --length)"
        )
    if graph.train is not None:
        from netspec.memory_data import training_rows  # reads the data's file headers only

        parts = training_rows(graph)
        notes.append(
            f"Training memory at batch {graph.train.batch_size}: "
            f"{human_bytes(memory_total(parts))} ("
            + ", ".join(f"{r.what} {human_bytes(r.bytes)}" for r in parts)
            + (
                f"; data: {parts[-1].note})"
                if parts[-1].what == "data"
                else f", plus the data: the {graph.train.data.source} source's size is known "
                "once read)"
            )
        )
    return Cells(f'Model: "{graph.name}"', header, body, {n - 2, n - 1}, notes)


def render(graph: Graph, *, blocks: bool = False) -> str:
    """The summary as text: a Keras-style table, then the totals summed from the same rows."""
    c = cells(graph, blocks=blocks)
    return "\n".join([c.title, *_table(c.header, c.body, c.right), *c.notes]) + "\n"


def render_html(graph: Graph) -> str:
    """The summary as an HTML table (Jupyter shows it): the same cells as the text, escaped."""
    import html  # here, not at the top: `netspec summary` never renders HTML

    c = cells(graph)

    def row(tag: str, values: list[str]) -> str:
        return (
            "<tr>"
            + "".join(
                f'<{tag} style="text-align: {"right" if i in c.right else "left"}">'
                f"{html.escape(v)}</{tag}>"
                for i, v in enumerate(values)
            )
            + "</tr>"
        )

    return "\n".join(
        [
            f"<div><p><b>{html.escape(c.title)}</b></p>",
            "<table>",
            f"<thead>{row('th', c.header)}</thead>",
            "<tbody>",
            *(row("td", r) for r in c.body),
            "</tbody>",
            "</table>",
            *(f"<p>{html.escape(note)}</p>" for note in c.notes),
            "</div>",
        ]
    )


def rich_table(graph: Graph) -> Any:
    """The summary as a rich renderable: the table, then the totals lines.

    rich is imported here only: the CLI's summary starts faster without it.
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    c = cells(graph)
    table = Table(title=c.title, title_justify="left")
    for i, name in enumerate(c.header):
        table.add_column(name, justify="right" if i in c.right else "left")
    for r in c.body:
        table.add_row(*map(Text, r))  # Text: brackets in a cell ([frozen]) are not markup
    return Group(table, *map(Text, c.notes))


def one_line(graph: Graph) -> str:
    """The size of a network in one line: `netspec validate` prints it for a valid spec."""
    total = totals(rows(graph)).total_params
    return f"{len(graph.nodes)} layers, {total:,} params, output {graph.output.shape}"
