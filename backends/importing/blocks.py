"""Repeated structures of an imported spec written as netspec blocks: maximal runs of layers
with identical kinds, arguments and wiring (names aside) become uses of one block; runs of one
structure whose arguments differ (a ResNet's stages: 16, 32, 64 filters) share a block with
those arguments as its parameters. The weights follow the names the uses give their layers.

Over 400 lines: finding the runs, naming blocks and uses from the source's names, and rewriting
the spec (checked to compile to the same layers) share the one view of the flat spec (`Flat`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

import yaml

from netspec.compiler import compile_text
from netspec.errors import NetspecError
from netspec.items import INPUT, META_KEYS, NAME_RE
from netspec.layers import KINDS

from .model import Imported

MAX_BLOCK = 100  # the longest block looked for, in layers (a transformer layer is about 10)
SEPARATORS = "._-/"


@dataclass(frozen=True)
class Run:
    """`count` consecutive copies of the `size` items starting at `start`."""

    start: int
    size: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.size * self.count

    @property
    def windows(self) -> list[int]:
        return [self.start + c * self.size for c in range(self.count)]


@dataclass
class Flat:
    """The imported spec's items with their compiled names, inputs and signatures."""

    items: list[Any]
    names: list[str]
    inputs: list[tuple[str, ...]]
    sigs: list[Any]
    last_reader: list[int]  # the last item reading each item (-1: none)


def with_blocks(imported: Imported) -> Imported:
    """`imported` with its repeated structures as blocks, or unchanged when it has none (or
    when the rewritten spec would not compile to the same layers: never a worse import)."""
    spec = imported.spec
    items = spec.get("layers")
    if "blocks" in spec or not isinstance(items, list) or len(items) < 4:
        return imported
    graph = _compile(spec)
    if graph is None or len(graph.nodes) != len(items):
        return imported
    flat = _flat(items, [n.name for n in graph.nodes], [tuple(n.inputs) for n in graph.nodes])
    runs = find_runs(flat)
    if not runs:
        return imported
    new_spec = _rewrite(spec, flat, runs)
    new = _compile(new_spec)
    if new is None or not _same_layers(graph, new):
        return imported
    rename = {a.name: b.name for a, b in zip(graph.nodes, new.nodes, strict=True)}
    weights = {}
    for key, value in imported.weights.items():
        layer, _, tensor = key.rpartition(".")
        weights[f"{rename.get(layer, layer)}.{tensor}"] = value
    blocks = new_spec["blocks"]
    note = f"{sum(r.count for r in runs)} repeated structures written as uses of "
    note += f"{len(blocks)} block(s): {', '.join(blocks)}"
    return replace(imported, spec=new_spec, weights=weights, notes=[*imported.notes, note])


def _compile(spec: dict[str, Any]) -> Any:
    try:
        return compile_text(yaml.safe_dump(spec, sort_keys=False), "<import>")
    except NetspecError:
        return None


def _kind_args(item: Any) -> tuple[str, Any]:
    if isinstance(item, str):
        return item, None
    kind = next(k for k in item if k not in META_KEYS)
    return kind, item[kind]


def _refs(item: Any) -> list[str]:
    """The layers an item names in its arguments (crop2d's `to`)."""
    if not isinstance(item, dict):
        return []
    kind, args = _kind_args(item)
    fields = getattr(KINDS.get(kind), "ref_fields", ())
    return [args[f] for f in fields if isinstance(args, dict) and isinstance(args.get(f), str)]


def _plain(item: Any) -> bool:
    """An item a block can hold: one layer kind without references, a name, maybe inputs."""
    if isinstance(item, str):
        return item in KINDS
    if not isinstance(item, dict) or set(item) & (set(META_KEYS) - {"name", "inputs"}):
        return False
    keys = [k for k in item if k not in META_KEYS]
    if len(keys) != 1 or keys[0] not in KINDS:
        return False
    args = item[keys[0]]
    refs = getattr(KINDS[keys[0]], "ref_fields", ())  # crop2d's `to` names an outside layer
    return not (isinstance(args, dict) and any(f in args for f in refs))


