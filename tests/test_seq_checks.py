"""Sequence data checks: token ids for an embedding (train and predict), the layout label of
sequence inputs, and `.ts` files whose dimensions or labels do not fit (one located message)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import fails, invoke, random_weights

import netspec
from netspec.data.token_ids import bad_ids, card_entry, id_reader
from netspec.errors import DataError

REPO = Path(__file__).resolve().parents[1]

IDS_SPEC = """\
name: ids
input: [6]
layers:
  - embedding: {input_dim: 10, output_dim: 4}
  - seq_pool: {op: mean}
  - dense: {units: 2, activation: softmax}
train:
  data: {source: csv, path: t.csv, target: y, val: 0.0, test: 0.25}
  epochs: 1
  batch_size: 4
  log: {pictures: false}  # the report pictures take longer than the run
"""


def ids_csv(folder: Path, rows: list[list[float]]) -> None:
    lines = ["a,b,c,d,e,f,y"]
    lines += [",".join(f"{v:g}" for v in row) + f",{k % 2}" for k, row in enumerate(rows)]
    (folder / "t.csv").write_text("\n".join(lines) + "\n")


def good_rows(n: int = 16) -> list[list[float]]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 10, (n, 6)).astype(float).tolist()


def train(folder: Path, spec: str = IDS_SPEC):
    (folder / "spec.yaml").write_text(spec)
    return invoke("train", folder / "spec.yaml", "--out", folder / "run", "--no-progress")


# --- what bad ids are ------------------------------------------------------------------------


def test_bad_ids() -> None:
    assert bad_ids(np.array([[0, 3, 9]], dtype=np.float32), 10) is None
    assert bad_ids(np.zeros((0, 3)), 10) is None
    what, hint = bad_ids(np.array([[0, 3, 12], [1, 2, 3]], dtype=np.float32), 10)  # type: ignore[misc]
    assert "token id 12, but input_dim is 10" in what and "at least 13" in hint
    what, _ = bad_ids(np.array([[0, -1.0]]), 10)  # type: ignore[misc]
    assert "negative token id -1" in what
    what, hint = bad_ids(np.array([[0, 1], [2.5, 3]]), 10)  # type: ignore[misc]
    assert "non-integer values (2.5 in sample 1; 1 of 4 values)" in what
    assert "tokenizer" in hint
    what, _ = bad_ids(np.array([[np.nan, 1]]), 10)  # type: ignore[misc]
    assert "non-integer" in what


def test_only_an_embedding_reading_the_input_makes_token_ids() -> None:
    graph = netspec.compile_text(IDS_SPEC, "ids.yaml")
    assert id_reader(graph) is not None and card_entry(graph) == {
        "layer": "embedding",
        "input_dim": 10,
    }
    fcn = netspec.compile_file(REPO / "specs" / "ucr_fcn.yaml")
    assert id_reader(fcn) is None and card_entry(fcn) is None


# --- train -----------------------------------------------------------------------------------


def test_ids_out_of_range_stop_training_at_the_embedding(tmp_path: Path) -> None:
    rows = good_rows()
    rows[5][2] = 12
    ids_csv(tmp_path, rows)
    out = fails(train(tmp_path), "layer 'embedding' (embedding) reads token ids", "t.csv")
    assert "token id 12, but input_dim is 10" in out
    assert "raise the embedding's input_dim to at least 13" in out
    assert "spec.yaml:4:5" in out  # the embedding's line in the spec
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_float_data_into_an_embedding_is_refused(tmp_path: Path) -> None:
    rows = good_rows()
    rows[0][0] = 0.25
    ids_csv(tmp_path, rows)
    out = fails(train(tmp_path), "non-integer values (0.25", "tokenizer")
    assert "spec.yaml:4:5" in out


def test_a_ts_float_series_into_an_embedding_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a_TRAIN.ts").write_text(
        "@univariate true\n@classLabel true a b\n@data\n"
        + "".join(f"0.{k},1.5,2,3,4,5:{'ab'[k % 2]}\n" for k in range(8))
    )
    spec = IDS_SPEC.replace(
        "{source: csv, path: t.csv, target: y, val: 0.0, test: 0.25}",
        "{source: ts, path: a_TRAIN.ts, val: 0.0}",
    )
    out = fails(train(tmp_path, spec), "the train split of", "a_TRAIN.ts", "non-integer")
    assert "spec.yaml:4:5" in out


def test_rescaled_ids_are_refused(tmp_path: Path) -> None:
    ids_csv(tmp_path, good_rows())
    spec = IDS_SPEC.replace("  epochs: 1\n", "  epochs: 1\n  preprocess: {rescale: 1/255}\n")
    fails(train(tmp_path, spec), "train.preprocess rescales or normalizes", "remove `rescale`")


def test_valid_ids_train_and_predict_checks_the_exported_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from netspec.backends.predict.model import OnnxModel

    ids_csv(tmp_path, good_rows())
    result = train(tmp_path)
    assert result.exit_code == 0, result.output
    export = invoke("export", tmp_path / "run", "--out", tmp_path / "ids.onnx")
    assert export.exit_code == 0, export.output
    sidecar = json.loads((tmp_path / "ids.onnx.json").read_text())
    assert sidecar["token_ids"] == {"layer": "embedding", "input_dim": 10}
    assert sidecar["preprocessing"]["layout"] == "NT"
    model = OnnxModel(tmp_path / "ids.onnx")
    assert model.run(np.array([[0, 1, 2, 3, 4, 9]], dtype=np.float32)).shape == (1, 2)
    for bad, needle in (
        ([0, 1, 2, 3, 4, 10], "token id 10, but input_dim is 10"),
        ([0, 1, 2, 3, 4, -1], "negative token id -1"),  # onnxruntime would wrap it around
        ([0, 1, 2.5, 3, 4, 5], "non-integer values"),
    ):
        with pytest.raises(DataError) as info:
            model.run(np.array([bad], dtype=np.float32))
        assert needle in str(info.value) and "layer 'embedding'" in str(info.value)
    np.save(tmp_path / "x.npy", np.array([0, 1, 2, 3, 4, 11], dtype=np.float32))
    fails(invoke("predict", tmp_path / "ids.onnx", tmp_path / "x.npy"), "token id 11")
    # new data for the run (netspec evaluate --data) is checked as the training data was
    rows = good_rows(8)
    rows[3][1] = 30
    new = tmp_path / "new"
    new.mkdir()
    ids_csv(new, rows)
    out = fails(invoke("evaluate", tmp_path / "run", "--data", new / "t.csv"), "token id 30")
    assert "layer 'embedding' (embedding)" in out


# --- the layout of sequence inputs -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("input: [6]\nlayers:\n  - embedding: {input_dim: 10, output_dim: 4}", "NT"),
        ("input: [29, 12]\nlayers:\n  - lstm: {units: 4}", "NTF"),
        ("input: [29, 12]\nlayers:\n  - multi_head_attention: {num_heads: 2, key_dim: 4}", "NTF"),
        ("input: [29, 12]\nlayers:\n  - dense: {units: 4}", "NTF"),
        ("input: [12, 29]\nlayers:\n  - conv1d: {filters: 4, kernel: 3}", "NCL"),
        ("input: [12, 29]\nlayers:\n  - permute: {dims: [1, 0]}\n  - gru: {units: 4}", "NCL"),
        ("input: [6]\nlayers:\n  - dense: {units: 4}", "NC"),
        ("input: [1, 8, 8]\nlayers:\n  - flatten", "NCHW"),
    ],
)
def test_the_layout_label_says_how_the_network_reads_its_input(spec: str, expected: str) -> None:
    pytest.importorskip("onnx")
    from netspec.backends.export.model import layout, model_card

    graph = netspec.compile_text(f"name: l\n{spec}\n", "l.yaml")
    assert layout(graph) == expected
    record = {"preprocessing": {"input_shape": list(graph.input_shape)}}
    record["preprocessing"]["raw_shape"] = list(graph.input_shape)
    assert model_card(graph, record)["preprocessing"]["layout"] == expected


def test_the_shipped_sequence_specs_read_channels_first() -> None:
    pytest.importorskip("onnx")
    from netspec.backends.export.model import layout

    for name in ("ucr_fcn", "ucr_gru", "ucr_transformer"):
        assert layout(netspec.compile_file(REPO / "specs" / f"{name}.yaml")) == "NCL", name


def test_an_onnx_export_of_an_embedding_model_records_its_ids(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from netspec.backends.export.model import export_onnx

    graph = netspec.compile_text(IDS_SPEC, "ids.yaml")
    model = export_onnx(graph, random_weights(graph))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["netspec.token_ids"]) == {"layer": "embedding", "input_dim": 10}


# --- .ts files: dimensions and labels --------------------------------------------------------

TS = """\
@univariate false
@dimensions 2
@equalLength true
@classLabel true x y
@data
1,2,3:4,5,6:x
1,2,3:4,5,6:y
3,2,1:6,5,4:x
3,2,1:6,5,4:y
"""

TS3 = (
    TS.replace("@dimensions 2", "@dimensions 3").replace(":x", ":0,0,0:x").replace(":y", ":0,0,0:y")
)

TS_SPEC = """\
name: tiny_ts
input: [2, 3]
layers:
  - conv1d: {filters: 2, kernel: 2, padding: same}
  - global_avgpool1d
  - dense: {units: 2, activation: softmax}
