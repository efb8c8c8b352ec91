"""The JSON Schema of the spec language, generated from the pydantic models, for editors and checkers."""

from __future__ import annotations

import copy
import functools
from itertools import combinations
from typing import Any

from netspec import search
from netspec.items import META_KEYS, NAME_RE, BlockDef, ItemMeta
from netspec.layers import KINDS, LAYER_KINDS, Layer
from netspec.schema_forms import by_form
from netspec.spec import SpecHeader
from netspec.train_spec import TrainSpec

Schema = dict[str, Any]
REF = "#/$defs/{model}"
# The two places layers are written: the top-level `layers:` and the layers of a block, where
# any value may also be a `$param` of the block. Each gets its own copy of the layer definitions.
TOP, IN_BLOCK = "", "InBlock"
PARAM: Schema = {
    "type": "string",
    "pattern": r"^\$.+",
    "description": "A parameter of the block (`$name`), replaced by the argument of each use.",
}
_SEARCH_KEYS: dict[str, Schema] = {
    "low": {"description": "The lowest value."},
    "high": {"description": "The highest value."},
    "step": {"exclusiveMinimum": 0, "description": "Only values low + k * step."},
    "log": {"type": "boolean", "description": "Sample on a log scale (needs low > 0)."},
    "values": {
        "type": "array",
        "minItems": 1,
        "items": {"type": ["string", "number", "boolean", "null"]},
        "description": "The values to choose from (plain values, not mappings or lists).",
    },
}
_KEEP = ("description", "title", "default")  # what a wrapped value keeps at its top, for hovers


def _first_paragraph(doc: str | None) -> str | None:
    return " ".join(doc.strip().split("\n\n")[0].split()) if doc else None


def _search_entry() -> Schema:
    """A `{search: ...}` entry (netspec/search.py), allowed for any value of a spec."""
    branches = []
    for kind in search.KINDS:
        number = {"type": "integer" if kind == "int" else "number"}
        props: Schema = {"search": {"const": kind, "description": f"A {kind} search."}}
        for key in sorted(search.KEYS[kind] - {"search"}):
            props[key] = {**(number if key in ("low", "high", "step") else {}), **_SEARCH_KEYS[key]}
        branches.append(
            {
                "type": "object",
                "properties": props,
                "required": ["search", "values"] if kind == "choice" else ["search", "low", "high"],
                "additionalProperties": False,
            }
        )
    return {"description": f"A search space for `netspec tune`: {search.HINT}.", "oneOf": branches}


# What marks a value as one of the alternatives `_wrap` adds, so validators and editors pick the
# branch by the value's form instead of trying every one: a search entry is a mapping with a
# `search` key, a block parameter a string starting with `$`.
_MARKS: dict[str, Schema] = {
    REF.format(model="SearchEntry"): {"type": "object", "required": ["search"]},
    "param": {"type": "string", "pattern": r"^\$"},
}


def _mark(alt: Schema) -> Schema:
    return _MARKS[alt.get("$ref", "param")]


def _wrap(node: Schema, alts: list[Schema]) -> Schema:
    """`node`, or any of `alts`, chosen by the value's form (if/then/else, not anyOf): a plain
    value is checked against `node` alone, so a message names its own mistake ("'32' is not of
    type 'integer'") and never the search-space form. Its description stays on top, for hovers."""
    top = {k: node[k] for k in _KEEP if k in node}
    out = {k: v for k, v in node.items() if k not in _KEEP}
    for alt in reversed(alts):
        out = {"if": _mark(alt), "then": alt, "else": out}
    return {**top, **out}