def _flat(items: list[Any], names: list[str], inputs: list[tuple[str, ...]]) -> Flat:
    """Each item's signature: kind, arguments and inputs as offsets back (1: the item before
    it); equal signatures over two windows mean the same structure, names aside."""
    index = {INPUT: -1, **{n: i for i, n in enumerate(names)}}
    sigs: list[Any] = []
    readers: list[set[int]] = [set() for _ in names]
    for i, item in enumerate(items):
        for r in [*inputs[i], *_refs(item)]:
            if r in index and r != INPUT:
                readers[index[r]].add(i)
        if not _plain(item):
            sigs.append(("unique", i))
            continue
        kind, args = _kind_args(item)
        offsets = tuple(i - index[r] for r in inputs[i])
        sigs.append((kind, json.dumps(args, sort_keys=True), offsets))
    return Flat(items, names, inputs, sigs, [max(r, default=-1) for r in readers])


def _valid(flat: Flat, start: int, size: int) -> bool:
    """A window is a block: its first layer reads one value (the block's input), the others read
    inside the window or that input, and only its last layer is read from outside."""
    if flat.sigs[start][0] == "unique" or len(flat.inputs[start]) != 1:
        return False
    entry = flat.sigs[start][2][0]  # the block input, this many items before the window
    for j in range(size):
        sig = flat.sigs[start + j]
        if sig[0] == "unique" or any(off > j and off - j != entry for off in sig[2]):
            return False
        if j < size - 1 and flat.last_reader[start + j] >= start + size:
            return False
    return True


def _use_of(names: list[str]) -> str:
    """The longest common start of the names that ends where each name ends or a separator
    follows (`layer1.0` of `layer1.0.conv1`, `layer1.0`, `layer1.0_1`); '' if none."""
    common = names[0]
    for name in names[1:]:
        while not name.startswith(common):
            common = common[:-1]
    for cut in range(len(common), 0, -1):
        use = common[:cut]
        if use[-1] not in SEPARATORS and all(len(n) == cut or n[cut] in SEPARATORS for n in names):
            return use
    return ""


def local_names(flat: Flat, run: Run) -> tuple[list[str], tuple[str, ...]] | None:
    """The uses' names and the block's layer names where every window's names are one prefix
    (the use) and the same remainders (the layers): `stage.conv2d`, `stage_1.conv2d`; a
    remainder that is no name (`layer1.0` itself, `layer1.0_1`) is the layer's kind."""
    uses = [_use_of(flat.names[s : s + run.size]) for s in run.windows]
    rests = {
        tuple(n[len(u) :].lstrip(SEPARATORS) for n in flat.names[s : s + run.size])
        for s, u in zip(run.windows, uses, strict=True)
    }
    if len(rests) != 1 or not all(u and NAME_RE.match(u) for u in uses):
        return None
    rest = rests.pop()
    local: list[str] = []
    for j, n in enumerate(rest):
        if not NAME_RE.match(n) or n == INPUT:
            n = base = _kind_args(flat.items[run.start + j])[0]
            k = 1
            while n in rest or n in local:
                n, k = f"{base}_{k}", k + 1
        local.append(n)
    if len(set(local)) < len(local):
        return None
    return uses, tuple(local)


