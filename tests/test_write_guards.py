"""Writers never touch a user's files: a folder holding files a command did not write is refused,
a file the user names is replaced atomically, and nothing else is (issue 20).

Each check runs before anything is loaded, so no run needs training here; predict's mask folder
is tested in test_predict_seg.py beside its other mask tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import fails, invoke

from netspec.errors import UsageError
from netspec.fileio import check_own_folder

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "iris_dnn.yaml"


def users_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes\n", encoding="utf-8")
    return folder


def untouched(folder: Path) -> None:
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "my notes\n"


def test_the_folder_rule(tmp_path: Path) -> None:
    owns = {"a.png"}.__contains__
    check_own_folder(tmp_path / "new", owns, "cmd")  # not there yet
    check_own_folder(tmp_path, owns, "cmd")  # empty
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / ".a.png.x1y2.tmp").write_bytes(b"")  # an interrupted atomic write
    check_own_folder(tmp_path, owns, "cmd")  # only its own files
    (tmp_path / "b.txt").write_text("")
    (tmp_path / "c.txt").write_text("")
    with pytest.raises(UsageError, match=r"holds files cmd did not write \('b.txt' and 1 more\)"):
        check_own_folder(tmp_path, owns, "cmd")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_own_folder(tmp_path / "b.txt", owns, "cmd")


def test_evaluate_refuses_a_folder_of_the_users(tmp_path: Path) -> None:
    folder = users_folder(tmp_path)
    result = invoke("evaluate", tmp_path / "run", "--out", folder, "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "usage" and error["file"] == str(folder)
    assert "notes.txt" in error["message"]
    untouched(folder)


def test_tune_refuses_a_folder_of_the_users(tmp_path: Path) -> None:
    folder = users_folder(tmp_path)
    fails(invoke("tune", SPEC, "--out", folder), "netspec tune will not write into", "notes.txt")
    untouched(folder)


def test_tune_accepts_its_own_study_folder(tmp_path: Path) -> None:
    from netspec.run_record import StudyLayout

    is_study_file = StudyLayout.owns
    names = ["study.db", "study.db-journal", "best.yaml", "trials.json", "history.png"]
    assert all(map(is_study_file, [*names, "importance.png", "trial-000", "trial-1234"]))
    assert not any(map(is_study_file, ["notes.txt", "trial-x", "best.yml", "spec.yaml"]))


def test_export_never_replaces_a_users_json_or_other_file(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    folder = users_folder(tmp_path)
    (folder / "model.onnx.json").write_text('{"mine": true}\n', encoding="utf-8")
    result = invoke("export", tmp_path / "run", "-o", folder / "model.onnx")
    fails(result, "will not replace", "model.onnx.json")
    assert (folder / "model.onnx.json").read_text(encoding="utf-8") == '{"mine": true}\n'
    (folder / "model.onnx.json").unlink()
    fails(invoke("export", tmp_path / "run", "-o", folder / "notes.txt"), "will not replace")
    untouched(folder)


@pytest.mark.parametrize(
    "args",
    [("graph", SPEC, "-o", "{out}/net.svg"), ("schema", "-o", "{out}/netspec.schema.json")],
    ids=["graph", "schema"],
)
def test_single_file_writers_write_the_named_file_only(tmp_path: Path, args: tuple) -> None:
    folder = users_folder(tmp_path)
    result = invoke(*(str(a).format(out=folder) for a in args))
    assert result.exit_code == 0, result.output
    named = Path(str(args[-1]).format(out=folder))
    assert sorted(p.name for p in folder.iterdir()) == sorted(["notes.txt", named.name])
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "my notes\n"
