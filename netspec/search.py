"""Search spaces in a spec: find `{search: ...}` entries, check them, and substitute chosen values."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from netspec.errors import Problem, SpecError
from netspec.ir import Graph
from netspec.source import Source, SpecPath, format_path

KINDS = ("int", "float", "choice")
KEYS = {
    "int": {"search", "low", "high", "step", "log"},
    "float": {"search", "low", "high", "step", "log"},
    "choice": {"search", "values"},
}
HINT = (
    "write {search: int, low: 16, high: 64} (optional step, log: true), "
    "{search: float, low: 0.0001, high: 0.01, log: true} or {search: choice, values: [a, b]}"
)


@dataclass(frozen=True)
class SearchEntry:
    """One searched value: where it sits in the spec and the range it is drawn from."""

    path: SpecPath
    kind: str  # int, float or choice
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    values: tuple[Any, ...] = ()

    @property
    def name(self) -> str:
        """The parameter's name in a study: its spec path, e.g. 'train.optimizer.lr'."""
        return format_path(self.path)

    def ends(self) -> dict[str, Any]:
        """The value at the low end, in the middle and at the high end of the range."""
        if self.kind == "choice":
            v = self.values
            return {"low": v[0], "middle": v[len(v) // 2], "high": v[-1]}
        assert self.low is not None and self.high is not None
        mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        if self.kind == "int":
            step = int(self.step or 1)
            mid = self.low + round((mid - self.low) / step) * step
            return {"low": self.low, "middle": int(mid), "high": self.high}
        return {"low": self.low, "middle": mid, "high": self.high}

    def describe(self) -> str:
        """'8 .. 32, log' or 'one of 0.1, 0.3'."""
        if self.kind == "choice":
            return "one of " + ", ".join(str(v) for v in self.values)
        extra = [f"step {self.step}"] if self.step is not None else []
        extra += ["log"] if self.log else []
        return f"{self.low} .. {self.high}" + (f" ({', '.join(extra)})" if extra else "")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "search": self.kind}
        if self.kind == "choice":
            out["values"] = list(self.values)
        else:
            out.update(low=self.low, high=self.high, step=self.step, log=self.log)
        return out


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _entry(source: Source, path: SpecPath, raw: dict[str, Any]) -> SearchEntry | list[Problem]:
    kind = raw.get("search")
    if kind not in KINDS:
        return [source.problem((*path, "search"), f"unknown search kind {kind!r}", HINT)]
    problems = [
        source.problem((*path, key), f"'{key}' is not a key of a {kind} search", HINT, key=True)
        for key in raw
        if key not in KEYS[kind]
    ]
    if kind == "choice":
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            problems.append(
                source.problem(path, "a choice search needs `values:`, a non-empty list", HINT)
            )
        elif any(isinstance(v, (dict, list)) for v in values):
            problems.append(
                source.problem(
                    (*path, "values"),
                    "choice values must be plain values (numbers, strings, true/false, null)",
                    "a searched mapping or list is not supported; search its parts instead",
                )
            )
        return problems or SearchEntry(path, kind, values=tuple(values))
    low, high, step, log = raw.get("low"), raw.get("high"), raw.get("step"), raw.get("log", False)
    want = (lambda x: isinstance(x, int) and not isinstance(x, bool)) if kind == "int" else _number
    for key, value in (("low", low), ("high", high)):
        if not want(value):
            problems.append(
                source.problem(
                    (*path, key), f"a {kind} search needs `{key}:`, a number, not {value!r}", HINT
                )
            )
    if step is not None and not (want(step) and step > 0):
        problems.append(source.problem((*path, "step"), f"step must be a positive {kind}", HINT))
    if not isinstance(log, bool):
        problems.append(source.problem((*path, "log"), "log must be true or false", HINT))
    if problems:
        return problems
    if low > high or (kind == "float" and low == high):
        problems.append(
            source.problem(path, f"low ({low}) must be below high ({high})", "swap them")
        )
    if log and low <= 0:
        problems.append(
            source.problem((*path, "low"), f"a log search needs low > 0, not {low}", HINT)
        )
    if log and step is not None and step != 1:
        problems.append(
            source.problem(
                (*path, "step"),
                "a log search cannot have a step",
                "drop `step:` or `log: true`",
            )
        )
    return problems or SearchEntry(path, kind, low, high, step, bool(log))


def find_search(source: Source) -> list[SearchEntry]:
    """Every `{search: ...}` entry in the spec, in document order; all malformed ones in one SpecError."""
    entries: list[SearchEntry] = []
    problems: list[Problem] = []

    def walk(node: Any, path: SpecPath) -> None:
        if isinstance(node, dict):
            if "search" in node:
                found = _entry(source, path, node)
                if isinstance(found, SearchEntry):
                    entries.append(found)
                else:
                    problems.extend(found)
                return
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, (*path, i))

    walk(source.data, ())
    if problems:
        raise SpecError(problems, stage="search")
    return entries


