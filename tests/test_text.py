"""The `text` source and its tokenizer: ids, the vocabulary of the training split, the run record,
the ONNX card and sidecar, `netspec predict --text` and Predictor on strings, and bad inputs."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED_DATA, fails, invoke

from netspec.data.tokenizer import Tokenizer, fit, length_percentile, split_words
from netspec.errors import DataError
from netspec.run_record import RunMeta

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "js" / "predict.mjs"
WORDS = {
    "en": ["the", "cat", "dog", "house", "and", "is", "big", "small", "tree", "with"],
    "fr": ["le", "chat", "chien", "maison", "et", "est", "grand", "petit", "arbre", "avec"],
}
SPEC = """\
name: tiny_text
input: [24]
layers:
  - embedding: {input_dim: 40, output_dim: 8}
  - permute: {dims: [1, 0]}
  - conv1d: {filters: 8, kernel: 3, padding: same, activation: relu}
  - global_maxpool1d
  - dense: {units: 2, activation: softmax}
train:
  data:
    source: text
    path: train.csv
    test_path: test.csv
    text: sentence
    label: lang
    val: 0.2
    tokenizer: {level: char}
  epochs: 1
  batch_size: 16
  optimizer: {name: adam, lr: 0.01}
  metrics: [accuracy]
  log: {pictures: false}  # no test here looks at them; drawing took longer than the epoch
