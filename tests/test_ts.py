"""The `ts` data source: UCR/UEA `.ts` files, written small here and the real ones in shared/data."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import fails, invoke

from netspec.compiler import compile_file
from netspec.data.pipeline import SplitOptions, prepare
from netspec.data.ts import load_ts, read_ts
from netspec.errors import DataError

UCR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ucr"

UNI = """\
# a comment
@problemName Tiny
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 4
@classLabel true a b
@data
1,2,3,4:a
4,3,2,1:b
0.5,-1e-1,2.5E2,0:b
"""

MULTI = """\
@problemName Varied
@univariate false
@dimensions 2
@equalLength false
@classLabel true x y z
@data
1,2,3:10,20,30:z

1,2:5,6:x
1,2,3,4,5:1,1,1,1,1:y
"""

MISSING = """\
@univariate true
@missing true
@classLabel true 0 1
@data
1,?,3,?:0
?,2,4,6:1
"""


def ts(tmp_path: Path, text: str, name: str = "a_TRAIN.ts") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def refused(path: Path, *needles: str, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        load_ts(path, **kw)
    err = info.value
    assert len(err.problems) == 1
    text = str(err)
    for needle in needles:
        assert needle in text, text
    return err


def test_univariate_equal_length(tmp_path: Path) -> None:
    data = load_ts(ts(tmp_path, UNI))
    assert data.x.shape == (3, 1, 4) and data.x.dtype == np.float32
    assert data.classes == ("a", "b")
    assert data.y.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(data.x[2, 0], np.float32([0.5, -0.1, 250.0, 0.0]))
    assert data.notes == ()


def test_multivariate_unequal_length_is_zero_padded_at_the_end(tmp_path: Path) -> None:
    data = load_ts(ts(tmp_path, MULTI))
    assert data.x.shape == (3, 2, 5)
    assert data.classes == ("x", "y", "z")  # the header's order, not the order of the cases
    assert data.y.tolist() == [2, 0, 1]
    np.testing.assert_array_equal(data.x[1], [[1, 2, 0, 0, 0], [5, 6, 0, 0, 0]])
    assert any("length 2-5 zero-padded at the end to 5" in n for n in data.notes)


def test_a_fixed_length_cuts_longer_series(tmp_path: Path) -> None:
    data = load_ts(ts(tmp_path, MULTI), length=3)
    assert data.x.shape == (3, 2, 3)
    np.testing.assert_array_equal(data.x[2], [[1, 2, 3], [1, 1, 1]])
    assert any("1 longer ones cut to 3" in n for n in data.notes)


def test_a_test_file_is_padded_to_the_training_files_longest(tmp_path: Path) -> None:
    train = ts(tmp_path, MULTI)
    test = ts(tmp_path, MULTI.replace("1,2,3,4,5:1,1,1,1,1:y", "1:2:y"), "a_TEST.ts")
    data = load_ts(test, train=train)
    assert data.x.shape == (3, 2, 5)
    np.testing.assert_array_equal(data.x[2], [[1, 0, 0, 0, 0], [2, 0, 0, 0, 0]])


def test_missing_values_are_refused_with_a_hint(tmp_path: Path) -> None:
    err = refused(ts(tmp_path, MISSING), "missing value ('?') in dimension 1 at step 2")
    assert err.problems[0].line == 5
    assert "missing: zero" in (err.problems[0].hint or "")


def test_missing_values_filled_by_zeros_or_interpolation(tmp_path: Path) -> None:
    path = ts(tmp_path, MISSING)
    zero = load_ts(path, missing="zero")
    np.testing.assert_array_equal(zero.x[:, 0], [[1, 0, 3, 0], [0, 2, 4, 6]])
    line = load_ts(path, missing="interpolate")
    # Inside: linear between neighbours; at an end: the nearest value.
    np.testing.assert_array_equal(line.x[:, 0], [[1, 2, 3, 3], [2, 2, 4, 6]])
    assert any("3 missing values filled (interpolate)" in n for n in line.notes)


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (MULTI.replace("1,2:5,6:x", "1,2:x"), 9, "1 dimensions, but @dimensions (line 3) says 2"),
        (
            UNI.replace("4,3,2,1:b", "4,3:2,1:b"),
            11,
            "2 dimensions, but @univariate true (line 5) says 1",
        ),
        (MISSING.replace("@univariate true\n", "").replace("?,2", "1:2"), 5, "but line 4 has 1"),
        (UNI.replace("4,3,2,1:b", "4,3,2,1:c"), 11, "label 'c' is not one of @classLabel's (a, b)"),
        (UNI.replace("4,3,2,1:b", "4,3,x2,1:b"), 11, "value 3: 'x2' is not a number"),
        (UNI.replace("4,3,2,1:b", "4,3,inf,1:b"), 11, "'inf' is infinite"),
        (UNI.split("@data")[0] + "@data\n# nothing\n", 9, "no cases after @data"),
        (UNI.replace("@classLabel true a b", "@classLabel true"), 8, "names no classes"),
        (UNI.replace("@classLabel true a b", "@classLabel false"), 9, "no labels"),
        (UNI.replace("@timeStamps false", "@timeStamps true"), 3, "time stamps"),
        (UNI.replace("@missing false", "@missing maybe"), 4, "expected true or false"),
        ("1,2:a\n", 1, "before the @data line"),
        (UNI + "@data\n", 13, "a header line after @data"),
    ],
)
def test_bad_files_are_one_located_error(tmp_path: Path, text: str, line: int, needle: str) -> None:
    err = refused(ts(tmp_path, text), needle)
    assert err.problems[0].line == line
    assert err.problems[0].file == str(tmp_path / "a_TRAIN.ts")


def test_no_data_line_and_no_file(tmp_path: Path) -> None:
    refused(ts(tmp_path, UNI.split("@data")[0]), "no @data line")
    refused(tmp_path / "absent.ts", "no such file")


def test_test_file_with_other_dimensions_than_train(tmp_path: Path) -> None:
    train = ts(tmp_path, MULTI)
    test = ts(tmp_path, UNI, "a_TEST.ts")
    err = refused(test, "1 dimensions, but the training file a_TRAIN.ts has 2", train=train)
    assert err.problems[0].line == 10 and err.problems[0].file == str(test)


SPEC = """\
name: tiny_fcn
input: [2, 5]
layers:
  - conv1d: {filters: 4, kernel: 3, padding: same, activation: relu}
  - global_avgpool1d
  - dense: {units: 3, activation: softmax}
