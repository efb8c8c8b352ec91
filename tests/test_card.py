"""The ONNX model card read as a typed record (backends/export/card.py's Card)."""

from __future__ import annotations

import json

import pytest

from netspec.backends.export.card import Card, encode_card
from netspec.data.arraydata import TableColumns
from netspec.errors import DataError


def test_a_foreign_model_has_an_empty_card() -> None:
    card = Card.from_props({"author": "someone else"})
    assert not card.found
    assert card.task is card.classes is card.preprocessing is card.table is card.head is None
    assert card.input_shape is None


def test_an_old_card_loads_with_its_missing_fields_none() -> None:
    # What an older netspec wrote: no head, no raw_range, no table; a dynamic input.
    props = encode_card(
        {
            "name": "net",
            "version": "0.1",
            "task": "multiclass",
            "classes": ["a", "b"],
            "preprocessing": {"input_shape": [3, None, None], "raw_shape": [3, None, None],
                              "layout": "NCHW", "steps": []},
            "input_shape": [3, None, None],
            "output_shape": [2],
        }
    )  # fmt: skip
    card = Card.from_props(props)
    assert card.found and card.meta.name == "net" and card.meta.netspec_version == "0.1"
    assert card.classes == ("a", "b") and card.task == "multiclass" and card.head is None
    assert card.preprocessing.raw_range is None and card.layout == "NCHW"
    assert card.input_shape == (3, None, None) and card.output_shape == (2,)


def test_the_card_types_head_and_table() -> None:
    table = TableColumns("species", (("island", ("Biscoe", "Dream")), ("bill", None)))
    props = encode_card({"name": "t", "head": "none", "table": table.to_dict(), "features": ["x"]})
    card = Card.from_props(props)
    assert card.head is None and card.meta.head is None
    assert card.table == table and card.features == ("x",)
    assert Card.from_props(encode_card({"name": "t", "head": "softmax"})).head == "softmax"


@pytest.mark.parametrize(
    "props, needle",
    [
        ({"netspec.classes": "[not json"}, "netspec.classes is not valid JSON"),
        ({"netspec.table": json.dumps({"columns": 3})}, "table record"),
        ({"netspec.input_shape": json.dumps([0, 2])}, "netspec.input_shape"),
    ],
)
def test_a_tampered_card_is_a_located_error(props: dict[str, str], needle: str) -> None:
    with pytest.raises(DataError) as err:
        Card.from_props(props, "m.onnx")
    problem = err.value.problems[0]
    assert needle in problem.message and problem.file == "m.onnx"
