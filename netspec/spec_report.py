"""What `netspec summary` and `netspec validate` report for a spec file: read, --set, then search or compile."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netspec import search
from netspec.compiler import compile_source
from netspec.errors import UsageError
from netspec.ir import Graph, count_params
from netspec.source import Source, apply_overrides, read


def _source(spec: str | Path, sets: Sequence[str]) -> Source:
    source = read(spec)
    return apply_overrides(source, list(sets)) if sets else source


@dataclass(frozen=True)
class SpecSummary:
    """A compiled network, or a search space checked at both ends and in the middle."""

    graph: Graph | None = None
    space: dict[str, Any] | None = None
    entries: list[search.SearchEntry] = field(default_factory=list)

    def text(self, *, blocks: bool = False) -> str:
        """The text `netspec summary` prints, newlines included (`blocks`: one row per block use)."""
        from netspec.summary import render

        if self.graph is not None:
            return render(self.graph, blocks=blocks)
        assert self.space is not None
        # The search table ends in a newline and is printed as a line: one blank line follows.
        return search.render(self.space, self.entries) + "\n"

    def to_dict(self, *, blocks: bool = False) -> dict[str, Any]:
        """The JSON document of `netspec summary --json`."""
        from netspec.summary import to_dict

        if self.graph is not None:
            return to_dict(self.graph, blocks=blocks)
        assert self.space is not None
        return self.space


def summarize(spec: str | Path, sets: Sequence[str] = (), length: int | None = None) -> SpecSummary:
    """The spec (with `--set` values) compiled; a search spec checked at both ends and the middle.

    `length` is the dynamic time axis' length MACs and memory are counted at (default:
    `ir.default_length`). Raises the NetspecError of the stage that refused it.
    """
    source = _source(spec, sets)
    if entries := search.find_search(source):
        space = search.summary(source, entries, search.check_ends(source, entries))
        return SpecSummary(space=space, entries=entries)
    graph = compile_source(source)
    if length is not None:
        graph = measured(graph, length)
    return SpecSummary(graph=graph)


def measured(graph: Graph, length: int) -> Graph:
    """The graph's MACs (and memory estimate) counted at `length` of its dynamic time axis."""
    if length < 1:
        raise UsageError.one(f"--length {length}: expected a positive number of steps")
    if not graph.dynamic:
        raise UsageError.one(
            f"--length {length}: the network's input {list(graph.input_shape)} has no dynamic "
            "(null) time axis",
            hint="--length applies to an input like [null, 12]; leave it out here",
        )
    return count_params(graph, length)


def check(spec: str | Path, sets: Sequence[str] = ()) -> str:
    """The one line `netspec validate` prints for a valid spec; raises its NetspecError if not."""
    from netspec.summary import one_line

    source = _source(spec, sets)
    if entries := search.find_search(source):
        return search.one_line(source, entries)
    return one_line(compile_source(source))
