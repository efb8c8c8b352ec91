"""The `text` source: a CSV column of texts and a label column, tokenized after the split.

`load_texts` reads the file with the CSV source's own reading and label handling (csv_records'
blocks for UTF-8, table.py's whole reading for UTF-16: encoding, delimiter, header, ragged rows,
missing columns, class names) and gives an ArrayData whose x holds the texts (an object array).
`tokenize_splits` then fits the tokenizer on the training split alone (or takes a run's
recorded one) and turns every split into (N, max_length) float32 ids, the form the embedding
layer takes.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData
from netspec.data.csvtext import is_utf16
from netspec.data.stream import chunks, content_key, disk_cached, is_streamed, read_chunks
from netspec.data.table import _read_rows
from netspec.data.table_cells import SHOWN, class_labels
from netspec.data.text_stream import read_texts, refuse_empty, text_label_columns, texts_data
from netspec.data.tokenizer import LENGTH_PERCENTILE, Tokenizer, fit, length_percentile, tokens


def load_texts(
    path: str | Path, *, text: str, label: str, delimiter: str | None = None
) -> ArrayData:
    """x: the texts (N,) as an object array; y: class indices of the label column (names sorted,
    numeric labels by value, as the CSV source). An empty text or label is an error naming its
    line: a model cannot learn from, or be scored on, nothing. A UTF-8 file is read a block of
    records at a time, keeping only the two columns (text_stream.read_texts); a UTF-16 one
    whole, here."""
    path = Path(path)
    if not is_utf16(path):
        return read_texts(path, text=text, label=label, delimiter=delimiter)
    delimiter, header, numbered = _read_rows(path, delimiter)
    t_col, l_col = text_label_columns(header, text, label, path)
    lines = [line for line, _ in numbered]
    texts = [row[t_col] for _, row in numbered]
    labels = [row[l_col].strip() for _, row in numbered]
    for values, what in (
        (texts, f"an empty text (column {text!r})"),
        (labels, f"an empty label (column {label!r})"),
    ):
        empty = [line for line, v in zip(lines, values) if not v.strip()]
        refuse_empty(path, empty[:SHOWN], len(empty), what)
    y, classes = class_labels(path, delimiter, label, labels, lines)
    return texts_data(path, text, label, np.asarray(texts, dtype=object), y, classes)


def _texts(x: Any) -> Iterator[str]:
    """A split's texts in order: from memory, or a chunk at a time from the file (streamed)."""
    if not is_streamed(x):
        yield from (str(t) for t in x)
        return
    for part in read_chunks(x, chunks(x)):
        yield from (str(t) for t in part)


def fit_tokenizer(train: ArrayData, options: Any, input_shape: tuple[int, ...]) -> Tokenizer:
    """The tokenizer of a text source's `tokenizer:` options, fitted on the training split.

    max_length: as given; else the spec's input length when it is fixed ([L]); else the 95th
    percentile of the training texts' token counts (nearest rank).
    """
    length = options.max_length
    if length is None and len(input_shape) == 1 and input_shape[0] is not None:
        length = int(input_shape[0])
    counts = array("q")  # each text's token count, for the percentile: one pass over the texts

    def texts() -> Iterator[str]:
        for t in _texts(train.x):
            if length is None:
                counts.append(len(tokens(t, options.level, options.lowercase)))
            yield t

    tok = fit(
        texts(),
        level=options.level,
        max_length=1,
        vocab_size=options.vocab_size,
        min_count=options.min_count,
        lowercase=options.lowercase,
    )
    if length is None:
        length = length_percentile(counts)
    return replace(tok, max_length=int(length))


def check_input(tok: Tokenizer, input_shape: tuple[int, ...], source: str) -> None:
    """The spec's input takes the tokenizer's rows: [max_length] (or a dynamic [null])."""
    if len(input_shape) != 1 or input_shape[0] not in (None, tok.max_length):
        raise data_error(
            f"{source}: texts become rows of {tok.max_length} token ids (tokenizer.max_length), "
            f"but the spec's input is {list(input_shape)}",
            hint=f"set `input: [{tok.max_length}]`, or the tokenizer's max_length to the input's "
            "length",
        )


