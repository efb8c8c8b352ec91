"""Blocks and repeats expanded into named layer declarations, with every reference resolved.

Over 400 lines: one recursive walk (Expander) does the naming, scoping, `$param` substitution,
repeats and per-argument validation together, because each needs the scope the others build.
The items it walks, and the records it produces, are defined in `netspec.items`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from netspec.errors import Problem
from netspec.items import (
    INPUT,
    MAX_BLOCK_DEPTH,
    META_KEYS,
    NAME_RE,
    BlockDef,
    Decl,
    ItemMeta,
    Origin,
)
from netspec.layers import KINDS
from netspec.layers.base import suggest
from netspec.pydantic_errors import found, pydantic_problems
from netspec.source import Source, SpecPath, format_path


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


@dataclass(frozen=True)
class At:
    """Where a list of items expands: the scope its names live in, the block uses that led
    there (innermost last), and whether its layers train."""

    scope: Scope
    via: tuple[str, ...] = ()
    trainable: bool = True

    @property
    def note(self) -> str:
        """A problem's suffix inside a block: the use it happened in."""
        return f" (in {self.via[-1]})" if self.via else ""


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

    def origin(self, path: SpecPath, via: tuple[str, ...]) -> Origin:
        line, col = self.source.locate(path)
        return Origin(path, line, col, via)

    # items
    def expand(
        self, items: list[Any], base: SpecPath, at: At, prev: str, params: dict[str, Any] | None
    ) -> str:
        """Expand a list of items; returns the full name of the last layer (the list's output)."""
        for i, raw in enumerate(items):
            prev = self.item(raw, (*base, i), at, prev, params)
        return prev

    def item(
        self, raw: Any, path: SpecPath, at: At, prev: str, params: dict[str, Any] | None
    ) -> str:
        """Expand one list item (a layer, a block use or a group, repeated); returns its output."""
        note = at.note
        if params is not None:
            before = len(self.problems)
            raw = self.substitute(raw, path, params, note)
            if len(self.problems) > before:
                return prev  # an unknown `$param`: reported once, not again as a bad argument
        item = self.as_item(raw, path, note)
        kind = None if item is None else self.kind_of(item, path, note)
        meta = None if item is None or kind is None else self.item_meta(item, path, note)
        if item is None or kind is None or meta is None:
            return prev
        if not meta.trainable:  # frozen: every layer it expands to, blocks and groups too
            at = replace(at, trainable=False)
        if not kind:
            return self.group_item(item, path, at, prev, meta)
        if not self.layer_item_is_valid(item, kind, meta, path, note):
            return prev
        use = self.block_use if kind in self.blocks else self.layer
        for r in range(meta.repeat):
            prev = use(kind, item[kind], path, at, prev, meta, r)
        return prev

    def as_item(self, raw: Any, path: SpecPath, note: str) -> dict[str, Any] | None:
        """The item as a mapping (a bare name is a layer type without arguments), or None."""
        if isinstance(raw, str):
            return {raw: None}
        if isinstance(raw, dict):
            return raw
        self.problems.append(
            self.source.problem(
                path,
                f"expected a layer, {found(raw)}{note}",
                "write a mapping like `- conv2d: {filters: 32, kernel: 3}` or a name like `- flatten`",
            )
        )
        return None

    def kind_of(self, item: dict[str, Any], path: SpecPath, note: str) -> str | None:
        """The item's one layer type or block ('' when it has none: a group), or None when its
        keys name unknown or several types (each reported)."""
        kinds = [k for k in item if k not in META_KEYS and k != "layers"]
        known = [k for k in kinds if k in KINDS or k in self.blocks]
        unknown = [k for k in kinds if k not in known]
        for k in unknown:
            # A lone unknown key is a misspelt layer type; beside a known one, a misspelt key.
            self.problems.append(
                self.unknown_key(k, path, note, as_type=not known and len(unknown) == 1)
            )
        if len(known) > 1:
            self.problems.append(
                self.source.problem(
                    path,
                    f"one item holds several layer types: {', '.join(known)}{note}",
                    "give each layer its own list item (`- ...`)",
                )
            )
            return None
        if unknown:
            return None
        return known[0] if known else ""

    def unknown_key(self, key: str, path: SpecPath, note: str, as_type: bool) -> Problem:
        choices = [*KINDS, *self.blocks]
        if as_type:
            near = suggest(key, choices)
            hint = (
                f"did you mean '{near}'?"
                if near
                else "run `netspec schema` to list the layer types"
            )
            return self.source.problem(
                (*path, key), f"unknown layer type '{key}'{note}", hint, key=True
            )
        near = suggest(key, [*META_KEYS, *choices])
        return self.source.problem(
            (*path, key),
            f"unknown key '{key}'{note}",
            f"did you mean '{near}'?"
            if near
            else f"a layer item holds one layer type plus {', '.join(META_KEYS)}",
            key=True,
        )

    def item_meta(self, item: dict[str, Any], path: SpecPath, note: str) -> ItemMeta | None:
        """The item's keys besides its layer type (name, inputs, trainable, repeat), validated."""
        try:
            return ItemMeta.model_validate({k: v for k, v in item.items() if k in META_KEYS})
        except ValidationError as exc:
            self.problems.extend(
                pydantic_problems(
                    self.source, path, exc, ItemMeta, "a layer item", note, key_word="key"
                )
            )
            return None

    def group_item(
        self, item: dict[str, Any], path: SpecPath, at: At, prev: str, meta: ItemMeta
    ) -> str:
        """An item without a layer type: a group (`layers: [...]`), or a mistake reported."""
        if "layers" in item and isinstance(item["layers"], list) and item["layers"]:
            return self.group(item["layers"], path, at, prev, meta)
        self.problems.append(
            self.source.problem(
                path,
                f"no layer type in this item{at.note}",
                "add one, e.g. `dense: {units: 10}`, or `layers: [...]` for a group",
            )
        )
        return prev

    def layer_item_is_valid(
        self, item: dict[str, Any], kind: str, meta: ItemMeta, path: SpecPath, note: str
    ) -> bool:
        """A layer or block item has no `layers:` key and, if named, a valid name."""
        if "layers" in item:
            self.problems.append(
                self.source.problem(
                    (*path, "layers"),
                    f"unknown key 'layers' next to '{kind}'{note}",
                    "a group of layers is an item with `layers:` and no layer type",
                    key=True,
                )
            )
            return False
        if meta.name is not None and (not NAME_RE.match(meta.name) or meta.name == INPUT):
            self.problems.append(
                self.source.problem(
                    (*path, "name"),
                    f"invalid layer name {meta.name!r}{note}",
                    "use letters, digits, '_', '-' or '.', not starting with a digit; 'input' is reserved",
                )
            )
            return False
        return True

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
        self, kind: str, args: Any, path: SpecPath, at: At, prev: str, meta: ItemMeta, r: int
    ) -> str:
        """The r-th copy of a layer item: validated, named, its references resolved."""
        cls, scope, note = KINDS[kind], at.scope, at.note
        origin = self.origin(path, at.via)
        args = self.arguments(args, kind, path, note)
        if args is None:
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
        named = self.name_use(scope, meta, r, kind, origin, path)
        if named is None:
            return prev
        name = named[1]
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
        self.decls.append(Decl(name, layer, inputs, at.trainable, origin))
        return name

    def group(self, items: list[Any], path: SpecPath, at: At, prev: str, meta: ItemMeta) -> str:
        """The layers of a group, in the scope around it, `repeat` times."""
        if meta.name is not None or meta.inputs is not None:
            if meta.inputs is not None:
                prev_inputs = self.inputs_of(meta, path, at.scope, prev, at.note)
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
            prev = self.expand(items, (*path, "layers"), at, prev, None)
        return prev

    def block_use(
        self, block: str, args: Any, path: SpecPath, at: At, prev: str, meta: ItemMeta, r: int
    ) -> str:
        """The r-th copy of a block use: its layers expanded in a scope of their own."""
        scope, note = at.scope, at.note
        if len(at.via) >= MAX_BLOCK_DEPTH:
            self.problems.append(
                self.source.problem(
                    path,
                    f"blocks nest more than {MAX_BLOCK_DEPTH} deep{note}",
                    "a block probably uses itself",
                )
            )
            return prev
        values = self.block_values(block, args, path, note)
        if values is None:
            return prev
        origin = self.origin(path, at.via)
        inputs = self.inputs_of(meta, path, scope, prev, note)  # before the claim, as for a layer
        named = self.name_use(scope, meta, r, block, origin, path)
        if named is None:
            return prev
        local, instance = named
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
        inside = At(inner, (*at.via, here), at.trainable)
        last = self.expand(
            self.blocks[block].layers, ("blocks", block, "layers"), inside, inputs[0], values
        )
        # The instance name stands for the block's output.
        scope.names[local] = last
        return last

    def block_values(
        self, block: str, args: Any, path: SpecPath, note: str
    ) -> dict[str, Any] | None:
        """Every parameter of a block use: its argument, else its default; None when an
        argument is unknown or a required one is missing (reported)."""
        definition = self.blocks[block]
        args = self.arguments(args, block, path, note, block=True)
        if args is None:
            return None
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
        return None if bad else values

    def arguments(
        self, args: Any, key: str, path: SpecPath, note: str, block: bool = False
    ) -> dict[str, Any] | None:
        """The arguments under a layer type or block (none: {}), or None when not a mapping."""
        if args is None:
            return {}
        if isinstance(args, dict):
            return args
        what, hint = f"block '{key}'", None
        if not block:
            fields = KINDS[key].model_fields.items()
            required = ", ".join(f"{n}: ..." for n, f in fields if f.is_required())
            what, hint = key, f"write `{key}: {{{required}}}`"
        self.problems.append(
            self.source.problem(
                (*path, key),
                f"the arguments of {what} must be a mapping, {found(args)}{note}",
                hint,
            )
        )
        return None

    def name_use(
        self, scope: Scope, meta: ItemMeta, r: int, base: str, origin: Origin, path: SpecPath
    ) -> tuple[str, str] | None:
        """(local, full) name of the r-th copy of a layer or block use, claimed in `scope`:
        its `name` (numbered after the first copy) or an automatic one from `base`; None when
        the name is taken (reported)."""
        local = self.repeated_name(meta, r)
        full = scope.prefix + local if local else self.auto_name(scope, base)
        local = local or full[len(scope.prefix) :]
        return (local, full) if self.claim(scope, local, full, origin, path) else None

    def substitute(self, raw: Any, path: SpecPath, params: dict[str, Any], note: str) -> Any:
        """`$name` in an item replaced by the block use's argument; an unknown name reported."""
        if isinstance(raw, str) and raw.startswith("$"):
            key = raw[1:]
            if key in params:
                return params[key]
            near = suggest(key, list(params))
            self.problems.append(
                self.source.problem(
                    path,
                    f"unknown block parameter '{raw}'{note}",
                    f"did you mean '${near}'?"
                    if near
                    else "declare it under `params:` of the block",
                )
            )
            return None
        if isinstance(raw, dict):
            return {k: self.substitute(v, (*path, k), params, note) for k, v in raw.items()}
        if isinstance(raw, list):
            return [self.substitute(v, (*path, i), params, note) for i, v in enumerate(raw)]
        return raw