def substitute(source: Source, chosen: dict[SpecPath, Any]) -> Source:
    """The spec with each searched value replaced by its chosen one: an ordinary spec.

    Locations are kept, so an error in a trial's spec points at the search entry it came from.
    """
    data = copy.deepcopy(source.data)
    for path, value in chosen.items():
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return Source(data, source.file, source.values, source.keys, source.overrides)


def at_end(source: Source, entries: list[SearchEntry], end: str) -> Source:
    """The spec with every searched value at one end ('low', 'middle' or 'high')."""
    return substitute(source, {e.path: e.ends()[end] for e in entries})


ENDS = ("low", "middle", "high")


def check_ends(source: Source, entries: list[SearchEntry]) -> dict[str, Graph]:
    """Compile the spec at the low end, in the middle and at the high end of every range.

    One SpecError lists what fails at each end, the end named in each message.
    """
    from netspec.compiler import compile_source

    graphs: dict[str, Graph] = {}
    problems: list[Problem] = []
    for end in ENDS:
        try:
            graphs[end] = compile_source(at_end(source, entries, end))
        except SpecError as err:
            problems += [
                Problem(
                    f"with every searched value at its {end} ({values(entries, end)}): {p.message}",
                    p.file,
                    p.line,
                    p.col,
                    p.path,
                    p.hint or "narrow the search range so every value in it gives a valid network",
                )
                for p in err.problems
            ]
    if problems:
        raise SpecError(problems, stage="search")
    return graphs


def values(entries: list[SearchEntry], end: str) -> str:
    """`name=value, ...` of every searched value at one end."""
    return ", ".join(f"{e.name}={e.ends()[end]}" for e in entries)


def summary(source: Source, entries: list[SearchEntry], graphs: dict[str, Graph]) -> dict[str, Any]:
    """The search space as data: each entry, and the network's size at each end."""
    from netspec.summary import rows, totals

    name = graphs["low"].name
    return {
        "name": name,
        "search": [e.to_dict() for e in entries],
        "total_params": {end: totals(rows(g)).total_params for end, g in graphs.items()},
        "output_shape": {end: list(g.output.shape) for end, g in graphs.items()},
    }


def render(info: dict[str, Any], entries: list[SearchEntry]) -> str:
    """The search space as a table: value, kind, range; then the parameter count at each end."""
    width = max(len(e.name) for e in entries)
    lines = [
        f'Search space: "{info["name"]}" ({len(entries)} searched values; `netspec tune` '
        "searches it)",
        f"{'value':<{width}}  {'search':<6}  range",
    ]
    lines += [f"{e.name:<{width}}  {e.kind:<6}  {e.describe()}" for e in entries]
    for end in ENDS:
        label = "middle" if end == "middle" else f"{end} end"
        lines.append(f"Total params at the {label}: {info['total_params'][end]:,}")
    return "\n".join(lines) + "\n"


def one_line(source: Source, entries: list[SearchEntry]) -> str:
    """A search spec in one line, after checking it at both ends: `netspec validate` prints it."""
    p = summary(source, entries, check_ends(source, entries))["total_params"]
    return (
        f"search space of {len(entries)} values, valid at the low end, the middle and the high "
        f"end ({p['low']:,} .. {p['high']:,} params)"
    )
