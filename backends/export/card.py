"""The model card as ONNX `metadata_props` and back: `netspec.<key>`, plain strings or JSON."""

from __future__ import annotations

import json
from typing import Any

# Metadata values that are plain strings; every other value is stored as JSON.
STRING_KEYS = frozenset({"name", "version", "spec_sha256", "task", "head"})
PREFIX = "netspec."


def encode_card(card: dict[str, Any]) -> dict[str, str]:
    """The model card (model.model_card) as `metadata_props`."""
    return {PREFIX + k: v if k in STRING_KEYS else json.dumps(v) for k, v in card.items()}


def decode_card(props: dict[str, str]) -> dict[str, Any]:
    """The model card back from `metadata_props` (keys without the prefix)."""
    return {
        k[len(PREFIX) :]: v if k[len(PREFIX) :] in STRING_KEYS else json.loads(v)
        for k, v in props.items()
        if k.startswith(PREFIX)
    }