train:
  data: {source: ts, path: a_TRAIN.ts, test_path: a_TEST.ts, val: 0.0}
  epochs: 1
"""


@pytest.mark.parametrize(
    ("train_text", "test_text", "file", "line", "needle"),
    [
        # a training case with one dimension where @dimensions says 2
        (TS.replace("3,2,1:6,5,4:x", "3,2,1:x"), TS, "a_TRAIN.ts", 8, "1 dimensions"),
        # a test file of other dimensions than the training file
        (TS, TS3, "a_TEST.ts", 6, "3 dimensions, but the training file a_TRAIN.ts has 2"),
        # a label missing from @classLabel, in the test file
        (TS, TS.replace("3,2,1:6,5,4:y", "3,2,1:6,5,4:w"), "a_TEST.ts", 9, "label 'w'"),
        # in the training file
        (TS.replace("1,2,3:4,5,6:y", "1,2,3:4,5,6:z"), TS, "a_TRAIN.ts", 7, "label 'z'"),
    ],
)
def test_ts_files_that_do_not_fit_are_one_located_error(
    tmp_path: Path, train_text: str, test_text: str, file: str, line: int, needle: str
) -> None:
    (tmp_path / "a_TRAIN.ts").write_text(textwrap.dedent(train_text))
    (tmp_path / "a_TEST.ts").write_text(textwrap.dedent(test_text))
    (tmp_path / "spec.yaml").write_text(TS_SPEC)
    out = fails(invoke("train", tmp_path / "spec.yaml", "--out", tmp_path / "run"), needle)
    assert f"{file}:{line}" in out, out