def find_runs(flat: Flat) -> list[Run]:
    """Maximal runs of repeated windows, greedily: the run covering most items first (ties: the
    one whose names say where its blocks start, then the shorter block), then the same left and
    right of it."""
    runs: list[Run] = []
    segments = [(0, len(flat.sigs))]
    sigs = flat.sigs
    while segments:
        lo, hi = segments.pop()
        best: tuple[tuple[int, bool, int, int], Run] | None = None
        for size in range(2, min(MAX_BLOCK, (hi - lo) // 2) + 1):
            # count[s]: how many equal valid windows follow one another from s (right to left)
            count = [0] * (hi - lo + size)
            for start in range(hi - size, lo - 1, -1):
                after = start + size
                same = after + size <= hi and sigs[start:after] == sigs[after : after + size]
                before = start - size >= lo and sigs[start - size : start] == sigs[start:after]
                if not (same or before) or not _valid(flat, start, size):
                    continue  # a window equal to neither neighbour is in no run
                count[start - lo] = 1 + (count[after - lo] if same else 0)
                n = count[start - lo]
                # a block only where it shortens the spec: n uses and a definition of `size`
                # layers instead of size * n layers (two pools and convs stay as they are)
                if n < 2 or size * n <= size + n or (best is not None and size * n < best[0][0]):
                    continue
                run = Run(start, size, count[start - lo])
                rank = (size * run.count, local_names(flat, run) is not None, -size, -start)
                if best is None or rank > best[0]:
                    best = (rank, run)
        if best is not None:
            run = best[1]
            runs.append(run)
            segments += [(lo, run.start), (run.end, hi)]
    return sorted(runs, key=lambda r: r.start)


def _stem(use: str) -> str:
    """A use's name less its counter: `layer1.0` -> `layer1`, `residual_2` -> `residual`."""
    return re.sub(r"[._\-/]?\d+$", "", use)


@dataclass
class Shape:
    """One block: the windows of every run of one structure (arguments aside)."""

    runs: list[Run]
    local: tuple[str, ...] | None
    uses: dict[int, str]  # window start -> the use's name from the source's names


def _rewrite(spec: dict[str, Any], flat: Flat, runs: list[Run]) -> dict[str, Any]:
    """The spec with each window of each run as a use of a block."""
    shapes: dict[Any, Shape] = {}
    for run in runs:
        named = local_names(flat, run)
        local = named[1] if named else None
        # Runs of one structure share a block; an argument present in one only cannot be a
        # parameter (a parameter has a value in every use), so the argument names are part of it.
        structure = (
            tuple(
                (kind, offsets, tuple(sorted(json.loads(args) or {})))
                for kind, args, offsets in flat.sigs[run.start : run.start + run.size]
            ),
            local,
        )
        shape = shapes.setdefault(structure, Shape([], local, {}))
        shape.runs.append(run)
        if named:
            shape.uses.update(zip(run.windows, named[0], strict=True))
    taken = set(flat.names) | {INPUT}
    blocks: dict[str, dict[str, Any]] = {}
    out_name: dict[str, str] = {}  # a window's last layer -> the use standing for it
    uses: dict[int, tuple[str, str, dict[str, Any] | None, int]] = {}
    for shape in shapes.values():
        stems = {_stem(u) for u in shape.uses.values()}
        while len(stems) > 1 and stems != (shorter := {_stem(u) for u in stems}):
            stems = shorter  # `layer1.0`, `layer2.0`: `layer`
        block = stems.pop() if len(stems) == 1 else ""
        kinds = [
            _kind_args(flat.items[shape.runs[0].start + j])[0] for j in range(shape.runs[0].size)
        ]
        if not NAME_RE.match(block) or block in KINDS or block in blocks:
            block = "_".join(kinds) if len(kinds) <= 3 else f"{kinds[0]}_block"
            base, n = block, 1
            while block in KINDS or block in blocks:
                block, n = f"{base}_{n}", n + 1
        definition, args_of = _definition(flat, shape)
        blocks[block] = definition
        for run in shape.runs:
            for s in run.windows:
                use = shape.uses.get(s, "")
                if not use or (use in taken and use not in flat.names[s : s + run.size]):
                    use, n = block, 1
                    while use in taken:
                        use, n = f"{block}_{n}", n + 1
                taken.add(use)
                out_name[flat.names[s + run.size - 1]] = use
                uses[s] = (block, use, args_of[run.start], run.size)
    layers: list[Any] = []
    i = 0
    while i < len(flat.items):
        if i in uses:
            block, use, args, size = uses[i]
            entry = flat.inputs[i][0]
            item: dict[str, Any] = {block: args, "name": use}
            if entry != (flat.names[i - 1] if i > 0 else INPUT):
                item["inputs"] = [out_name.get(entry, entry)]
            layers.append(item)
            i += size
            continue
        item = flat.items[i]
        if isinstance(item, dict) and "inputs" in item:
            item = {**item, "inputs": [out_name.get(r, r) for r in item["inputs"]]}
        if _refs(item):  # crop2d's `to`: a window's output is its use
            kind, args = _kind_args(item)
            item = {
                **item,
                kind: {k: out_name.get(v, v) if v in _refs(item) else v for k, v in args.items()},
            }
        layers.append(item)
        i += 1
    new: dict[str, Any] = {}
    for k, v in spec.items():
        if k == "layers":
            new["blocks"] = blocks
        new[k] = layers if k == "layers" else v
    return new


def _definition(
    flat: Flat, shape: Shape
) -> tuple[dict[str, Any], dict[int, dict[str, Any] | None]]:
    """The block's definition from its first window, and each run's arguments: an argument
    whose value differs between runs is a parameter named after it (`$filters`)."""
    size = shape.runs[0].size
    firsts = [run.start for run in shape.runs]
    params: dict[tuple[int, str], str] = {}
    values: dict[str, list[Any]] = {}
    for j in range(size):
        args = [_kind_args(flat.items[s + j])[1] for s in firsts]
        if all(a == args[0] for a in args):
            continue
        keys = {k for a in args for k in (a or {})}
        for key in sorted(keys):
            column = [(a or {}).get(key) for a in args]
            if all(v == column[0] for v in column):
                continue
            name = next((p for p, vs in values.items() if vs == column), None)
            if name is None:
                name, n = key, 1
                while name in values:
                    name, n = f"{key}_{n}", n + 1
                values[name] = column
            params[(j, key)] = name
    window = flat.names[firsts[0] : firsts[0] + size]
    local = shape.local
    if local is None:  # netspec's names for unnamed layers
        counts: dict[str, int] = {}
        auto = []
        for j in range(size):
            kind = _kind_args(flat.items[firsts[0] + j])[0]
            auto.append(kind if counts.get(kind, 0) == 0 else f"{kind}_{counts[kind]}")
            counts[kind] = counts.get(kind, 0) + 1
        local = tuple(auto)
    layers = []
    for j in range(size):
        kind, args = _kind_args(flat.items[firsts[0] + j])
        if isinstance(args, dict):
            args = {k: f"${params[(j, k)]}" if (j, k) in params else v for k, v in args.items()}
        refs = [
            local[window.index(r)] if r in window and window.index(r) < j else INPUT
            for r in flat.inputs[firsts[0] + j]
        ]
        item: dict[str, Any] = {kind: args}
        if refs != [INPUT if j == 0 else local[j - 1]]:
            item["inputs"] = refs
        layers.append(item)
    read = {r for item in layers for r in item.get("inputs", ())}
    for j, item in enumerate(layers):
        if shape.local is not None or local[j] in read:
            item["name"] = local[j]
    definition: dict[str, Any] = {}
    if values:
        definition["params"] = {p: None for p in values}
    definition["layers"] = [_bare(item) for item in layers]
    args_of = {s: ({p: vs[i] for p, vs in values.items()} or None) for i, s in enumerate(firsts)}
    return definition, args_of


def _bare(item: dict[str, Any]) -> Any:
    """`- relu` for a layer without arguments, name or inputs."""
    if len(item) == 1:
        kind, args = next(iter(item.items()))
        if args is None:
            return kind
    return item


def _same_layers(flat: Any, new: Any) -> bool:
    """The block spec compiles to the flat spec's layers, in order, wired alike."""
    if len(flat.nodes) != len(new.nodes):
        return False
    rename = {INPUT: INPUT}
    for a, b in zip(flat.nodes, new.nodes, strict=True):
        fields = a.layer.ref_fields
        mine = {
            k: rename.get(v, "?") if k in fields else v for k, v in a.layer.model_dump().items()
        }
        if a.kind != b.kind or mine != b.layer.model_dump():
            return False
        if tuple(rename.get(i, "?") for i in a.inputs) != tuple(b.inputs):
            return False
        if a.trainable != b.trainable:
            return False
        rename[a.name] = b.name
    return True