def tokenize(
    data: ArrayData, tok: Tokenizer, cache: str = "ram", notes: list[str] | None = None
) -> tuple[ArrayData, int]:
    """A split's texts as (N, max_length) float32 ids, and how many texts were cut short.

    Streamed texts (text_stream.py) get their ids when read (cache none), or from a disk cache
    of them written once (disk, or auto that streams), keyed by the file, the split's rows and
    the tokenizer."""
    if not is_streamed(data.x):
        texts = [str(t) for t in data.x]
        cut = sum(len(tok.tokens(t)) > tok.max_length for t in texts)
        return replace(data, x=tok.encode(texts).astype(np.float32)), cut
    cut = sum(len(tok.tokens(t)) > tok.max_length for t in _texts(data.x))
    x = data.x.mapped(partial(_ids, tok))
    if cache != "none":
        reader = x.reader
        rows = hashlib.sha256(np.ascontiguousarray(x.index).tobytes()).hexdigest()
        options = {"column": reader.column, "rows": rows, "tokenizer": tok.to_dict()}
        key = content_key("text_ids", [reader.path], options)
        x = disk_cached(x, key, notes if notes is not None else [])
    return replace(data, x=x), cut


def _ids(tok: Tokenizer, text: np.ndarray) -> np.ndarray:
    """One streamed text's ids, as Tokenizer.encode gives a row of them."""
    return tok.encode([str(text[()])])[0].astype(np.float32)


def tokenize_splits(
    splits: dict[str, ArrayData | None],
    options: Any,
    input_shape: tuple[int, ...],
    recorded: Tokenizer | None,
    cache: str = "ram",
) -> tuple[dict[str, ArrayData | None], Tokenizer, list[str]]:
    """Every split tokenized by one tokenizer: `recorded` (a trained run's), else one fitted on
    the training split; the splits, the tokenizer and the notes for the user."""
    train = splits["train"]
    assert train is not None
    tok = recorded or fit_tokenizer(train, options, input_shape)
    check_input(tok, input_shape, train.source)
    notes: list[str] = []
    if recorded is None:
        notes.append(
            f"tokenizer: {tok.size} {tok.level} ids (0 padding, 1 unknown, {len(tok.vocab)} "
            f"from the training split), rows of {tok.max_length}"
            + (
                f" (the {LENGTH_PERCENTILE}th percentile of the training texts)"
                if options.max_length is None and input_shape[0] is None
                else ""
            )
        )
    out: dict[str, ArrayData | None] = {}
    cut: list[str] = []
    for name, data in splits.items():
        out[name] = None
        if data is not None:
            out[name], n = tokenize(data, tok, cache, notes)
            cut += [f"{n} of {len(data)} {name}"] if n else []
    if cut:  # one note for all splits
        notes.append(
            f"texts longer than max_length {tok.max_length} {tok.level} tokens are cut to it: "
            + ", ".join(cut)
        )
    return out, tok, notes


def check_vocab(tok: Tokenizer, graph: Any) -> None:
    """The embedding fed the ids has a row for each id the tokenizer gives (an id past the
    table would fail deep inside torch)."""
    from netspec.data.token_ids import id_reader

    node = id_reader(graph)
    dim = None if node is None else node.layer.input_dim
    if dim is not None and dim < tok.size:
        raise data_error(
            f"the tokenizer gives {tok.size} ids (0 padding, 1 unknown, {len(tok.vocab)} "
            f"tokens of the training split), but embedding {node.name!r} has input_dim {dim}",
            graph.file,
            hint=f"set its `input_dim: {tok.size}`, or `train.data.tokenizer.vocab_size: "
            f"{dim}` to keep the most frequent tokens",
        )


def tokenized(
    spec: Any,
    input_shape: tuple[int, ...],
    train: ArrayData,
    val: ArrayData | None,
    test: ArrayData | None,
    recorded: Tokenizer | None,
    notes: list[str],
) -> tuple[ArrayData, ArrayData | None, ArrayData | None, Tokenizer]:
    """A text source's splits as token ids (data/text.py); its ids are never scaled."""
    p = spec.preprocess
    if p.rescale or p.normalize != "none" or p.grayscale or p.resize or p.center_crop:
        raise data_error(
            "train.preprocess: a text source gives token ids, which are never scaled or normalized",
            hint="remove train.preprocess",
        )
    parts, tok, said = tokenize_splits(
        {"train": train, "val": val, "test": test},
        spec.data.tokenizer,
        input_shape,
        recorded,
        spec.data.cache,
    )
    notes += said
    return parts["train"], parts["val"], parts["test"], tok  # type: ignore[return-value]
