"""The model card as ONNX `metadata_props` (`netspec.<key>`, plain strings or JSON) and back,
typed: `Card.from_props` gives the run's record (RunMeta) and what export adds to it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netspec.errors import DataError
from netspec.run_record import RunMeta

# Metadata values that are plain strings; every other value is stored as JSON.
STRING_KEYS = frozenset({"name", "version", "spec_sha256", "task", "head"})
PREFIX = "netspec."
NO_HEAD = "none"  # the card's head of a linear output (RunMeta's None)
IN_GRAPH = PREFIX + "preprocessing_in_graph"  # "true": an `export --preprocess` model


def props_of(model: Any) -> dict[str, str]:
    """An ONNX ModelProto's `metadata_props` as a dict."""
    return {p.key: p.value for p in getattr(model, "metadata_props", ())}


def session_props(session: Any, file: str | None = None) -> dict[str, str]:
    """An onnxruntime session's `metadata_props` as a dict; DataError naming `file` when they
    are not text (onnxruntime loads such a model, and raises only when they are read)."""
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError as exc:
        raise DataError.one(
            f"the model's metadata is not valid UTF-8 (byte {exc.start} of a value)",
            file,
            kind="model",
            hint="the file is damaged: export the model again, or copy it again",
        ) from None


def encode_card(card: Mapping[str, Any]) -> dict[str, str]:
    """The model card (model.model_card) as `metadata_props`."""
    return {PREFIX + k: v if k in STRING_KEYS else json.dumps(v) for k, v in card.items()}


def decode_card(props: Mapping[str, str]) -> dict[str, Any]:
    """The model card back from `metadata_props` as JSON values (keys without the prefix)."""
    return {
        k[len(PREFIX) :]: v if k[len(PREFIX) :] in STRING_KEYS else json.loads(v)
        for k, v in props.items()
        if k.startswith(PREFIX)
    }


@dataclass(frozen=True)
class Card:
    """An ONNX model's card, typed: the run's record as export wrote it, and export's additions.

    A model from an older netspec lacks some keys and a foreign model has none: their fields are
    None (a foreign model's `meta` is all None, named ""). The head of a linear output is None.
    The shapes are the exported graph's, per sample: a dynamic dimension is None (a run's record
    has fixed ones), so they are the card's fields, not the record's.
    """

    meta: RunMeta = field(default_factory=lambda: RunMeta(name=""))
    input_shape: tuple[int | None, ...] | None = None
    output_shape: tuple[int | None, ...] | None = None
    layout: str | None = None  # the input's layout beside the preprocessing (NCHW, NCL, NC)
    tiling: dict[str, Any] | None = None  # a segmentation model's tiles (scenes.describe_tiling)
    ensemble: tuple[str, ...] | None = None  # an ensemble's members (export/ensemble.py)
    max_length: int | None = None  # the longest sequence a dynamic time axis takes (if limited)
    min_length: int | None = None  # the shortest one (its windows must fit), if above 1
    # {layer, input_dim} of the embedding that reads the input as token ids (data/token_ids.py)
    token_ids: dict[str, Any] | None = None
    found: bool = False  # the model has netspec metadata at all

    @classmethod
    def from_props(cls, props: Mapping[str, str], file: str | None = None) -> Card:
        """The card of a model's `metadata_props`; DataError naming `file` when a value is not
        valid JSON or does not fit the record (a tampered or foreign card)."""
        values: dict[str, Any] = {}
        for key, text in props.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX) :]
            try:
                values[name] = text if name in STRING_KEYS else json.loads(text)
            except ValueError:
                raise DataError.one(
                    f"metadata {key} is not valid JSON: {text[:60]!r}", file, kind="model"
                ) from None
        return cls.from_values(values, file)

    @classmethod
    def of(cls, model: Any, file: str | None = None) -> Card:
        """The card of an ONNX ModelProto."""
        return cls.from_props(props_of(model), file)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], file: str | None = None) -> Card:
        """The card of its JSON values (`decode_card`'s); DataError naming `file` when they do
        not fit the record."""
        if not values:
            return cls()
        record = {
            **values,
            "name": values.get("name") or "",
            "netspec_version": values.get("version"),
            "input_shape": None,
            "output_shape": None,
        }
        if record.get("head") == NO_HEAD:
            record["head"] = None
        if not record.get("preprocessing"):  # an empty record, as a foreign tool may write
            record["preprocessing"] = None
        pre = values.get("preprocessing")
        layout = pre.get("layout") if isinstance(pre, Mapping) else None
        members = values.get("ensemble")
        return cls(
            meta=RunMeta.from_dict(record, file),
            input_shape=_shape(values, "input_shape", file),
            output_shape=_shape(values, "output_shape", file),
            layout=layout if isinstance(layout, str) else None,
            tiling=values.get("tiling") if isinstance(values.get("tiling"), dict) else None,
            ensemble=tuple(map(str, members)) if isinstance(members, list) else None,
            max_length=_positive(values, "max_length", file),
            min_length=_positive(values, "min_length", file),
            token_ids=_token_ids(values, file),
            found=True,
        )

    @property
    def head(self) -> str | None:
        """softmax, sigmoid, or None (linear, or not recorded)."""
        return self.meta.head if self.meta.head in ("softmax", "sigmoid") else None

    # The record's fields, for readers of a card alone.
    task = property(lambda self: self.meta.task)
    classes = property(lambda self: self.meta.classes)
    preprocessing = property(lambda self: self.meta.preprocessing)
    features = property(lambda self: self.meta.features)
    table = property(lambda self: self.meta.table)
    tokenizer = property(lambda self: self.meta.tokenizer)  # a text model's (data/tokenizer.py)


def _token_ids(values: Mapping[str, Any], file: str | None) -> dict[str, Any] | None:
    entry = values.get("token_ids")
    if entry is None:
        return None
    if not isinstance(entry, dict) or _positive(entry, "input_dim", file) is None:
        raise DataError.one(
            f"metadata {PREFIX}token_ids is {entry!r}: expected {{layer, input_dim}}",
            file,
            kind="model",
        )
    return entry


def _positive(values: Mapping[str, Any], key: str, file: str | None) -> int | None:
    value = values.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DataError.one(
            f"metadata {PREFIX}{key} is {value!r}: expected a positive integer", file, kind="model"
        )
    return value


def _shape(values: Mapping[str, Any], key: str, file: str | None) -> tuple[int | None, ...] | None:
    value = values.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in value
    ):
        raise DataError.one(
            f"metadata {PREFIX}{key} is {value!r}: expected a list of sizes (null: dynamic)",
            file,
            kind="model",
        )
    return tuple(value)
