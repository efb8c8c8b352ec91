"""Streaming CSV tables and texts: a table's features from a disk cache written in one pass, or
rows parsed on demand by byte offset; texts read by byte offset, their ids made on demand or
cached; all train exactly as the data read into memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import fails, invoke, make_trainer, tiny_spec, trains_as_in_memory, write_spec

from netspec.backends.training.loader import Streamed
from netspec.data import table_stream
from netspec.data.stream import Lazy
from netspec.data.table import load_csv
from netspec.data.table_stream import RowReader, stream_csv
from netspec.errors import DataError

pytestmark = pytest.mark.usefixtures("no_plots", "cache_dir")


def write_table(path: Path, n: int = 60) -> Path:
    """A table with what the in-memory reading handles: a BOM, CRLF, a numeric and a text feature,
    thousands separators, a quoted cell over two lines, a blank line, rows with missing values."""
    rng = np.random.default_rng(3)
    lines = ["size,count,colour,label"]
    for i in range(n):
        label = int(rng.integers(0, 3))
        size = "NA" if i == 7 else f"{label + rng.normal(0, 0.3):.4f}"
        colour = '"dark\nred"' if i % 9 == 4 else ["red", "green", "blue"][(i + label) % 3]
        lines.append(f'{size},"{rng.integers(900, 1200):,}",{colour},{label}')
    lines.insert(20, "")
    path.write_text("\ufeff" + "\r\n".join(lines) + "\r\n", newline="")
    return path


def table_spec(path: Path, cache: str, workers: int = 0) -> str:
    data = f"{{source: csv, path: {path}, target: label, val: 0.25, cache: {cache}, workers: {workers}}}"
    layers = ("dense: {units: 8, activation: relu}", "dense: {units: 3, activation: softmax}")
    return tiny_spec(
        layers, input="[6]", data=data, batch_size=8, epochs=1, preprocess="{normalize: dataset}"
    )


def test_the_pass_gives_load_csvs_table_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_table(tmp_path / "t.csv")
    monkeypatch.setattr(table_stream, "ROWS", 7)  # many chunks
    ram = load_csv(path, target="label")
    assert any("thousands separators" in note for note in ram.notes)
    for cache in ("none", "disk", "disk"):
        data = stream_csv(path, target="label", cache=cache)
        assert isinstance(data.x, Lazy)
        np.testing.assert_array_equal(np.asarray(data.x), ram.x)
        np.testing.assert_array_equal(data.y, ram.y)
        assert (data.classes, data.feature_names) == (ram.classes, ram.feature_names)
        assert data.table == ram.table and data.notes[: len(ram.notes)] == ram.notes
    assert "read from the disk cache" in data.notes[-1]
    assert isinstance(stream_csv(path, target="label").x.reader, RowReader)


def test_streamed_tables_train_bit_identically(tmp_path: Path, cache_dir: Path) -> None:
    path = write_table(tmp_path / "t.csv")

    def check(t, ram) -> None:
        assert t.data.preprocessing == ram.data.preprocessing
        np.testing.assert_array_equal(np.asarray(t.data.val.x), ram.data.val.x)

    def make(cache: str, workers: int = 0):
        return make_trainer(tmp_path, table_spec(path, cache, workers), out=f"{cache}{workers}")

    # disk's features are a memory-mapped array: read by the training process, whatever workers
    trains_as_in_memory(make, check)
    assert len(list(cache_dir.glob("*.npy"))) == 2  # the features and the labels, written once
    assert not list(cache_dir.glob("*.tmp"))


def test_a_stale_or_half_written_cache_is_rebuilt(tmp_path: Path, cache_dir: Path) -> None:
    path = write_table(tmp_path / "t.csv")
    stream_csv(path, target="label", cache="disk")
    (marker,) = cache_dir.glob("*.done")
    marker.unlink()  # a run killed before its marker: never read
    again = stream_csv(path, target="label", cache="disk")
    assert "written once" in again.notes[-1]
    write_table(path, n=64)  # an edited file is another key
    edited = stream_csv(path, target="label", cache="disk")
    assert "written once" in edited.notes[-1] and len(edited.y) == 63


def test_an_unwritable_cache_is_noted_and_rows_are_parsed(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    with pytest.MonkeyPatch.context() as m:
        m.setenv("NETSPEC_CACHE_DIR", str(blocked / "cache"))
        data = stream_csv(path, target="label", cache="disk")
    assert "could not be written" in data.notes[-1]
    assert isinstance(data.x.reader, RowReader)
    np.testing.assert_array_equal(np.asarray(data.x), load_csv(path, target="label").x)


def test_a_corrupt_row_mid_file_is_one_error_naming_file_and_line(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv")
    text = path.read_bytes().decode().split("\r\n")
    text[40] = "0.5,12,red"  # a row short of a field, on line 45 (quoted cells span two)
    path.write_text("\r\n".join(text), newline="")
    for cache in ("ram", "none", "disk"):
        spec = write_spec(tmp_path, table_spec(path, cache), name=f"{cache}.yaml")
        result = invoke("train", spec, "--out", tmp_path / cache)
        fails(result, f"{path}:45: error: row has 3 fields; expected 4")
    assert not list((tmp_path / "cache").glob("*"))  # nothing half-written left


def test_a_row_changed_after_the_pass_is_named(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.csv")
    data = stream_csv(path, target="label", cache="none")
    text = path.read_bytes().decode().replace("green", "grey")
    path.write_text(text, newline="")
    with pytest.raises(DataError, match="the file changed") as e:
        np.asarray(data.x)
    assert str(path) in e.value.format()


def test_auto_streams_a_table_past_a_quarter_of_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netspec.data import cache_choice

    path = write_table(tmp_path / "t.csv")
    monkeypatch.setattr(cache_choice, "available_memory", lambda: 4 * path.stat().st_size)
    t = make_trainer(tmp_path, table_spec(path, "auto"), out="auto")
    assert isinstance(t.x_train, Streamed)
    assert sum("over a quarter" in line for line in t.logs) == 1
    monkeypatch.setattr(cache_choice, "available_memory", lambda: 1 << 40)
    t = make_trainer(tmp_path, table_spec(path, "auto"), out="fits")
    assert isinstance(t.x_train, torch.Tensor)


# --- texts --------------------------------------------------------------------------------------


def text_spec(folder: Path, cache: str, workers: int = 0) -> str:
    from test_text import SPEC, write_csv

    write_csv(folder / "train.csv", 60, 0)
    write_csv(folder / "test.csv", 20, 1)
    extra = f"tokenizer: {{level: char}}\n    cache: {cache}\n    workers: {workers}"
    return SPEC.replace("tokenizer: {level: char}", extra).replace(
        "path: train.csv\n    test_path: test.csv",
        f"path: {folder / 'train.csv'}\n    test_path: {folder / 'test.csv'}",
    )


def test_streamed_texts_train_bit_identically(tmp_path: Path, cache_dir: Path) -> None:
    def check(t, ram) -> None:
        assert t.data.tokenizer == ram.data.tokenizer  # fitted in one pass over the split
        np.testing.assert_array_equal(np.asarray(t.data.test.x), ram.data.test.x)
        assert [n for n in t.logs if "cut to it" in n] == [n for n in ram.logs if "cut to it" in n]

    def make(cache: str, workers: int = 0):
        return make_trainer(tmp_path, text_spec(tmp_path, cache, workers), out=f"{cache}{workers}")

    trains_as_in_memory(make, check)
    assert len(list(cache_dir.glob("*.npy"))) == 3  # each split's ids, written once


def test_a_corrupt_text_row_mid_file_is_one_error_naming_file_and_line(tmp_path: Path) -> None:
    text = text_spec(tmp_path, "none")
    lines = (tmp_path / "train.csv").read_text().splitlines()
    lines[30] = '"le chat",fr,extra'
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    for cache in ("ram", "none"):
        spec = write_spec(tmp_path, text.replace("cache: none", f"cache: {cache}"), f"{cache}.yaml")
        result = invoke("train", spec, "--out", tmp_path / cache)
        fails(result, f"{tmp_path / 'train.csv'}:31: error: row has 3 fields; expected 2")


# --- .ts series ---------------------------------------------------------------------------------


def write_ts(path: Path, n: int, seed: int) -> Path:
    """n cases of 2 dimensions, 5 to 8 steps long, a few values missing, classes a b c."""
    rng = np.random.default_rng(seed)
    lines = ["# series", "@dimensions 2", "@missing true", "@classLabel true a b c", "@data"]
    for i in range(n):
        label = int(rng.integers(0, 3))
        dims = []
        for _ in range(2):
            values = [f"{label + v:.3f}" for v in rng.normal(0, 0.5, int(rng.integers(5, 9)))]
            if i % 7 == 3:
                values[2] = "?"
            dims.append(",".join(values))
        lines.append(":".join(dims) + f":{'abc'[label]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def ts_spec(folder: Path, cache: str, workers: int = 0) -> str:
    train, test = write_ts(folder / "s_TRAIN.ts", 40, 0), write_ts(folder / "s_TEST.ts", 12, 1)
    data = (
        f"{{source: ts, path: {train}, test_path: {test}, missing: interpolate, val: 0.25, "
        f"cache: {cache}, workers: {workers}}}"
    )
    layers = (
        "conv1d: {filters: 4, kernel: 3, padding: same, activation: relu}",
        "global_avgpool1d",
        "dense: {units: 3, activation: softmax}",
    )
    return tiny_spec(
        layers, input="[2, 8]", data=data, batch_size=8, epochs=1, preprocess="{normalize: dataset}"
    )


def test_streamed_series_train_bit_identically(tmp_path: Path, cache_dir: Path) -> None:
    def check(t, ram) -> None:
        assert t.data.preprocessing == ram.data.preprocessing
        assert [n for n in t.logs if "filled" in n] == [n for n in ram.logs if "filled" in n]
        np.testing.assert_array_equal(np.asarray(t.data.test.x), ram.data.test.x)

    def make(cache: str, workers: int = 0):
        return make_trainer(tmp_path, ts_spec(tmp_path, cache, workers), out=f"{cache}{workers}")

    trains_as_in_memory(make, check)
    assert len(list(cache_dir.glob("*.npy"))) == 2  # the training and the test file's cases


def test_a_corrupt_case_mid_file_is_one_error_naming_file_and_line(tmp_path: Path) -> None:
    text = ts_spec(tmp_path, "none")
    path = tmp_path / "s_TRAIN.ts"
    lines = path.read_text().splitlines()
    lines[20] = lines[20].replace(",", ",x", 1)
    path.write_text("\n".join(lines) + "\n")
    for cache in ("ram", "none", "disk"):
        spec = write_spec(tmp_path, text.replace("cache: none", f"cache: {cache}"), f"{cache}.yaml")
        result = invoke("train", spec, "--out", tmp_path / cache)
        fails(result, f"{path}:21: error: dimension 1, value 2: 'x")