"""


def write_csv(path: Path, n: int, seed: int, header: str = "sentence,lang") -> Path:
    rng = random.Random(seed)
    lines = [header]
    for _ in range(n):
        lang = rng.choice(sorted(WORDS))
        lines.append(
            f'"{" ".join(rng.choice(WORDS[lang]) for _ in range(rng.randint(2, 8)))}",{lang}'
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def project(folder: Path, spec: str = SPEC) -> Path:
    write_csv(folder / "train.csv", 60, 0)
    write_csv(folder / "test.csv", 20, 1)
    (folder / "spec.yaml").write_text(spec)
    return folder / "spec.yaml"


# --- the tokenizer ----------------------------------------------------------------------------


def test_ids_padding_unknown_and_truncation() -> None:
    tok = fit(["abba", "ab c"], level="char", max_length=5)
    # counts: a 3, b 3, ' ' 1, c 1: by frequency, ties in code point order.
    assert tok.vocab == ("a", "b", " ", "c") and tok.size == 6
    assert tok.encode(["ab", "abz", "cabbage!"]).tolist() == [
        [2, 3, 0, 0, 0],  # right padding with 0
        [2, 3, 1, 0, 0],  # z is unknown: 1
        [5, 2, 3, 3, 2],  # cut at max_length
    ]


def test_word_level_min_count_vocab_size_and_lowercase() -> None:
    assert split_words("Don't stop!  Ça va? 3,5 km") == [
        "Don", "'", "t", "stop", "!", "Ça", "va", "?", "3", ",", "5", "km"
    ]  # fmt: skip
    texts = ["The cat", "the cat", "the dog"]
    assert fit(texts, level="word", max_length=4).vocab == ("cat", "the", "The", "dog")
    assert fit(texts, level="word", max_length=4, min_count=2).vocab == ("cat", "the")
    assert fit(texts, level="word", max_length=4, lowercase=True).vocab == ("the", "cat", "dog")
    small = fit(texts, level="word", max_length=4, vocab_size=3, lowercase=True)
    assert small.vocab == ("the",) and small.encode(["THE DOG"]).tolist() == [[2, 1, 0, 0]]


def test_record_round_trip_and_malformed_records() -> None:
    tok = fit(["hello world"], level="word", max_length=7, lowercase=True)
    assert Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict()))) == tok
    for bad in ({"level": "byte"}, {**tok.to_dict(), "vocab": ["a", "a"]}, [1]):
        with pytest.raises(DataError, match="tokenizer record"):
            Tokenizer.from_dict(bad, "model.json")
    meta = RunMeta(name="t", tokenizer=tok)
    assert RunMeta.from_json(meta.to_json()) == meta
    with pytest.raises(DataError, match="rows of 7 ids"):
        meta.check((9,), (2,), "model.json")


def test_length_percentile_is_nearest_rank() -> None:
    assert length_percentile(list(range(1, 101))) == 95
    assert length_percentile([3]) == 3 and length_percentile([]) == 1


# --- the source -------------------------------------------------------------------------------


def test_vocabulary_comes_from_the_training_split_only(tmp_path: Path) -> None:
    from netspec.compiler import compile_file
    from netspec.data.pipeline import SplitOptions, prepare

    spec = project(tmp_path)
    # The test file alone has the letter q: it must be unknown, never in the vocabulary.
    (tmp_path / "test.csv").write_text("sentence,lang\nquiche quiche,fr\nthe cat,en\n")
    graph = compile_file(spec)
    data = prepare(graph.train, SplitOptions.of(graph))
    tok = data.tokenizer
    assert tok is not None and "q" not in tok.vocab and tok.max_length == 24
    assert data.train.x.shape == (48, 24) and data.val is not None and data.val.x.shape == (12, 24)
    assert data.test is not None and data.test.x[0, 0] == 1  # q: unknown
    assert data.classes == ("en", "fr")


@pytest.mark.slow  # trains, evaluates twice, exports, inspects and predicts (~4 s)
def test_train_export_predict_strings(tmp_path: Path) -> None:
    """One epoch on a tiny CSV; the record, the card, the sidecar; predict --text and Predictor
    on strings give the in-memory model's probabilities."""
    import torch

    import netspec
    from netspec.backends.export.card import Card
    from netspec.predictor import Predictor

    spec = project(tmp_path)
    run = netspec.load_spec(spec).train(tmp_path / "run", echo=lambda line: None)
    meta = RunMeta.read(tmp_path / "run" / "model.json")
    tok = meta.tokenizer
    assert tok is not None and tok.level == "char" and tok.max_length == 24
    assert meta.table is not None and meta.table.columns[0][0] == "sentence"
    # evaluate re-reads the data with the recorded tokenizer (new data too: never refitted).
    result = invoke("evaluate", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    (tmp_path / "new.csv").write_text("lang,sentence\nfr,quiche au chat\nen,the cat\n")
    result = invoke("evaluate", tmp_path / "run", "--data", tmp_path / "new.csv", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["samples"] == 2
    onnx_path = run.export_onnx()
    import onnx

    card = Card.of(onnx.load(str(onnx_path)))
    assert card.tokenizer == tok
    side = json.loads(Path(f"{onnx_path}.json").read_text())
    assert side["tokenizer"]["vocab"] == list(tok.vocab) and side["tokenizer"]["pad_id"] == 0
    shown = invoke("inspect", onnx_path).output
    assert f"tokenizer: char tokens, {tok.size} ids" in shown and "rows of 24" in shown
    texts = ["le chat est grand", "the dog is big and small", "zzzz"]
    module = run.module.eval()
    with torch.no_grad():
        want = module(torch.tensor(tok.encode(texts), dtype=torch.float32)).numpy()
    got = Predictor(onnx_path, top_k=2).predict(texts)
    own = run.predict(texts, top_k=2, device="cpu")  # the run's module on the same strings
    assert [r["input"] for r in own] == [r["input"] for r in got]
    for a, b in zip(own, got):
        assert a["predictions"][0]["label"] == b["predictions"][0]["label"]
        assert a["predictions"][0]["score"] == pytest.approx(b["predictions"][0]["score"], abs=1e-5)
    assert [r["input"] for r in got] == ["inputs[0]", "inputs[1]", "inputs[2]"]
    for row, p in zip(got, want):
        best = int(np.argmax(p))
        assert row["predictions"][0]["label"] == ("en", "fr")[best]
        assert row["predictions"][0]["score"] == pytest.approx(float(p[best]), abs=1e-5)
    result = invoke("predict", onnx_path, "--text", texts[0], "--text", texts[2], "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["input"] for r in out] == ["text[0]", "text[1]"]
    assert out[0]["predictions"][0]["score"] == got[0]["predictions"][0]["score"]
    assert "every char token is unknown" in result.output  # zzzz: a note, still a result
    # A .txt file (one text per line) and a CSV with the training file's text column.
    (tmp_path / "in.txt").write_text(f"{texts[0]}\n{texts[1]}\n", encoding="utf-8")
    result = invoke("predict", onnx_path, tmp_path / "in.txt", tmp_path / "test.csv", "--json")
    assert result.exit_code == 0, result.output
    names = [r["input"] for r in json.loads(result.stdout)]
    assert names[:2] == [f"{tmp_path / 'in.txt'}:1", f"{tmp_path / 'in.txt'}:2"]
    assert len(names) == 22
    # Bad inputs at predict: each a located message, the others still run, exit 2.
    (tmp_path / "bad.txt").write_bytes(b"ok\nla ma\xe9son\n")
    fails(invoke("predict", onnx_path, tmp_path / "bad.txt"), "bad.txt:2:6", "not UTF-8")
    fails(invoke("predict", onnx_path, "--text", "  ", "--text", "ok"), "text[0]", "empty text")
    (tmp_path / "other.csv").write_text("phrase,lang\nle chat,fr\n")
    fails(invoke("predict", onnx_path, tmp_path / "other.csv"), "no column 'sentence'")
    long = "le chat " * 20
    result = invoke("predict", onnx_path, "--text", long)
    assert result.exit_code == 0 and "cut to it" in result.output
    _js_tokenizes_like_python(onnx_path, tmp_path, [*texts, long, "Ça va? naïve 日本語"])


def test_text_for_a_model_without_a_tokenizer(quickstart_onnx: Path) -> None:
    fails(invoke("predict", quickstart_onnx, "--text", "hello"), "takes no texts")


def _js_tokenizes_like_python(onnx_path: Path, tmp_path: Path, texts: list[str]) -> None:
    """docs/js/predict.mjs's tokenizer (`--ids`: no onnxruntime needed) gives Python's ids."""
    node = shutil.which("node")
    if node is None:
        return
    sidecar = json.loads(Path(f"{onnx_path}.json").read_text())
    for level in ("char", "word"):
        tok = fit(texts, level=level, max_length=12, lowercase=level == "word")
        side = tmp_path / f"{level}.onnx.json"
        side.write_text(json.dumps({**sidecar, "tokenizer": tok.to_dict()}))
        args = [a for t in texts for a in ("--text", t)]
        done = subprocess.run(
            [node, str(EXAMPLE), str(side)[: -len(".json")], "--ids", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == tok.encode(texts).tolist()


# --- bad data ---------------------------------------------------------------------------------


def refused(tmp_path: Path, *needles: str, spec: str = SPEC, problems: int = 1) -> str:
    result = invoke("train", tmp_path / "spec.yaml", "--out", tmp_path / "run")
    return fails(result, *needles, problems=problems)


def test_empty_texts_and_labels_name_their_rows(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / "train.csv").write_text('sentence,lang\nthe cat,en\n"  ",fr\nle chat,\n')
    out = refused(tmp_path, "empty text (column 'sentence')", problems=1)
    assert "train.csv:3" in out
    (tmp_path / "train.csv").write_text("sentence,lang\nthe cat,en\nle chat,\n")
    assert "train.csv:3" in refused(tmp_path, "empty label (column 'lang')")


def test_invalid_utf8_and_missing_columns(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / "train.csv").write_bytes(b"sentence,lang\nla ma\xe9son,fr\n")
    refused(tmp_path, "train.csv", "not UTF-8")
    write_csv(tmp_path / "train.csv", 10, 0, header="phrase,lang")
    refused(tmp_path, "unknown text column 'sentence'", "phrase")
    write_csv(tmp_path / "train.csv", 10, 0, header="sentence,language")
    refused(tmp_path, "unknown label column 'lang'", "did you mean 'language'")


def test_input_and_embedding_must_fit_the_tokenizer(tmp_path: Path) -> None:
    project(tmp_path, SPEC.replace("tokenizer: {level: char}", "tokenizer: {max_length: 30}"))
    refused(tmp_path, "rows of 30 token ids", "input: [30]")
    project(tmp_path, SPEC.replace("input_dim: 40", "input_dim: 5"))
    refused(tmp_path, "has input_dim 5", "input_dim: ")
    project(tmp_path, SPEC.replace("  epochs: 1", "  preprocess: {rescale: 1/255}\n  epochs: 1"))
    refused(tmp_path, "never scaled")


# --- the real data set (shared/data/langid) ---------------------------------------------------


def test_langid_spec_reads_the_real_data(tmp_path: Path) -> None:
    train = SHARED_DATA / "langid" / "train.csv"
    if not train.is_file():
        pytest.skip(f"{train} not found (see shared/data/SOURCES.md)")
    from netspec.compiler import compile_file
    from netspec.data.pipeline import SplitOptions, load_splits

    graph = compile_file(REPO / "specs" / "langid_cnn.yaml")
    splits = load_splits(graph.train, SplitOptions.of(graph))
    tok = splits.tokenizer
    assert tok is not None and tok.max_length == 96 and tok.size <= 256
    assert splits.test is not None and len(splits.test) == 7219
    assert splits.train.classes is not None and len(splits.train.classes) == 12


def test_utf8_texts_are_read_a_block_at_a_time_and_equal_the_whole_reading(
    tmp_path: Path,
) -> None:
    """load_texts reads a UTF-8 file by the streamed texts' pass (text_stream.read_texts),
    keeping the two columns alone; a UTF-16 file is decoded whole. The same file both ways
    gives the same data, and the pass's peak Python memory (tracemalloc) is under half the whole
    reading's, which held every row (here 0.8 MB against 2.6 MB; a 20.6 MB file of 345,372
    rows peaked 220 MB that way, 79 MB now: 3.8x the file, under auto's estimate of 4x)."""
    import tracemalloc
    from unittest import mock

    from netspec.data import csv_records, text_stream
    from netspec.data.text import load_texts

    rng = random.Random(0)
    words = ["le", "chat", "the", "dog", "der", "hund", "una", "casa", "x" * 40]
    rows = [f"{i},{' '.join(rng.choices(words, k=rng.randint(1, 12)))},{rng.choice('abc')}"
            for i in range(5_000)]  # fmt: skip
    text = "id,text,label\n" + "\n".join(rows) + "\n"
    (tmp_path / "u8.csv").write_text(text, encoding="utf-8")
    (tmp_path / "u16.csv").write_text(text, encoding="utf-16")
    peaks, loaded = [], []
    # Blocks and label chunks smaller than the file, as 1 MB and 65,536 rows are against a big one.
    with (
        mock.patch.object(csv_records, "BLOCK", 1 << 12),
        mock.patch.object(text_stream, "ROWS", 250),
    ):
        for name in ("u8.csv", "u16.csv"):
            tracemalloc.start()
            try:
                data = load_texts(tmp_path / name, text="text", label="label")
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
            loaded.append((list(data.x), data.y.tolist(), data.classes, data.notes, data.table))
    assert loaded[0] == loaded[1] and len(loaded[0][0]) == 5_000
    assert loaded[0][2] == ("a", "b", "c") and loaded[0][0][0] == rows[0].split(",")[1]
    assert peaks[0] < peaks[1] / 2, peaks
