"""pydantic ValidationErrors as located Problems: file:line:col, the spec path, what was found, a hint."""

from __future__ import annotations

import re
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from netspec.errors import Problem
from netspec.layers.base import suggest
from netspec.source import Source, SpecPath, format_path


def found(value: Any) -> str:
    kind = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a mapping",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"found {text} ({kind})" if value is not None else "found null"


def _child(data: Any, part: Any) -> Any:
    """`data[part]` for a key of a mapping or an index of a list, else None."""
    if isinstance(data, dict):
        return data.get(part)
    if isinstance(data, list) and isinstance(part, int) and part < len(data):
        return data[part]
    return None


def _model_at(
    model: type[BaseModel], loc: tuple[Any, ...], data: Any = None
) -> type[BaseModel] | None:
    """The pydantic model that holds the last element of `loc` (for "did you mean" suggestions)."""
    current: Any = model
    for part in loc[:-1]:
        data = _child(data, part)
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        current = _pick_model(fields[part].annotation, data)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _pick_model(annotation: Any, data: Any) -> type[BaseModel] | None:
    """The model an annotation admits for `data`; for a tagged union, the member whose tag matches."""
    models = _models_in(annotation)
    if len(models) > 1 and isinstance(data, dict):
        for m in models:
            for name, f in m.model_fields.items():
                literal = str(f.annotation).startswith("typing.Literal")
                if literal and data.get(name) in get_args(f.annotation):
                    return m
    return models[0] if models else None


def _clean_loc(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the tags pydantic inserts for discriminated unions, so the path matches the file."""
    out = []
    current = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(current, dict) and part not in current and not last and isinstance(part, str):
            continue
        out.append(part)
        current = _child(current, part)
    return tuple(out)


def pydantic_problems(
    source: Source,
    base: SpecPath,
    exc: ValidationError,
    model: type[BaseModel],
    what: str,
    note: str = "",
    key_word: str = "argument",
    data: Any = None,
) -> list[Problem]:
    """Translate pydantic errors into located Problems with suggestions."""
    errors = exc.errors()
    for err in errors:
        err["loc"] = _clean_loc(data, tuple(err["loc"])) if data is not None else tuple(err["loc"])
    typos = _typos(errors, model, data)
    problems = []
    for err in errors:
        loc = tuple(err["loc"])
        path = (*base, *loc)
        kind = err["type"]
        holder = _model_at(model, loc, data)
        here = what if len(loc) == 1 else f"{format_path((*base, *loc[:-1]))}"
        if kind in ("extra_forbidden", "missing"):
            if kind == "missing" and (loc[:-1], str(loc[-1])) in typos:
                continue
            missing = kind == "missing"
            problems.append(_name_problem(source, path, missing, holder, here, note, key_word))
        elif kind == "union_tag_invalid":
            problems.append(_unknown_tag(source, path, err, note))
        elif kind == "too_short" and loc[-1] == "layers":
            owner = "a block" if path[:1] == ("blocks",) else "a spec"
            problems.append(
                source.problem(
                    path,
                    f"{owner} needs at least one layer, found an empty list{note}",
                    "list its layers under `layers:`, e.g. `- dense: {units: 10}`",
                )
            )
        else:
            problems.append(_wrong_value(source, path, err, note))
    return problems


def _typos(
    errors: list[Any], model: type[BaseModel], data: Any
) -> set[tuple[tuple[Any, ...], str | None]]:
    """(where, the name meant) of every unknown name close to a field: a typo of a required
    name shows once, as the typo, not also as "missing"."""
    typos = set()
    for e in errors:
        if e["type"] == "extra_forbidden":
            holder = _model_at(model, e["loc"], data)
            if holder is not None:
                typos.add((e["loc"][:-1], suggest(str(e["loc"][-1]), list(holder.model_fields))))
    return typos


def _field_names(holder: type[BaseModel] | None, required: bool = False) -> list[str]:
    """The names a model's fields are written with (only the required ones, if asked)."""
    if holder is None:
        return []
    return [
        (f.alias or n) for n, f in holder.model_fields.items() if not required or f.is_required()
    ]


def _name_problem(
    source: Source,
    path: SpecPath,
    missing: bool,
    holder: type[BaseModel] | None,
    here: str,
    note: str,
    key_word: str,
) -> Problem:
    """A name the model does not take (with the nearest it does, and all it takes), or a
    required one left out (with all it needs)."""
    name = str(path[-1])
    if missing:
        required = _field_names(holder, required=True)
        return source.problem(
            path[:-1],
            f"missing required {key_word} '{name}'{note}",
            f"{here} needs: {', '.join(required)}" if required else None,
            key=True,
        )
    fields = _field_names(holder)
    near = suggest(name, fields) if fields else None
    hint = f"did you mean '{near}'? " if near else ""
    if fields:
        hint += f"{here} takes: {', '.join(fields)}"
    return source.problem(path, f"unknown {key_word} '{name}'{note}", hint or None, key=True)


def _unknown_tag(source: Source, path: SpecPath, err: Any, note: str) -> Problem:
    """A tagged union's tag that names no member (e.g. an unknown loss or schedule)."""
    ctx = err.get("ctx") or {}
    tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
    tag = str(ctx.get("tag", ""))
    near = suggest(tag, tags)
    disc = str(ctx.get("discriminator", "")).strip("'")
    return source.problem(
        (*path, disc),
        f"unknown {disc} '{tag}'{note}: expected one of {', '.join(tags)}",
        f"did you mean '{near}'?" if near else None,
    )


def _wrong_value(source: Source, path: SpecPath, err: Any, note: str) -> Problem:
    """Any other error: pydantic's message, lower-cased and shortened, with what was found."""
    kind = err["type"]
    msg = err["msg"]
    msg = re.sub(r"^Input should be ", "expected ", msg)
    msg = re.sub(r"^(Value error|Assertion failed), ", "", msg)
    msg = msg[0].lower() + msg[1:] if msg else msg
    hint = (err.get("ctx") or {}).get("hint")
    if kind in ("int_type", "float_type") and isinstance(err.get("input"), str):
        hint = "write the number without quotes"
    if kind == "literal_error" and isinstance(err.get("input"), str):
        options = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        near = suggest(err["input"], options)
        hint = f"did you mean '{near}'?" if near else None
    return source.problem(path, f"{msg}, {found(err.get('input'))}{note}", hint)
