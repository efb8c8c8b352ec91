"""Parse stage: safe YAML -> plain Python data plus the line and column of every key and value."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from netspec.errors import Problem, SpecError

# The C loader is ~10x faster on big specs; both are the *safe* loaders (no arbitrary tags).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

SpecPath = tuple[str | int, ...]


def format_path(path: SpecPath) -> str:
    """('layers', 3, 'conv2d', 'kernel') -> 'layers[3].conv2d.kernel'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(frozen=True)
class Source:
    """A parsed YAML document: its data and where each piece came from."""

    data: Any
    file: str | None
    values: dict[SpecPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[SpecPath, tuple[int, int]] = field(default_factory=dict)
    overrides: dict[SpecPath, str] = field(default_factory=dict)  # path -> the `--set` text

    def locate(self, path: SpecPath, *, key: bool = False) -> tuple[int | None, int | None]:
        """(line, col), 1-based, of the value (or key) at `path`, else of its nearest ancestor."""
        table = self.keys if key else self.values
        for cut in range(len(path), -1, -1):
            prefix = path[:cut]
            if prefix in table:
                return table[prefix]
            if key and prefix in self.values:
                return self.values[prefix]
        return (None, None)

    def problem(
        self, path: SpecPath, message: str, hint: str | None = None, *, key: bool = False
    ) -> Problem:
        for cut in range(len(path), 0, -1):
            if path[:cut] in self.overrides:  # the value came from the command line
                where = f"--set {self.overrides[path[:cut]]}"
                return Problem(message, where, None, None, format_path(path) or None, hint)
        line, col = self.locate(path, key=key)
        return Problem(message, self.file, line, col, format_path(path) or None, hint)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
# Aliases (`*name`) are expanded into the data: ten nested aliases of ten items each are 10**10
# values. Far above any real spec (4,000 conv2d layers with 4 arguments each are 44,010 keys and
# values), far below an alias bomb.
MAX_VALUES = 1_000_000
# Lists and mappings nested deeper than this are refused before Python's recursion limit is hit
# (libyaml itself stops at 1,000); the deepest shipped spec nests 6 levels.
MAX_DEPTH = 64


def _plain_tag(node: yaml.Node) -> bool:
    """True for the tags of plain YAML data (the ones the safe loader resolves by itself)."""
    if isinstance(node, yaml.MappingNode):
        return node.tag == _MAP
    if isinstance(node, yaml.SequenceNode):
        return node.tag == _SEQ
    return node.tag in _Loader.yaml_constructors


def _short_tag(node: yaml.Node) -> str:
    return node.tag.replace("tag:yaml.org,2002:", "!!")


class _Builder:
    def __init__(self, file: str | None) -> None:
        self.file = file
        self.values: dict[SpecPath, tuple[int, int]] = {}
        self.keys: dict[SpecPath, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._scalars = _Loader("")
        self._count = 0

    def build(self, node: yaml.Node, path: SpecPath, depth: int = 0) -> Any:
        self.values[path] = _mark(node)
        self._count += 1
        if depth > MAX_DEPTH:
            line, col = _mark(node)
            raise SpecError.one(
                f"lists and mappings nest more than {MAX_DEPTH} levels deep here",
                self.file,
                line,
                col,
                hint="a spec nests a few levels (layers, a layer, its arguments); "
                "check the brackets",
                stage="parse",
            )
        if self._count > MAX_VALUES:
            line, col = _mark(node)
            raise SpecError.one(
                f"the spec holds more than {MAX_VALUES:,} values once its YAML aliases "
                "are expanded",
                self.file,
                line,
                col,
                hint="write the repeated part once as a block, or use `repeat:`",
                stage="parse",
            )
        if not _plain_tag(node):
            # Refused before anything is built: `!!python/object` on a mapping or list would
            # otherwise be dropped silently, and on a scalar it would reach the constructor.
            return self.refuse(
                node,
                path,
                f"invalid YAML: the tag '{_short_tag(node)}' is refused",
                "netspec loads YAML safely: tags that build Python objects are refused; "
                "write a plain value, mapping or list",
            )
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, (*path, "<key>"), depth + 1)
                if isinstance(key, (dict, list)):
                    line, col = _mark(key_node)
                    self.problems.append(
                        Problem("a mapping key must be a plain name", self.file, line, col)
                    )
                    continue
                key = str(key) if not isinstance(key, str) else key
                if key in out:
                    line, col = _mark(key_node)
                    first = self.keys[(*path, key)]
                    self.problems.append(
                        Problem(
                            f"duplicate key '{key}' (first given at line {first[0]})",
                            self.file,
                            line,
                            col,
                            format_path((*path, key)),
                            "YAML would silently keep only the last one; remove or rename one",
                        )
                    )
                    continue
                self.keys[(*path, key)] = _mark(key_node)
                out[key] = self.build(value_node, (*path, key), depth + 1)
            self.values.pop((*path, "<key>"), None)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        try:
            return self._scalars.construct_object(node)
        except (ValueError, LookupError, AttributeError, TypeError):
            # An explicit tag on a value that does not fit it (`!!int abc`): PyYAML's constructors
            # raise plain Python errors for these, not YAMLError.
            tag = _short_tag(node)
            return self.refuse(
                node,
                path,
                f"invalid YAML: {node.value!r} is not a valid {tag}",
                f"remove the {tag} tag, or fix the value",
            )

    def refuse(self, node: yaml.Node, path: SpecPath, message: str, hint: str) -> None:
        """Record a problem with one node, which then builds to None."""
        line, col = _mark(node)
        where = format_path(tuple(p for p in path if p != "<key>")) or None
        self.problems.append(Problem(message, self.file, line, col, where, hint))


_BARE_ITEM = re.compile(r"^\s*-\s+([A-Za-z_][A-Za-z0-9_]*)\s*(#.*)?$")
_KEY_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:")


def _bare_item_problem(text: str, line: int, file: str | None) -> Problem | None:
    """`- flatten` then `name: f` below it: a bare layer name cannot take keys (PyYAML's
    message for this says nothing about layers)."""
    lines = text.splitlines()
    if not 1 < line <= len(lines) or not (key := _KEY_LINE.match(lines[line - 1])):
        return None
    before = [t for t in lines[: line - 1] if t.strip() and not t.strip().startswith("#")]
    if not before or not (item := _BARE_ITEM.match(before[-1])):
        return None
    kind, name = item.group(1), key.group(1)
    col = lines[line - 1].index(name) + 1
    return Problem(
        f"invalid YAML: '{name}:' follows the bare layer name '- {kind}', which cannot take keys",
        file,
        line,
        col,
        hint=f"write `- {kind}: {{}}` with `{name}: ...` on the next line, aligned with '{kind}'",
    )


def _yaml_problem(exc: yaml.YAMLError, file: str | None, text: str = "") -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        # Reader errors (control characters) carry a character offset, not a line.
        pos = min(exc.position, len(text))
        line, col = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character or 0)
        return Problem(
            f"invalid YAML: unacceptable character #x{ord(char):04x}: {exc.reason}",
            file,
            line,
            col,
            hint="remove the character; a spec is plain text",
        )
    mark = getattr(exc, "problem_mark", None)
    line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
    if line is not None and (bare := _bare_item_problem(text, line, file)):
        return bare
    problem = getattr(exc, "problem", None) or str(exc)
    hint = getattr(exc, "context", None)
    start = getattr(exc, "context_mark", None)
    if hint and start and mark and (start.line, start.column) != (mark.line, mark.column):
        hint += f" that starts at line {start.line + 1}, column {start.column + 1}"
    if "constructor for the tag" in problem:
        hint = "netspec loads YAML safely: tags that build Python objects are refused"
    return Problem(f"invalid YAML: {problem}", file, line, col, hint=hint)


