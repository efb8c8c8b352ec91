"""Blocks and repeats expanded into named layer declarations, with every reference resolved.

Over 400 lines: one recursive walk (Expander) does the naming, scoping, `$param` substitution,
repeats and per-argument validation together, because each needs the scope the others build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from netspec.errors import Problem
from netspec.layers import KINDS, Layer
from netspec.layers.base import suggest
from netspec.pydantic_errors import found, pydantic_problems
from netspec.source import Source, SpecPath, format_path

INPUT = "input"  # the name of the network's input (and, inside a block, of the block's input)
META_KEYS = ("name", "inputs", "trainable", "repeat")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
MAX_BLOCK_DEPTH = 16


class BlockDef(BaseModel):
    """A reusable list of layers; `$param` in its layers is replaced by the argument of each use."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameter names and their defaults; a null default makes the parameter required.",
    )
    layers: Annotated[list[Any], Field(min_length=1)] = Field(
        description="The block's layers; `input` is the block's input, names are local."
    )


class ItemMeta(BaseModel):
    """The keys a layer item may carry besides its layer type."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    name: str | None = Field(
        None,
        description="A unique name to refer to this layer by (default: its type, numbered as "
        "in Keras).",
        json_schema_extra={"pattern": NAME_RE.pattern, "not": {"const": INPUT}},
    )
    inputs: Annotated[list[str], Field(min_length=1)] | None = Field(
        None,
        description="Earlier layers this one reads (default: the previous layer; `input` is "
        "the network's input).",
    )
    trainable: bool = Field(True, description="false freezes the layer's weights.")
    repeat: PositiveInt = Field(1, description="Number of copies of this item.")


@dataclass(frozen=True)
class Origin:
    """Where a layer was written: its path in the file, and the block uses that expanded it."""

    path: SpecPath
    line: int | None
    col: int | None
    via: tuple[str, ...] = ()


_USE = re.compile(r"^block '([^']+)' used as '([^']+)'")


def block_use(via: str) -> tuple[str, str]:
    """(block, instance) of one `Origin.via` entry, e.g. ('down', 'enc2')."""
    m = _USE.match(via)
    if m is None:  # pragma: no cover - every via entry is written by Expander.block
        raise ValueError(via)
    return m.group(1), m.group(2)


@dataclass(frozen=True)
class Decl:
    """One validated layer with its final name and resolved inputs, in file order."""

    name: str
    layer: Layer
    inputs: tuple[str, ...]
    trainable: bool
    origin: Origin


@dataclass
class Scope:
    prefix: str  # "" at the top level, "enc1/" inside block instance enc1
    input: str  # full name of what `input` means here
    names: dict[str, str] = field(default_factory=dict)  # local name -> full name
    parent: Scope | None = None

    def resolve(self, ref: str) -> str | None:
        scope: Scope | None = self
        while scope is not None:
            if ref == INPUT:
                return scope.input
            if ref in scope.names:
                return scope.names[ref]
            scope = scope.parent
        return None


class Expander:
    def __init__(self, source: Source, blocks: dict[str, BlockDef]) -> None:
        self.source = source
        self.blocks = blocks
        self.decls: list[Decl] = []
        self.taken: dict[str, Origin] = {INPUT: Origin((), None, None)}
        self.counters: dict[str, int] = {}
        self.problems: list[Problem] = []
        # (ref, path, note, how many names were taken when the reference was read)
        self.unresolved: list[tuple[str, SpecPath, str, int]] = []

    # naming
    def auto_name(self, scope: Scope, base: str) -> str:
        key = scope.prefix + base
        n = self.counters.get(key, 0)
        while True:
            name = key if n == 0 else f"{key}_{n}"
            n += 1
            if name not in self.taken:
                self.counters[key] = n
                return name

    def claim(self, scope: Scope, local: str, full: str, origin: Origin, path: SpecPath) -> bool:
        if full in self.taken:
            first = self.taken[full]
            where = f" (line {first.line})" if first.line else ""
            self.problems.append(
                self.source.problem(
                    (*path, "name"),
                    f"the name '{full}' is already used by an earlier layer{where}",
                    "layer names must be unique; rename one of them",
                )
            )
            return False
        self.taken[full] = origin
        scope.names[local] = full
        return True

    def note(self, via: tuple[str, ...]) -> str:
        return f" (in {via[-1]})" if via else ""

    def origin(self, path: SpecPath, via: tuple[str, ...]) -> Origin:
        line, col = self.source.locate(path)
        return Origin(path, line, col, via)

    # items
    def expand(
        self,
        items: list[Any],
        base: SpecPath,
        scope: Scope,
        prev: str,
        via: tuple[str, ...],
        trainable: bool,
        params: dict[str, Any] | None,
    ) -> str:
        """Expand a list of items; returns the full name of the last layer (the list's output)."""
        for i, raw in enumerate(items):
            prev = self.item(raw, (*base, i), scope, prev, via, trainable, params)
        return prev

    def item(
        self,
        raw: Any,
        path: SpecPath,
        scope: Scope,
        prev: str,
        via: tuple[str, ...],
        trainable: bool,
        params: dict[str, Any] | None,
    ) -> str:
        choices = [*KINDS, *self.blocks]
        note = self.note(via)
        if params is not None:
            before = len(self.problems)
            raw = self.substitute(raw, path, params, via)
            if len(self.problems) > before:
                return prev  # an unknown `$param`: reported once, not again as a bad argument
        if isinstance(raw, str):
            raw = {raw: None}
        if not isinstance(raw, dict):
            self.problems.append(
                self.source.problem(
                    path,
                    f"expected a layer, {found(raw)}{note}",
                    "write a mapping like `- conv2d: {filters: 32, kernel: 3}` or a name like `- flatten`",
                )
            )
            return prev
        kinds = [k for k in raw if k not in META_KEYS and k != "layers"]
        known = [k for k in kinds if k in KINDS or k in self.blocks]
        unknown = [k for k in kinds if k not in known]
        for k in unknown:
            if known or len(unknown) > 1:
                near = suggest(k, [*META_KEYS, *choices])
                self.problems.append(
                    self.source.problem(
                        (*path, k),
                        f"unknown key '{k}'{note}",
                        f"did you mean '{near}'?"
                        if near
                        else f"a layer item holds one layer type plus {', '.join(META_KEYS)}",
                        key=True,
                    )
                )
            else:
                near = suggest(k, choices)
                hint = (
                    f"did you mean '{near}'?"
                    if near
                    else "run `netspec schema` to list the layer types"
                )
                self.problems.append(
                    self.source.problem(
                        (*path, k), f"unknown layer type '{k}'{note}", hint, key=True
                    )
                )
        if len(known) > 1:
            self.problems.append(
                self.source.problem(
                    path,
                    f"one item holds several layer types: {', '.join(known)}{note}",
                    "give each layer its own list item (`- ...`)",
                )
            )
            return prev
        if unknown:
            return prev
        meta_raw = {k: v for k, v in raw.items() if k in META_KEYS}
        try:
            meta = ItemMeta.model_validate(meta_raw)
        except ValidationError as exc:
            self.problems.extend(
                pydantic_problems(
                    self.source, path, exc, ItemMeta, "a layer item", note, key_word="key"
                )
            )
            return prev
        if not known:
            if "layers" in raw and isinstance(raw["layers"], list) and raw["layers"]:
                return self.group(
                    raw["layers"], path, scope, prev, via, trainable and meta.trainable, meta
                )
            self.problems.append(
                self.source.problem(
                    path,
                    f"no layer type in this item{note}",
                    "add one, e.g. `dense: {units: 10}`, or `layers: [...]` for a group",
                )
            )
            return prev
        if "layers" in raw:
            self.problems.append(
                self.source.problem(
                    (*path, "layers"),
                    f"unknown key 'layers' next to '{known[0]}'{note}",
                    "a group of layers is an item with `layers:` and no layer type",
                    key=True,
                )
            )
            return prev
        kind = known[0]
        if meta.name is not None and (not NAME_RE.match(meta.name) or meta.name == INPUT):
            self.problems.append(
                self.source.problem(
                    (*path, "name"),
                    f"invalid layer name {meta.name!r}{note}",
                    "use letters, digits, '_', '-' or '.', not starting with a digit; 'input' is reserved",
                )
            )
            return prev
        for r in range(meta.repeat):
            if kind in self.blocks:
                prev = self.block_use(
                    kind, raw[kind], path, scope, prev, via, trainable and meta.trainable, meta, r
                )
            else:
                prev = self.layer(
                    kind, raw[kind], path, scope, prev, via, trainable and meta.trainable, meta, r
                )
        return prev

    def inputs_of(
        self, meta: ItemMeta, path: SpecPath, scope: Scope, prev: str, note: str
    ) -> tuple[str, ...]:
        if meta.inputs is None:
            return (prev,)
        out = []
        for j, ref in enumerate(meta.inputs):
            full = scope.resolve(ref)
            if full is None:
                self.unresolved.append((ref, (*path, "inputs", j), note, len(self.taken)))
                full = ref
            out.append(full)
        return tuple(out)

    def repeated_name(self, meta: ItemMeta, r: int) -> str | None:
        if meta.name is None:
            return None
        return meta.name if r == 0 else f"{meta.name}_{r}"

    def layer(
        self,
        kind: str,
        args: Any,
        path: SpecPath,
        scope: Scope,
        prev: str,
        via: tuple[str, ...],
        trainable: bool,
        meta: ItemMeta,
        r: int,
    ) -> str:
        cls = KINDS[kind]
        note = self.note(via)
        origin = self.origin(path, via)
        if args is None:
            args = {}
        if not isinstance(args, dict):
            self.problems.append(
                self.source.problem(
                    (*path, kind),
                    f"the arguments of {kind} must be a mapping, {found(args)}{note}",
                    f"write `{kind}: {{{', '.join(f'{n}: ...' for n, f in cls.model_fields.items() if f.is_required())}}}`",
                )
            )
            return prev
        try:
            layer = cls.model_validate(args)
        except ValidationError as exc:
            self.problems.extend(
                pydantic_problems(self.source, (*path, kind), exc, cls, kind, note)
            )
            return prev
        # Names other layers by reference (crop2d.to): resolve like inputs.
        updates = {}
        for f in cls.ref_fields:
            ref = getattr(layer, f)
            full = scope.resolve(ref)
            if full is None:
                self.unresolved.append((ref, (*path, kind, f), note, len(self.taken)))
            else:
                updates[f] = full
        if updates:
            layer = layer.model_copy(update=updates)
        # Inputs are resolved before the layer's own name is claimed: a layer cannot read itself.
        inputs = self.inputs_of(meta, path, scope, prev, note)
        local = self.repeated_name(meta, r)
        name = scope.prefix + local if local else self.auto_name(scope, kind)
        if not self.claim(scope, local or name[len(scope.prefix) :], name, origin, path):
            return prev
        lo, hi = cls.arity
        if not (lo <= len(inputs) and (hi is None or len(inputs) <= hi)):
            want = f"at least {lo}" if hi is None else str(lo) if lo == hi else f"{lo} to {hi}"
            self.problems.append(
                self.source.problem(
                    path,
                    f"{kind} takes {want} inputs, got {len(inputs)}{note}",
                    f"list them: `inputs: [{', '.join(['a', 'b'][: max(lo, 1)])}]`"
                    if lo > 1
                    else "remove extra inputs",
                )
            )
            return name
        self.decls.append(Decl(name, layer, inputs, trainable, origin))
        return name

    def group(
        self,
        items: list[Any],
        path: SpecPath,
        scope: Scope,
        prev: str,
        via: tuple[str, ...],
        trainable: bool,
        meta: ItemMeta,
    ) -> str:
        if meta.name is not None or meta.inputs is not None:
            if meta.inputs is not None:
                prev_inputs = self.inputs_of(meta, path, scope, prev, self.note(via))
                if len(prev_inputs) != 1:
                    self.problems.append(
                        self.source.problem((*path, "inputs"), "a group takes one input")
                    )
                    return prev
                prev = prev_inputs[0]
            if meta.name is not None:
                self.problems.append(
                    self.source.problem(
                        (*path, "name"),
                        "a group of layers has no name of its own",
                        "name its layers, or define a block",
                        key=True,
                    )
                )
        for _ in range(meta.repeat):
            prev = self.expand(items, (*path, "layers"), scope, prev, via, trainable, None)
        return prev

    def block_use(
        self,
        block: str,
        args: Any,
        path: SpecPath,
        scope: Scope,
        prev: str,
        via: tuple[str, ...],
        trainable: bool,
        meta: ItemMeta,
        r: int,
    ) -> str:
        note = self.note(via)
        definition = self.blocks[block]
        if len(via) >= MAX_BLOCK_DEPTH:
            self.problems.append(
                self.source.problem(
                    path,
                    f"blocks nest more than {MAX_BLOCK_DEPTH} deep{note}",
                    "a block probably uses itself",
                )
            )
            return prev
        if args is None:
            args = {}
        if not isinstance(args, dict):
            self.problems.append(
                self.source.problem(
                    (*path, block),
                    f"the arguments of block '{block}' must be a mapping, {found(args)}{note}",
                )
            )
            return prev
        values = dict(definition.params)
        bad = False
        for k, v in args.items():
            if k not in definition.params:
                near = suggest(k, list(definition.params))
                hint = (f"did you mean '{near}'? " if near else "") + (
                    f"block '{block}' takes: {', '.join(definition.params) or 'no parameters'}"
                )
                self.problems.append(
                    self.source.problem(
                        (*path, block, k),
                        f"unknown parameter '{k}' of block '{block}'{note}",
                        hint,
                        key=True,
                    )
                )
                bad = True
            values[k] = v
        for k, v in values.items():
            if v is None:
                self.problems.append(
                    self.source.problem(
                        (*path, block),
                        f"block '{block}' needs parameter '{k}'{note}",
                        f"add `{k}: <value>` to this use",
                        key=True,
                    )
                )
                bad = True
        if bad:
            return prev
        origin = self.origin(path, via)
        inputs = self.inputs_of(meta, path, scope, prev, note)  # before the claim, as for a layer
        local = self.repeated_name(meta, r)
        instance = scope.prefix + local if local else self.auto_name(scope, block)
        if not self.claim(scope, local or instance[len(scope.prefix) :], instance, origin, path):
            return prev
        if len(inputs) != 1:
            self.problems.append(
                self.source.problem(
                    (*path, "inputs"),
                    f"a block takes one input, got {len(inputs)}{note}",
                    "pass other layers as block parameters (e.g. `skip: enc1`)",
                )
            )
            return prev
        inner = Scope(instance + "/", inputs[0], parent=scope)
        line = f", line {origin.line}" if origin.line else ""
        here = f"block '{block}' used as '{instance}' at {format_path(path)}{line}"  # see block_use
        last = self.expand(
            definition.layers,
            ("blocks", block, "layers"),
            inner,
            inputs[0],
            (*via, here),
            trainable,
            values,
        )
        # The instance name stands for the block's output.
        scope.names[local or instance[len(scope.prefix) :]] = last
        return last

    def substitute(
        self, raw: Any, path: SpecPath, params: dict[str, Any], via: tuple[str, ...]
    ) -> Any:
        if isinstance(raw, str) and raw.startswith("$"):
            key = raw[1:]
            if key in params:
                return params[key]
            near = suggest(key, list(params))
            self.problems.append(
                self.source.problem(
                    path,
                    f"unknown block parameter '{raw}'{self.note(via)}",
                    f"did you mean '${near}'?"
                    if near
                    else "declare it under `params:` of the block",
                )
            )
            return None
        if isinstance(raw, dict):
            return {k: self.substitute(v, (*path, k), params, via) for k, v in raw.items()}
        if isinstance(raw, list):
            return [self.substitute(v, (*path, i), params, via) for i, v in enumerate(raw)]
        return raw


# --- the size of the expansion, computed before expanding ---------------------------------------

# `repeat:` and blocks multiply: 8 blocks each using the one before 10 times are 10**8 layers.
# Far above any real network (the largest shipped spec has 51 layers; 4,000 conv2d layers
# validate in ~1 s), far below what exhausts memory.
MAX_LAYERS = 100_000
_COUNT_STEPS = 1_000_000  # items looked at by layer_count before it settles for "at least"


class _Budget(Exception):
    """layer_count looked at too many items: the count so far is a lower bound."""


def _plain_substitute(raw: Any, params: dict[str, Any]) -> Any:
    """`$name` replaced by its value; unknown names stay (the expander reports them)."""
    if isinstance(raw, str) and raw.startswith("$"):
        return params.get(raw[1:], raw)
    if isinstance(raw, dict):
        return {k: _plain_substitute(v, params) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_plain_substitute(v, params) for v in raw]
    return raw


def layer_count(items: list[Any], blocks: dict[str, BlockDef]) -> tuple[int, bool]:
    """How many layers `items` expand to, without expanding them: (count, exact).

    Mistakes (unknown kinds, bad repeats, recursive blocks) count as one layer or none: the
    expander reports them. `exact` is False when the walk stopped early; the count is then a
    lower bound, already past MAX_LAYERS in every case that matters.
    """
    memo: dict[tuple[str, str], int] = {}
    steps = 0

    def count(items: Any, params: dict[str, Any] | None, depth: int) -> int:
        nonlocal steps
        if not isinstance(items, list) or depth > MAX_BLOCK_DEPTH:
            return 0
        n = 0
        for raw in items:
            steps += 1
            if steps > _COUNT_STEPS:
                raise _Budget
            if params is not None:
                raw = _plain_substitute(raw, params)
            if not isinstance(raw, dict):
                n += 1
                continue
            repeat = raw.get("repeat", 1)
            repeat = repeat if isinstance(repeat, int) and repeat > 0 else 1
            kinds = [k for k in raw if k not in META_KEYS and k != "layers"]
            if len(kinds) == 1 and kinds[0] in blocks:
                n += repeat * block(kinds[0], raw[kinds[0]], depth + 1)
            elif kinds:
                n += repeat
            else:
                n += repeat * count(raw.get("layers"), params, depth)
        return n

    def block(name: str, args: Any, depth: int) -> int:
        values = {**blocks[name].params, **(args if isinstance(args, dict) else {})}
        key = (name, repr(sorted(values.items(), key=lambda kv: str(kv[0]))))
        if key not in memo:
            memo[key] = count(blocks[name].layers, values, depth)
        return memo[key]

    try:
        return count(items, None, 0), True
    except _Budget:
        return MAX_LAYERS + 1, False
