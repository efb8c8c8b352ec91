"""The JSON Schema of the spec language, generated from the pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from netspec.expand import ItemMeta
from netspec.layers import LAYER_KINDS
from netspec.spec import SpecHeader


def json_schema() -> dict[str, Any]:
    """A draft 2020-12 schema: each layer item is `{<kind>: {args}, name, inputs, trainable, repeat}`."""
    meta = {name: (f.annotation, f) for name, f in ItemMeta.model_fields.items()}
    items: list[type[BaseModel]] = []
    for cls in LAYER_KINDS:
        items.append(
            create_model(  # type: ignore[call-overload]
                f"{cls.__name__}Item",
                __config__=ConfigDict(extra="forbid"),
                __doc__=f"A `{cls.kind}` layer.",
                **{cls.kind: (cls | None, ...)},
                **meta,
            )
        )
    layer_item = {"anyOf": [{"$ref": f"#/$defs/{m.__name__}"} for m in items]}
    bare = {
        "enum": [
            cls.kind
            for cls in LAYER_KINDS
            if not any(f.is_required() for f in cls.model_fields.values())
        ]
    }
    group = {
        "type": "object",
        "description": "A group of layers, optionally repeated.",
        "properties": {"layers": {"type": "array"}, **{k: {} for k in ItemMeta.model_fields}},
        "required": ["layers"],
        "additionalProperties": False,
    }
    block_use = {
        "type": "object",
        "description": "A use of a block defined under `blocks:`, with its parameters.",
        "minProperties": 1,
    }
    schema = SpecHeader.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for m in items:
        sub = m.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[m.__name__] = sub
    defs["LayerItem"] = {"anyOf": [layer_item, bare, group, block_use]}
    schema["properties"]["layers"]["items"] = {"$ref": "#/$defs/LayerItem"}
    defs["BlockDef"]["properties"]["layers"]["items"] = {"$ref": "#/$defs/LayerItem"}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "netspec spec"
    return schema
