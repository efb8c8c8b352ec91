"""Token ids: the data an embedding reads from the network input must be integers in [0, input_dim).

torch would truncate floats silently and raise an IndexError deep in training for an id out
of range (onnxruntime's Gather even wraps negative ids around), so the data is checked first:
at train time against the spec's embedding, at predict time against the model card's
`token_ids`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from netspec.errors import DataError

if TYPE_CHECKING:  # predict imports this module for check_predict_ids: no spec machinery then
    from netspec.ir import Graph, Node

_HINT_FLOATS = (
    "an embedding takes integer token ids in [0, input_dim): read text with a tokenizer (a text "
    "source), or feed a float series to a dense, recurrent or conv1d layer instead"
)


def id_reader(graph: Graph) -> Node | None:
    """The embedding that reads the network input (its values are then token ids), else None."""
    from netspec.items import INPUT

    return next((n for n in graph.nodes if n.kind == "embedding" and INPUT in n.inputs), None)


def card_entry(graph: Graph) -> dict[str, Any] | None:
    """The model card's `token_ids`: the reading embedding's name and input_dim (predict checks
    its inputs against them), or None when the input is not token ids."""
    node = id_reader(graph)
    if node is None:
        return None
    return {"layer": node.name, "input_dim": int(node.layer.input_dim)}  # type: ignore[attr-defined]


def bad_ids(x: np.ndarray, input_dim: int) -> tuple[str, str] | None:
    """(what is wrong, hint) when `x` is not integer ids in [0, input_dim), else None."""
    if x.size == 0:
        return None
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    finite = np.isfinite(flat)
    fractional = ~finite | (flat != np.round(flat))
    if fractional.any():
        i = int(np.argmax(fractional))
        sample = i // max(1, flat.size // len(x))
        return (
            f"holds non-integer values ({flat[i]:g} in sample {sample}; "
            f"{int(fractional.sum()):,} of {flat.size:,} values)",
            _HINT_FLOATS,
        )
    low, high = int(flat.min()), int(flat.max())
    if low < 0:
        return (
            f"holds negative token id {low}; ids must lie in [0, {input_dim})",
            "negative ids index nothing: map the data's ids to 0, 1, ... first",
        )
    if high >= input_dim:
        return (
            f"holds token id {high}, but input_dim is {input_dim} (ids must lie in "
            f"[0, {input_dim}))",
            f"raise the embedding's input_dim to at least {high + 1}, or map the ids into the "
            "vocabulary",
        )
    return None


def check_training_ids(graph: Graph, splits: Any) -> None:
    """DataError located at the reading embedding when a split's input is not valid token ids
    (`splits`: a data.pipeline.Prepared, or the Splits a run's data is read from), or when
    train.preprocess would change the ids (a Prepared's record)."""
    from netspec.data.stream import is_streamed
    from netspec.source import format_path

    node = id_reader(graph)
    if node is None:
        return
    where = node.origin
    layer = f"layer '{node.name}' (embedding)"

    def fail(message: str, hint: str) -> DataError:
        return DataError.one(
            message, graph.file, where.line, where.col, format_path(where.path) or None, hint
        )

    input_dim = int(node.layer.input_dim)  # type: ignore[attr-defined]
    tokenized = getattr(splits, "tokenizer", None) is not None
    for split in ("train", "val", "test"):
        data = getattr(splits, split)
        if data is None or (tokenized and is_streamed(data.x)):
            continue  # a tokenizer's ids, in range by text.check_vocab: not read all again
        if (bad := bad_ids(data.x, input_dim)) is not None:
            raise fail(
                f"{layer} reads token ids, but the {split} split of {data.source} {bad[0]}", bad[1]
            )
    pre = getattr(splits, "preprocessing", None)
    if pre is not None and (
        pre.scale != 1.0 or pre.mean is not None or pre.std is not None or pre.per_sample
    ):
        raise fail(
            f"{layer} reads token ids, but train.preprocess rescales or normalizes the input, "
            "which would change the ids",
            "remove `rescale` and `normalize` from train.preprocess",
        )


def check_predict_ids(x: np.ndarray, entry: Any, file: str | None) -> None:
    """DataError naming the model when a batch of inputs is not valid token ids for the card's
    `token_ids` entry (None, or a foreign value: nothing to check)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("input_dim"), int):
        return
    bad = bad_ids(x, entry["input_dim"])
    if bad is not None:
        layer = entry.get("layer", "embedding")
        raise DataError.one(
            f"the model's layer '{layer}' (embedding) reads token ids, but the input {bad[0]}",
            file,
            hint=bad[1],
        )