train:
  data: {source: ts, path: a_TRAIN.ts, test_path: a_TEST.ts, val: 0.0}
"""


def test_the_ts_source_in_a_spec(tmp_path: Path) -> None:
    ts(tmp_path, MULTI)
    ts(tmp_path, MULTI.replace("1,2:5,6:x", "1,2,3,4,5,6,7:5,6,7,8,9,1,2:x"), "a_TEST.ts")
    (tmp_path / "spec.yaml").write_text(SPEC)
    graph = compile_file(tmp_path / "spec.yaml")
    assert graph.train is not None
    p = prepare(graph.train, SplitOptions.of(graph))
    assert p.task == "multiclass" and p.classes == ("x", "y", "z")
    assert p.train.x.shape == (3, 2, 5) and p.test is not None and p.test.x.shape == (3, 2, 5)
    assert any("a_TEST.ts" in n and "cut to 5" in n for n in p.test.notes)


def test_a_bad_ts_file_exits_2_at_its_line(tmp_path: Path) -> None:
    ts(tmp_path, MULTI.replace("1,2:5,6:x", "1,2:5,6:w"))
    (tmp_path / "spec.yaml").write_text(SPEC.replace(", test_path: a_TEST.ts", ""))
    out = fails(invoke("train", tmp_path / "spec.yaml", "--out", tmp_path / "run"), "label 'w'")
    assert "a_TRAIN.ts:9" in out


# --- the real files (shared/data/ucr, SOURCES.md) ---------------------------------------------

REAL = [  # name, train, test, channels, length range, classes
    ("GunPoint", 50, 150, 1, (150, 150), 2),
    ("ItalyPowerDemand", 67, 1029, 1, (24, 24), 2),
    ("JapaneseVowels", 270, 370, 12, (7, 29), 9),
    ("BasicMotions", 40, 40, 6, (100, 100), 4),
]


@pytest.mark.parametrize(("name", "n_train", "n_test", "dims", "lengths", "k"), REAL, ids=str)
def test_real_ucr_files(
    name: str, n_train: int, n_test: int, dims: int, lengths: tuple[int, int], k: int
) -> None:
    train, test = UCR / name / f"{name}_TRAIN.ts", UCR / name / f"{name}_TEST.ts"
    if not train.is_file() or not test.is_file():
        pytest.skip(f"{train} and its _TEST.ts not found (see shared/data/SOURCES.md)")
    a, b = load_ts(train), load_ts(test, train=train)
    assert (len(a), len(b)) == (n_train, n_test)
    assert a.x.shape[1] == b.x.shape[1] == dims
    assert a.classes is not None and len(a.classes) == k
    assert sorted(set(a.y.tolist())) == list(range(k)) == sorted(set(b.y.tolist()))
    seen = read_ts(train).lengths + read_ts(test).lengths
    assert (min(seen), max(seen)) == lengths
    assert a.x.shape[2] == b.x.shape[2] == max(read_ts(train).lengths)
    assert np.isfinite(a.x).all() and np.isfinite(b.x).all()


def test_a_target_label_file_is_regression(tmp_path: Path) -> None:
    text = UNI.replace("@classLabel true a b", "@classLabel false\n@targetLabel true")
    data = load_ts(ts(tmp_path, text.replace(":a", ":1.5").replace(":b", ":-2")))
    assert data.classes is None and data.y.tolist() == [1.5, -2.0, -2.0]
    refused(ts(tmp_path, text.replace(":a", ":1.5")), "target 'b' is not a number")
