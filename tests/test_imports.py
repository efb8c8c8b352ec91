"""No import cycles in the installed netspec package (netspec.backends included).

The graph is read from the source with `ast`: every `import` and `from ... import` anywhere in a
module (inside functions and `if TYPE_CHECKING:` blocks too: a cycle there is one refactoring
away from a real one), absolute `netspec.*` and relative imports alike. An import of
`a.b.c` is an edge to `a.b.c` only: the packages above it load first, but their `__init__`
modules are their own nodes with their own edges.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest


def package_modules() -> dict[str, Path]:
    """Every module of the installed netspec package by dotted name (backends where pip put it)."""
    modules: dict[str, Path] = {}
    roots = [("netspec", importlib.util.find_spec("netspec")), ("netspec.backends", None)]
    backends = importlib.util.find_spec("netspec.backends")
    assert backends is not None and backends.submodule_search_locations
    roots[1] = ("netspec.backends", backends)
    for name, spec in roots:
        assert spec is not None and spec.submodule_search_locations
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            dotted = ".".join((name, *parts))
            if name == "netspec" and dotted.startswith("netspec.backends"):
                continue  # an installed copy's own folder, if any: the mapped one wins
            modules[dotted] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The netspec modules `name` (at `path`) imports."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` mod.
            targets = [
                f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names
            ]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """The package's import graph, read once for the file (parsing every module: ~1.5 s)."""
    return import_graph()


def test_the_graph_sees_the_package(graph: dict[str, set[str]]) -> None:
    assert "netspec.runs" in graph and "netspec.backends.training.loop" in graph
    # Relative, absolute and in-function imports are all edges.
    assert "netspec.backends.training.scoring" in graph["netspec.backends.training.evaluate"]
    assert "netspec.runs" in graph["netspec.backends.training.evaluate"]
    assert "netspec.backends.training.evaluate" in graph["netspec.run_api"]


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    cycle = find_cycle(graph)
    if cycle:
        pytest.fail("import cycle: " + " -> ".join(cycle))
