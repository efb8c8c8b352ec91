"""The run record: the marker that makes a folder a run, RunMeta read and checked against the
network, and data paths that travel as values (issue 20 items 1, 3 and 5)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from helpers import REPO, SHARED_DATA, fails, invoke

from netspec.data.preprocess import Preprocessing
from netspec.errors import DataError
from netspec.runs import RunLayout, RunMeta, absolute_paths, is_run
from netspec.source import read

pytestmark = pytest.mark.usefixtures("no_plots")

IRIS = SHARED_DATA / "iris" / "iris.csv"

# Two classes, two output units: the smallest classifier trained from a CSV in a few seconds.
TWO = """\
name: two
input: [4]
layers:
  - dense: {{units: 8, activation: relu}}
  - dense: {{units: 2, activation: softmax}}
train:
  data: {{source: csv, path: "{path}", target: label, val: 0.2}}
  batch_size: 16
  epochs: 1
  seed: 0
  log: {{pictures: false}}  # the report pictures take longer than the run
"""


def two_class_csv(path: Path, n: int = 60) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["a,b,c,d,label"]
    rows += [f"{i % 7},{i % 5},{i % 3},{i % 11},{'yes' if i % 2 else 'no'}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


# --- the marker (issue 20 item 1) ---------------------------------------------------------------


def test_a_users_spec_yaml_is_not_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The reproduction: a folder holding the user's own spec.yaml.
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "p"
    p.mkdir()
    shutil.copy(REPO / "specs" / "iris_dnn.yaml", p / "spec.yaml")
    before = (p / "spec.yaml").read_bytes()
    spec = REPO / "specs" / "quickstart.yaml"
    fails(
        invoke("train", spec, "--set", "train.epochs=1", "--out", "p", "--resume"),
        "--resume: no checkpoint in p: it holds no run made by netspec train",
    )
    fails(invoke("train", spec, "--set", "train.epochs=1", "--out", "p"), "other files (spec.yaml)")
    assert (p / "spec.yaml").read_bytes() == before and [f.name for f in p.iterdir()] == [
        "spec.yaml"
    ]
    # --out . in such a folder: the same.
    monkeypatch.chdir(p)
    fails(
        invoke("train", spec, "--set", "train.epochs=1", "--out", ".", "--resume"), "holds no run"
    )
    fails(invoke("train", spec, "--set", "train.epochs=1", "--out", "."), "other files")
    assert (p / "spec.yaml").read_bytes() == before and [f.name for f in p.iterdir()] == [
        "spec.yaml"
    ]


def test_only_a_model_json_netspec_wrote_marks_a_run(tmp_path: Path) -> None:
    assert not is_run(tmp_path)
    (tmp_path / "model.json").write_text('{"name": "mine"}')  # the user's own model.json
    assert not is_run(tmp_path)
    (tmp_path / "model.json").write_text("not json")
    assert not is_run(tmp_path)
    RunMeta(name="mine", netspec_version="0.1.0").write(RunLayout(tmp_path).meta)
    assert is_run(tmp_path)


# --- RunMeta ------------------------------------------------------------------------------------

PRE = {"input_shape": [4], "raw_shape": [4], "scale": 1.0, "mean": [0.0] * 4, "std": [1.0] * 4}


def test_run_meta_round_trips_and_reads_old_records(tmp_path: Path) -> None:
    meta = RunMeta(
        name="n",
        netspec_version="0.1.0",
        task="binary",
        classes=("no", "yes"),
        input_shape=(4,),
        output_shape=(2,),
        head="softmax",
        preprocessing=Preprocessing.from_dict(PRE),
    )
    assert RunMeta.from_dict(json.loads(meta.to_json())) == meta
    # A record of an older version: no raw_range, no head, no table; unknown keys ignored.
    old = {"name": "n", "task": "binary", "classes": ["no", "yes"], "preprocessing": PRE, "x": 1}
    read = RunMeta.from_dict(old)
    assert read.preprocessing is not None and read.preprocessing.raw_range is None
    assert read.head is None and read.table is None and read.netspec_version is None


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        ([], "is a list, not a mapping"),
        ({"task": "multiclass"}, "has name None"),
        ({"name": "n", "task": "ranking"}, "has task 'ranking'"),
        ({"name": "n", "classes": "ab"}, "has classes 'ab'"),
        ({"name": "n", "preprocessing": {"raw_shape": [4]}}, "has no input_shape"),
        ({"name": "n", "preprocessing": {**PRE, "mean": "0"}}, "has mean '0'"),
    ],
)
def test_a_malformed_record_names_its_file(tmp_path: Path, record, needle: str) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(record))
    with pytest.raises(DataError, match=needle) as info:
        RunMeta.read(path)
    assert info.value.problems[0].file == str(path)


def test_the_record_is_checked_against_the_network() -> None:
    meta = RunMeta(name="n", task="multiclass", classes=("a", "b", "c"))
    meta.check((4,), (3,), "model.json")
    with pytest.raises(DataError, match=r"3 classes \(a, b, c\), but the network has 2 output"):
        meta.check((4,), (2,), "model.json")
    # One unit: a sigmoid's two classes.
    RunMeta(name="n", task="binary", classes=("no", "yes")).check((4,), (1,), "model.json")
    with pytest.raises(DataError, match=r"one unit: 2 classes"):
        RunMeta(name="n", task="binary", classes=("a", "b", "c")).check((4,), (1,), "m")
    with pytest.raises(DataError, match=r"input shape \[5\], but the network's input is \[4\]"):
        RunMeta(name="n", input_shape=(5,)).check((4,), (2,), "model.json")
    pre = Preprocessing.from_dict({**PRE, "mean": [0.0] * 3, "std": [1.0] * 3})
    with pytest.raises(DataError, match=r"3 channel means"):
        RunMeta(name="n", preprocessing=pre).check((4,), (2,), "model.json")


# --- paths travel as values (issue 20 item 3) ---------------------------------------------------


@pytest.mark.parametrize("folder", ["batch #3", "exp: 2"])
def test_quoted_paths_train(tmp_path: Path, folder: str) -> None:
    data = two_class_csv(tmp_path / folder / "data.csv")
    spec = tmp_path / "two.yaml"
    spec.write_text(textwrap.dedent(TWO.format(path=f"{folder}/data.csv")))
    assert absolute_paths(read(spec)).data["train"]["data"]["path"] == str(data)
    result = invoke("train", spec, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    recorded = read(tmp_path / "run" / "spec.yaml").data["train"]["data"]["path"]
    assert recorded == str(data)


# --- a tampered model.json (issue 20 item 5) ----------------------------------------------------


@pytest.fixture(scope="module")
def two_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("two")
    two_class_csv(folder / "data.csv")
    spec = folder / "two.yaml"
    spec.write_text(textwrap.dedent(TWO.format(path="data.csv")))
    result = invoke("train", spec, "--out", folder / "run")  # no pictures (TWO)
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_a_tampered_class_list_is_refused_on_export_and_evaluate(
    two_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(two_run, run)
    meta_path = run / "model.json"
    meta = json.loads(meta_path.read_text())
    assert meta["classes"] == ["no", "yes"]
    meta["classes"] = ["no", "yes", "maybe"]
    meta_path.write_text(json.dumps(meta))
    needle = "3 classes (no, yes, maybe), but the network has 2 output units"
    out = fails(invoke("export", run), str(meta_path), needle)
    assert not (run / "model.onnx").exists()
    fails(invoke("evaluate", run), str(meta_path), needle)
    assert "Traceback" not in out


def test_a_tampered_model_card_is_refused_by_predict(two_run: Path, tmp_path: Path) -> None:
    import onnx

    run = tmp_path / "run"
    shutil.copytree(two_run, run)
    assert invoke("export", run).exit_code == 0
    model = onnx.load(str(run / "model.onnx"))
    for prop in model.metadata_props:
        if prop.key == "netspec.classes":
            prop.value = json.dumps(["no", "yes", "maybe"])
    tampered = tmp_path / "tampered.onnx"
    onnx.save(model, str(tampered))
    sample = tmp_path / "x.npy"
    import numpy as np

    np.save(sample, np.zeros(4, np.float32))
    fails(invoke("predict", tampered, sample), str(tampered), "3 classes")


@pytest.mark.parametrize("command", ["predict", "bench"])
def test_a_model_card_that_is_not_text_is_one_error(
    command: str, quickstart_onnx: Path, tmp_path: Path
) -> None:
    """onnxruntime loads a model whose metadata bytes are not UTF-8 (a damaged copy) and raises
    UnicodeDecodeError only when they are read: predict and bench said so with a traceback."""
    import onnx

    model = onnx.load(str(quickstart_onnx))
    placeholder = "\N{SNOWMAN}" * 4  # 12 bytes in UTF-8, replaced below by 12 that are not
    model.metadata_props.add(key="netspec.note", value=placeholder)
    data = model.SerializeToString()
    assert data.count(placeholder.encode()) == 1
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(data.replace(placeholder.encode(), b"\xd6\xff" * 6))
    args = [damaged, damaged] if command == "predict" else [damaged]
    fails(
        invoke(command, *args),
        str(damaged),
        "metadata is not valid UTF-8",
        "export the model again",
    )
