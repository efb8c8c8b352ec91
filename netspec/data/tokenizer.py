"""The text tokenizer: texts to fixed-length rows of token ids, fitted on the training split only.

One implementation, used by training (data/text.py), `netspec evaluate`, `netspec predict` and the
Python Predictor; docs/js/predict.mjs ports `tokens` and `encode` and is tested against them.

Ids: 0 is padding, 1 an unknown token, 2.. the vocabulary, most frequent first, ties in code
point order (so a fit is deterministic). Rows are padded on the right and cut at `max_length`.
Tokens: `char` gives every Unicode code point (spaces included); `word` gives each maximal run
of letters, marks and digits (Unicode categories L*, M*, N*) as one token and every other
character except separators (categories Z*, and tab, newline, vertical tab, form feed and
carriage return) as a token of its own: "Don't stop!" is Don ' t stop !.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from netspec.errors import DataError

# numpy is imported inside the functions that compute with it: `netspec summary` imports this
# module (through the run record) and starts without numpy (docs/performance.md).
if TYPE_CHECKING:
    import numpy as np

Level = Literal["char", "word"]
LEVELS: tuple[str, ...] = ("char", "word")
PAD, UNKNOWN = 0, 1
FIRST_ID = 2  # the vocabulary's first id
LENGTH_PERCENTILE = 95  # max_length: null without a fixed input length: this percentile
_SPACES = frozenset("\t\n\v\f\r")


def _kind(ch: str) -> str:
    """w: part of a word; s: a separator; p: a token of its own (punctuation, symbols)."""
    cat = unicodedata.category(ch)
    if cat[0] in "LMN":
        return "w"
    if cat[0] == "Z" or ch in _SPACES:
        return "s"
    return "p"


def split_words(text: str) -> list[str]:
    """The `word` level's tokens of a text (see the module's docstring)."""
    out: list[str] = []
    word: list[str] = []
    for ch in text:
        kind = _kind(ch)
        if kind == "w":
            word.append(ch)
            continue
        if word:
            out.append("".join(word))
            word = []
        if kind == "p":
            out.append(ch)
    if word:
        out.append("".join(word))
    return out


def tokens(text: str, level: str, lowercase: bool = False) -> list[str]:
    """A text's tokens at `level` (char or word), lowercased first when asked."""
    if lowercase:
        text = text.lower()
    return list(text) if level == "char" else split_words(text)


@dataclass(frozen=True)
class Tokenizer:
    """A fitted tokenizer: the level, the vocabulary (id 2 onwards) and the row length."""

    level: Level
    vocab: tuple[str, ...]
    max_length: int
    lowercase: bool = False
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = {t: i for i, t in enumerate(self.vocab, start=FIRST_ID)}
        object.__setattr__(self, "_ids", ids)

    @property
    def size(self) -> int:
        """Ids in use, padding and unknown included: the smallest embedding `input_dim`."""
        return len(self.vocab) + FIRST_ID

    def tokens(self, text: str) -> list[str]:
        return tokens(text, self.level, self.lowercase)

    def ids(self, text: str) -> list[int]:
        """A text's ids, unpadded and uncut."""
        get = self._ids.get
        return [get(t, UNKNOWN) for t in self.tokens(text)]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, max_length) int64 ids: padded with 0 on the right, cut at max_length."""
        import numpy as np

        out = np.zeros((len(texts), self.max_length), dtype=np.int64)
        for i, text in enumerate(texts):
            row = self.ids(text)[: self.max_length]
            out[i, : len(row)] = row
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (model.json, the ONNX card, the sidecar): the vocabulary once, as a list."""
        return {
            "level": self.level,
            "lowercase": self.lowercase,
            "max_length": self.max_length,
            "pad_id": PAD,
            "unknown_id": UNKNOWN,
            "size": self.size,
            "vocab": list(self.vocab),
        }

    @classmethod
    def from_dict(cls, d: Any, file: str | None = None) -> Tokenizer:
        """The tokenizer back from its JSON form; DataError naming `file` when it is malformed."""
        vocab = d.get("vocab") if isinstance(d, Mapping) else None
        ok = (
            isinstance(d, Mapping)
            and d.get("level") in LEVELS
            and isinstance(d.get("max_length"), int)
            and not isinstance(d.get("max_length"), bool)
            and d["max_length"] > 0
            and isinstance(d.get("lowercase", False), bool)
            and isinstance(vocab, list)
            and all(isinstance(t, str) and t for t in vocab)
            and len(set(vocab)) == len(vocab)
            and d.get("pad_id", PAD) == PAD
            and d.get("unknown_id", UNKNOWN) == UNKNOWN
        )
        if not ok:
            raise DataError.one(
                f"the tokenizer record {str(d)[:80]!r} is malformed: expected its level, "
                "max_length, lowercase and vocab (a list of distinct tokens)",
                file,
                hint="the file was not written by netspec, or was edited: train the run again",
            )
        return cls(d["level"], tuple(vocab), int(d["max_length"]), bool(d.get("lowercase")))


def fit(
    texts: Iterable[str],
    *,
    level: Level,
    max_length: int,
    vocab_size: int | None = None,
    min_count: int = 1,
    lowercase: bool = False,
) -> Tokenizer:
    """A tokenizer whose vocabulary is the tokens of `texts` seen at least `min_count` times,
    most frequent first (ties in code point order), cut so that ids stay below `vocab_size`
    (which counts padding and unknown) when given."""
    counts = Counter(t for text in texts for t in tokens(text, level, lowercase))
    kept = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
    if vocab_size is not None:
        kept = kept[: max(0, vocab_size - FIRST_ID)]
    return Tokenizer(level, tuple(kept), max_length, lowercase)


def length_percentile(lengths: Sequence[int], q: float = LENGTH_PERCENTILE) -> int:
    """The q-th percentile of token counts by nearest rank (at least 1): q% of rows fit whole."""
    if not lengths:
        return 1
    ordered = sorted(lengths)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return max(1, ordered[rank - 1])
