"""A generated schema's alternatives rewritten as if/then on the value's form, for validators and editors.

pydantic writes a union as `anyOf`/`oneOf`: a validator then tries every branch and reports
"is not valid under any of the given schemas" about the whole value, and yaml-language-server
adds "Matches a schema that is not allowed" and shows every branch in its messages. Chosen by
the value's form instead (null or not, a string shorthand or a mapping, a tagged mapping's
tag), each value is checked against its own branch, whose message names the mistake.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def by_form(schema: Schema) -> Schema:
    """The schema with optional values, string shorthands and tagged unions chosen by form,
    and the choices of each if/then value listed as `examples` for editors' completion."""
    schema = null_apart(schema)
    return suggest(tagged(schema, schema["$defs"]))


NULL: Schema = {"type": "null"}


def null_apart(node: Any) -> Any:
    """Every `anyOf: [..., {type: null}]` (pydantic's optional values) as `if null, else ...`:
    a value that is there is checked against what it may be, so its own mistake is reported
    (`rate: 1.5 is greater than...`), never "is not valid under any of the given schemas"
    about its whole parent."""
    if isinstance(node, list):
        return [null_apart(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: null_apart(v) for k, v in node.items()}
    alts = out.get("anyOf")
    if isinstance(alts, list) and NULL in alts and len(alts) > 1 and "if" not in out:
        rest = [a for a in alts if a != NULL]
        del out["anyOf"]
        out.update({"if": NULL, "then": NULL, "else": _one_of_types(rest)})
    elif isinstance(alts, list) and "if" not in out:
        chosen = _one_of_types(alts)
        if "if" in chosen:
            del out["anyOf"]
            out.update(chosen)
    return out


def _is_string(node: Schema) -> bool:
    if node.get("type") == "string":
        return True
    if "enum" in node and all(isinstance(v, str) for v in node["enum"]):
        return True
    return bool(node.get("anyOf")) and all(_is_string(b) for b in node["anyOf"])


def _one_of_types(alts: list[Schema]) -> Schema:
    """Alternatives as one schema; a string shorthand beside a mapping (`optimizer: adam` or
    `{name: adam}`) as `if string, else the mapping`, so each form reports its own mistake."""
    if len(alts) == 1:
        return alts[0]
    strings = [a for a in alts if _is_string(a)]
    others = [a for a in alts if not _is_string(a)]
    if strings and len(others) == 1 and ("$ref" in others[0] or others[0].get("type") == "object"):
        text = strings[0] if len(strings) == 1 else {"anyOf": strings}
        return {"if": {"type": "string"}, "then": text, "else": others[0]}
    types = ["string" if _is_string(a) else a.get("type") for a in alts]
    if all(isinstance(t, str) for t in types) and len(set(types)) == len(types):
        # One branch per JSON type (`padding: same`, `3` or `[1, 2]`): chosen by the type.
        out = alts[-1]
        for t, alt in zip(reversed(types[:-1]), reversed(alts[:-1]), strict=True):
            out = {"if": {"type": t}, "then": alt, "else": out}
        return out
    return {"anyOf": alts}


def tagged(node: Any, defs: Schema) -> Any:
    """Every `oneOf` of mappings told apart by one key's constant (pydantic's discriminated
    unions: a data `source`; a search entry's `search`) as if/then on that key: a value is
    checked against its own branch ("'path' was unexpected" for mnist), and an unknown tag is
    named ("'mnistt' is not one of [...]"), not "valid under none of the given schemas"."""
    if isinstance(node, list):
        return [tagged(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: tagged(v, defs) for k, v in node.items()}
    alts = out.get("oneOf")
    if not isinstance(alts, list) or "if" in out or "allOf" in out:
        return out
    branches = [defs[a["$ref"].rsplit("/", 1)[1]] if "$ref" in a else a for a in alts]
    tags = [_tag(b) for b in branches]
    if None in tags or len({key for key, _ in tags}) != 1:  # type: ignore[misc]
        return out
    key = tags[0][0]  # type: ignore[index]
    values = [v for _, v in tags]  # type: ignore[misc]
    del out["oneOf"]
    out.pop("discriminator", None)
    out["type"] = "object"
    out["required"] = [key]
    out["properties"] = {key: {"enum": values, "description": f"One of {', '.join(values)}."}}
    out["allOf"] = [
        {"if": {"properties": {key: {"const": v, "description": f"{key}: {v}"}}}, "then": alt}
        for v, alt in zip(values, alts, strict=True)
    ]
    return out


def _tag(branch: Schema) -> tuple[str, str] | None:
    """(key, constant) when a branch is a mapping that requires a key of a constant value."""
    for key, prop in branch.get("properties", {}).items():
        while "const" not in prop and isinstance(prop.get("else"), dict):
            prop = prop["else"]  # past a search entry's or a `$param`'s if
        if isinstance(prop.get("const"), str) and key in branch.get("required", []):
            return key, prop["const"]
    return None


def _choices(node: Any) -> list[Any]:
    """The plain values a schema lists (enums, constants, booleans), through if/then/else and
    anyOf; not through $refs (a search entry's kinds are no values of the field)."""
    if not isinstance(node, dict):
        return []
    out = list(node.get("enum", [])) + ([node["const"]] if "const" in node else [])
    if node.get("type") == "boolean":
        out += [True, False]
    for key in ("then", "else"):
        out += _choices(node.get(key))
    for branch in node.get("anyOf", []):
        out += _choices(branch)
    return out


def suggest(node: Any) -> Any:
    """yaml-language-server completes a value from its schema's enum, anyOf and allOf, but not
    from the branches of if/then/else: each such value lists its choices as `examples` (which
    it completes, and no validator checks)."""
    if isinstance(node, list):
        return [suggest(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: suggest(v) for k, v in node.items()}
    if "if" in out and "examples" not in out:
        choices = [c for c in _choices(out) if c is not None]
        if choices:
            out["examples"] = list(dict.fromkeys(choices))
    return out