def parse(text: str, file: str | None = None) -> Source:
    """Parse YAML text safely; syntax errors and duplicate keys become a SpecError with a location."""
    try:
        node = yaml.compose(text, Loader=_Loader)
        if node is None:
            raise SpecError.one("the spec is empty", file, 1, 1, stage="parse")
        builder = _Builder(file)
        data = builder.build(node, ())
    except yaml.YAMLError as exc:  # syntax errors, and tags the safe loader refuses to construct
        raise SpecError([_yaml_problem(exc, file, text)], stage="parse") from None
    if builder.problems:
        raise SpecError(builder.problems, stage="parse")
    return Source(data, file, builder.values, builder.keys)


def read(path: str | Path) -> Source:
    """Read and parse a spec file; a missing or unreadable file is a SpecError, not a traceback."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError.one("no such file", str(path), stage="parse") from None
    except IsADirectoryError:
        raise SpecError.one("is a directory, not a spec file", str(path), stage="parse") from None
    except UnicodeDecodeError as exc:
        raise SpecError.one(
            f"not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start} cannot be decoded)",
            str(path),
            hint="a spec is a YAML text file saved as UTF-8",
            stage="parse",
        ) from None
    except OSError as exc:
        raise SpecError.one(f"cannot read: {exc}", str(path), stage="parse") from None
    return parse(text, str(path))


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_set_path(text: str) -> SpecPath:
    """'train.optimizer.lr' -> ('train', 'optimizer', 'lr'); 'layers[2].dense' -> ('layers', 2, ...).

    A dotted number is an index too ('layers.2.dense'), as in Hydra and OmegaConf: no spec has
    a key that is a number (keys are names), so it can only mean a list item.
    """
    parts: list[str | int] = []
    pos = 0
    for m in _PART.finditer(text):
        if m.start() != pos and text[pos : m.start()] != ".":
            raise ValueError(text)
        name, index = m.group(1), m.group(2)
        if index is not None or name.isdigit():
            parts.append(int(name if index is None else index))
        else:
            parts.append(name)
        pos = m.end()
    if pos != len(text) or not parts:
        raise ValueError(text)
    return tuple(parts)


def apply_overrides(source: Source, sets: list[str]) -> Source:
    """Apply `--set a.b.c=value` overrides (values parsed as YAML) to a parsed spec."""
    data = copy.deepcopy(source.data)
    overrides = dict(source.overrides)
    for text in sets:
        key, sep, raw = text.partition("=")
        try:
            if not sep:
                raise ValueError(text)
            path = parse_set_path(key.strip())
            value = yaml.load(raw, Loader=_Loader) if raw.strip() else None
        except (ValueError, yaml.YAMLError):
            raise SpecError.one(
                f"cannot read --set {text!r}",
                hint="write --set train.epochs=3 (a dotted path, '=', a YAML value)",
                stage="parse",
            ) from None
        node: Any = data
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, dict):
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = [] if isinstance(nxt, int) else {}
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                raise SpecError.one(
                    f"--set {text}: '{format_path(path[: i + 1])}' does not exist", stage="parse"
                )
        last = path[-1]
        settable = (isinstance(node, dict) and isinstance(last, str)) or (
            isinstance(node, list) and isinstance(last, int) and last < len(node)
        )
        if settable:
            node[last] = value
        else:
            raise SpecError.one(
                f"--set {text}: cannot set '{format_path(path)}' here", stage="parse"
            )
        overrides[path] = text
    return Source(data, source.file, source.values, source.keys, overrides)