def _open(node: Schema, alts: list[Schema]) -> Schema:
    """A copy of `node` whose every property value and list item may also be one of `alts`
    (a search entry; a `$param` in a block). Referenced definitions are opened on their own."""
    out = dict(node)
    if "properties" in node:
        out["properties"] = {k: _wrap(_open(v, alts), alts) for k, v in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        out["items"] = _wrap(_open(node["items"], alts), alts)
    for key in ("anyOf", "oneOf"):
        if key in node:
            out[key] = [_open(branch, alts) for branch in node[key]]
    return out


def _ref(name: str) -> Schema:
    return {"$ref": REF.format(model=name)}


def _required(cls: type[Layer]) -> bool:
    """Whether a kind has arguments without defaults (then `- kind` alone is not a layer)."""
    return any(f.is_required() for f in cls.model_fields.values())


def _kind_item(cls: type[Layer], meta: Schema, variant: str) -> Schema:
    """`{<kind>: {args}}` plus the item keys; exactly one kind, since no other key is allowed."""
    doc = _first_paragraph(cls.__doc__)
    args: Schema = {"description": doc, **_ref(cls.__name__ + variant)}
    if not _required(cls):
        args = {"description": doc, "anyOf": [_ref(cls.__name__ + variant), {"type": "null"}]}
    return {
        "type": "object",
        "description": f"A `{cls.kind}` layer: {doc}",
        "properties": {cls.kind: args, **meta},
        "additionalProperties": False,
    }


def _block_use(meta: Schema, variant: str) -> Schema:
    """`{<block>: {args}}` plus the item keys. Block names are the spec's own, so the schema
    cannot list them; it can keep a layer type (or a typo next to a block) from passing as one."""
    args = {} if variant == IN_BLOCK else {"not": PARAM}  # `$param` means nothing at the top
    some_other = {"not": {"propertyNames": {"enum": list(META_KEYS)}}}
    # At most one key besides the item keys: some subset S of the item keys present, and at
    # most |S| + 1 keys in all.
    at_most_one = {
        "anyOf": [
            {"required": list(s), "maxProperties": len(s) + 1}
            for n in range(len(META_KEYS) + 1)
            for s in combinations(META_KEYS, n)
        ]
    }
    return {
        "type": "object",
        "title": "block use",
        "description": "A use of a block defined under `blocks:`: `- <block>: {<param>: value}`.",
        "properties": meta,
        # A kind in another case (`Conv2d`) is no block name: "'Conv2d' is not one of [kinds]".
        "propertyNames": {
            "pattern": NAME_RE.pattern,
            "if": {"pattern": _any_case(KINDS)},
            "then": {"enum": list(KINDS)},
        },
        "additionalProperties": {
            "description": "A block defined under `blocks:`, with its arguments.",
            "anyOf": [{"type": "object", "additionalProperties": args}, {"type": "null"}],
        },
        "allOf": [some_other, at_most_one],
    }


def _any_case(names: Any) -> str:
    """A pattern matching any of `names` in any case (`conv2D`), as JSON Schema has no flags."""
    alts = ("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in n) for n in names)
    return f"^({'|'.join(alts)})$"


def _without_blocks(defs: Schema) -> None:
    """LayerItemPlain: the items of a spec without `blocks:`, where every key is a layer type."""
    defs["LayerGroupPlain"] = copy.deepcopy(defs["LayerGroup"])
    defs["LayerGroupPlain"]["properties"]["layers"]["items"] = _ref("LayerItemPlain")
    plain = copy.deepcopy(defs["LayerItem"])
    chosen = plain["else"]["allOf"]
    chosen[-2]["then"] = _ref("LayerGroupPlain")
    chosen[-1]["then"] = _unknown_kind()
    defs["LayerItemPlain"] = plain


def _layer_items(defs: Schema, meta_schema: Schema, variant: str) -> None:
    """The definitions of one variant: each kind's arguments and item, groups, block uses."""
    alts = [_ref("SearchEntry")] + ([PARAM] if variant == IN_BLOCK else [])
    meta = _open(meta_schema, alts)["properties"]
    item = "LayerItem" + variant
    bare = [c.kind for c in LAYER_KINDS if not _required(c)]
    for cls in LAYER_KINDS:
        args = _open(cls.model_json_schema(ref_template=REF), alts)
        defs[cls.__name__ + variant] = {**args, "title": f"{cls.kind} arguments"}
        defs[f"{cls.__name__}Item{variant}"] = _kind_item(cls, meta, variant)
    defs["LayerGroup" + variant] = {
        "type": "object",
        "title": "group of layers",
        "description": "A group of layers, usually repeated: `- {repeat: 3, layers: [...]}`.",
        "properties": {
            "layers": {
                "type": "array",
                "minItems": 1,
                "items": _ref(item),
                "description": "The layers of the group.",
            },
            **{k: v for k, v in meta.items() if k != "name"},  # a group has no name of its own
        },
        "additionalProperties": False,
    }
    defs["BlockUse" + variant] = _block_use(meta, variant)
    bare_schema: Schema = {
        "type": "string",
        "enum": bare,
        "description": "A layer without arguments: `- relu`.",
    }
    defs[item] = _item(
        bare_schema if variant == TOP else _wrap(bare_schema, [PARAM]),
        {c.kind: _ref(f"{c.__name__}Item{variant}") for c in LAYER_KINDS},
        _ref("LayerGroup" + variant),
        _ref("BlockUse" + variant),
    )


def _item(bare: Schema, kinds: dict[str, Schema], group: Schema, other: Schema) -> Schema:
    """A layer item, its branch chosen by its form and its kind key (if/then, not anyOf): a
    string is a bare layer; a mapping with a kind's key is that kind's item, with `layers` a
    group, else `other` (a block use, or an unknown kind). Validators then report the mistake
    inside the right branch (the misspelt argument, the wrong type), not "valid under none";
    editors complete one entry per kind."""
    known = [*kinds, "layers"]
    return {
        "description": "One layer, a group of layers, or a use of a block.",
        "if": {"type": "string"},
        "then": bare,
        "else": {
            "type": "object",
            "allOf": [
                *({"if": {"required": [k]}, "then": ref} for k, ref in kinds.items()),
                {"if": {"required": ["layers"]}, "then": group},
                {"if": {"not": {"anyOf": [{"required": [k]} for k in known]}}, "then": other},
            ],
        },
    }


def _unknown_kind() -> Schema:
    """An item without a layer type (a spec without `blocks:`): its key names the mistake."""
    return {
        "description": "A layer type: one of the kinds.",
        "if": {"propertyNames": {"enum": list(META_KEYS)}},
        "then": {"anyOf": [{"required": [k]} for k in KINDS]},
        "else": {"propertyNames": {"enum": [*KINDS, *META_KEYS]}},
    }


def _describe_refs(node: Any, defs: Schema) -> None:
    """A property that only refers to a definition gets the definition's description."""
    if isinstance(node, list):
        for v in node:
            _describe_refs(v, defs)
        return
    if not isinstance(node, dict):
        return
    for prop in node.get("properties", {}).values():
        if isinstance(prop, dict) and "description" not in prop:
            refs = [prop] + [b for b in prop.get("anyOf", []) if isinstance(b, dict)]
            branch = prop
            while isinstance(branch.get("else"), dict):  # the value past _wrap's and null's ifs
                branch = branch["else"]
                refs += [branch, *(b for b in branch.get("anyOf", []) if isinstance(b, dict))]
            for r in refs:
                target = defs.get(r.get("$ref", "").rsplit("/", 1)[-1], {})
                if target.get("description"):
                    prop["description"] = _first_paragraph(target["description"])
                    break
    for v in node.values():
        _describe_refs(v, defs)


def json_schema() -> Schema:
    """A draft 2020-12 schema of a spec, with a description for every key and an enum for every
    name, so that editors complete and explain what `netspec validate` accepts.

    What only the compiler can check (block names and their parameters, layer references, shapes)
    is left to `netspec validate`. Built once per process (~0.3 s); each call gets its own copy.
    """
    return copy.deepcopy(_built_schema())


@functools.cache
def _built_schema() -> Schema:
    schema = SpecHeader.model_json_schema(ref_template=REF)
    defs: Schema = schema.setdefault("$defs", {})
    defs["SearchEntry"] = _search_entry()
    top = [_ref("SearchEntry")]
    train = TrainSpec.model_json_schema(ref_template=REF)
    for name, sub in train.pop("$defs", {}).items():
        defs[name] = _open(sub, top)
    defs["TrainSpec"] = _open(train, top)
    meta_schema = ItemMeta.model_json_schema(ref_template=REF)
    for variant in (TOP, IN_BLOCK):
        _layer_items(defs, meta_schema, variant)
    props = schema["properties"]
    props["input"]["items"] = _wrap(props["input"]["items"], top)
    _without_blocks(defs)
    # One item schema per spec, so a spec's mistake is reported once: without `blocks:` every
    # item holds a layer type (or is a group of layers); with it, other keys are block uses.
    del props["layers"]["items"]
    schema["if"] = {"required": ["blocks"]}
    layers = props["layers"]["description"]
    schema["then"] = {"properties": {"layers": {"description": layers, "items": _ref("LayerItem")}}}
    schema["else"] = {
        "properties": {"layers": {"description": layers, "items": _ref("LayerItemPlain")}}
    }
    # As validate refuses them, and a kind in another case too: such a block could not be used.
    props["blocks"]["propertyNames"] = {
        "pattern": NAME_RE.pattern,
        "not": {"anyOf": [{"pattern": _any_case(KINDS)}, {"enum": [*META_KEYS, "layers"]}]},
    }
    block = defs["BlockDef"]
    block["properties"]["layers"]["items"] = _ref("LayerItemInBlock")
    block["description"] = _first_paragraph(BlockDef.__doc__)
    props["train"] = {
        "description": props["train"]["description"],
        "anyOf": [_ref("TrainSpec"), {"type": "null"}],
    }
    schema = by_form(schema)
    _describe_refs(schema, schema["$defs"])
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "netspec spec"
    return schema
