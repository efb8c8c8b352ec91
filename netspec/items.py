"""A spec's layer items: the reserved names, the item models (BlockDef, ItemMeta), the records
expansion produces (Origin, Decl), and how many layers items expand to, counted before expanding."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from netspec.layers import Layer
from netspec.source import SpecPath

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
    if m is None:  # pragma: no cover - every via entry is written by expand.Expander.block_use
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
