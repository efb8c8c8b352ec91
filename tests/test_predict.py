"""`netspec predict`: an exported .onnx file and its metadata alone are enough to classify images,
arrays and CSV rows (with onnxruntime, never torch); binary, regression and segmentation outputs;
providers; clear errors; and the README's stand-alone app agrees with it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
Image = pytest.importorskip("PIL.Image")

from helpers import fails, imported_by, invoke, needs_digits, preprocessing_record, random_weights  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

import netspec  # noqa: E402
from netspec.backends.export.model import export_onnx  # noqa: E402
from netspec.backends.predict import session  # noqa: E402
from netspec.data.arraydata import ArrayData  # noqa: E402
from netspec.data.pipeline import _geometry  # noqa: E402
from netspec.data.preprocess import apply_values as export_preprocess  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
README = REPO / "docs" / "export.md"
LINE = re.compile(r"^(\S+) \(score = (\d\.\d{5})\)$")


def exported(tmp: Path, spec: str, meta: dict | None = None, **kw) -> Path:
    """A spec (text) exported with random weights and model.json-like metadata."""
    graph = netspec.compile_text(spec, "test.yaml")
    path = tmp / f"{graph.name}{'_b' + str(kw['batch']) if kw.get('batch') else ''}.onnx"
    path.write_bytes(export_onnx(graph, random_weights(graph), meta=meta, **kw).SerializeToString())
    return path


pre = preprocessing_record


def ort_run(model: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": np.asarray(x, dtype=np.float32)})[0]


def digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n scikit-learn digits as (n, 1, 8, 8) floats 0..16, and their labels."""
    needs_digits()
    from netspec.data.builtin import load_builtin

    data = load_builtin("digits")
    return data.x[:n], data.y[:n]


def parse_text(output: str) -> dict[str, list[tuple[str, float]]]:
    """label_image-style output -> {input: [(label, score), ...]}."""
    blocks: dict[str, list[tuple[str, float]]] = {}
    for block in output.strip().split("\n\n"):
        name, *lines = block.splitlines()
        matches = [LINE.match(line) for line in lines]
        assert all(matches), block
        blocks[name] = [(m[1], float(m[2])) for m in matches]  # type: ignore[index]
    return blocks


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], np.ndarray]:
    """Five digits as grayscale PNGs (the dataset's 0..16 pixel values), and the raw arrays."""
    x, _ = digits(5)
    folder = tmp_path_factory.mktemp("digits")
    paths = []
    for i, sample in enumerate(x):
        paths.append(folder / f"digit{i}.png")
        Image.fromarray(sample[0].astype(np.uint8)).save(paths[-1])
    return paths, x


def test_predict_images_top_k(quickstart_onnx: Path, digit_files) -> None:
    paths, x = digit_files
    result = invoke("predict", quickstart_onnx, *paths, "--top-k", "3")
    assert result.exit_code == 0, result.output
    shown = parse_text(result.output)
    assert list(shown) == [str(p) for p in paths]
    probs = ort_run(quickstart_onnx, x * 0.0625)  # the recorded preprocessing: rescale 1/16
    for path, p in zip(paths, probs):
        order = np.argsort(-p)[:3]
        assert [label for label, _ in shown[str(path)]] == [str(i) for i in order]
        assert [s for _, s in shown[str(path)]] == pytest.approx(p[order], abs=1e-5)


def test_predict_arrays_csv_and_json_agree(quickstart_onnx: Path, tmp_path: Path) -> None:
    x, _ = digits(4)
    np.save(tmp_path / "batch.npy", x)
    np.save(tmp_path / "one.npy", x[2])
    header = ",".join(f"pixel{i}" for i in range(64))
    np.savetxt(tmp_path / "rows.csv", x.reshape(4, -1), delimiter=",", header=header, comments="")
    args = [tmp_path / "batch.npy", tmp_path / "one.npy", tmp_path / "rows.csv"]
    result = invoke("predict", quickstart_onnx, *args, "--json", "--top-k", "10", "--batch", "3")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    names = [r["input"] for r in doc]
    batch, one, rows = (str(a) for a in args)
    assert names == [
        *(f"{batch}[{i}]" for i in range(4)),
        one,
        *(f"{rows}:{i}" for i in range(2, 6)),
    ]
    probs = ort_run(quickstart_onnx, x * 0.0625)
    for r, p in zip(doc, [*probs, probs[2], *probs]):
        assert [d["label"] for d in r["predictions"]] == [str(i) for i in np.argsort(-p)]
        assert sum(d["score"] for d in r["predictions"]) == pytest.approx(1.0, abs=1e-5)
        assert max(d["score"] for d in r["predictions"]) == pytest.approx(float(p.max()), abs=1e-6)


# What `netspec predict` must not import: torch, the spec compiler and its layer models, the
# training data pipeline (every loader), and pydantic (typer 0.29 imports it and builds a
# validator per option at every call, 1.26x -> 1.64x the plain script's start; pyproject pins
# typer below 0.29 for that).
NOT_FOR_PREDICT = (
    "torch",
    "pydantic",
    # The other commands' modules: Typer builds click options for every registered command.
    "netspec.cli.spec",
    "netspec.cli.train",
    "netspec.cli.export",
    "netspec.cli.visual",
    "netspec.compiler",
    "netspec.spec",
    "netspec.layers",
    "netspec.ir",
    "netspec.pydantic_errors",
    "netspec.data.pipeline",
    "netspec.data.folder",
    "yaml",
)


def cli_imports(*args: str, cwd: Path) -> tuple[str, set[str]]:
    """helpers.imported_by, checked to list the CLI's own modules."""
    out, imported = imported_by(*args, cwd=cwd, timeout=60)
    assert "netspec.cli" in imported  # the list is real
    return out, imported


def not_needed(imported: set[str], own: str = "netspec.cli.predict") -> list[str]:
    """The modules of NOT_FOR_PREDICT imported, but for `own` (the command's own CLI module)."""
    names = [n for n in NOT_FOR_PREDICT if n != own]
    nested = tuple(f"{n}." for n in names)
    return sorted(m for m in imported if m in names or m.startswith(nested))


def test_predict_and_inspect_import_only_what_they_need(
    quickstart_onnx: Path, tmp_path: Path
) -> None:
    x, _ = digits(2)
    np.save(tmp_path / "x.npy", x)
    out, imported = cli_imports(
        "predict", str(quickstart_onnx), str(tmp_path / "x.npy"), "--top-k", "1", cwd=tmp_path
    )
    assert out.startswith(f"{tmp_path / 'x.npy'}[0]\n")
    assert "onnxruntime" in imported
    assert not not_needed(imported)
    out, imported = cli_imports("inspect", str(quickstart_onnx), cwd=tmp_path)
    assert out.startswith(f"file:       {quickstart_onnx}\n")
    assert not not_needed(imported, own="netspec.cli.export")


def test_python_predictor_imports_only_what_predict_needs(quickstart_onnx: Path) -> None:
    # The API's Predictor is the same onnxruntime path: `import netspec` adds nothing to it.
    code = (
        "import sys, numpy as np, netspec\n"
        f"r = netspec.Predictor({str(quickstart_onnx)!r}).predict(np.zeros((1, 8, 8)))\n"
        "print(r[0]['input']); print(' '.join(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    name, imported = proc.stdout.splitlines()
    assert name == "inputs[0]"
    assert "onnxruntime" in imported.split()
    assert not not_needed(set(imported.split()))


def readme_app() -> str:
    section = README.read_text(encoding="utf-8").split("## An app without netspec", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_readme_app_agrees_with_predict(quickstart_onnx: Path, digit_files, tmp_path: Path) -> None:
    code = readme_app()
    assert "netspec" not in re.sub(r"\"netspec\.\w+\"|#.*", "", code)  # only metadata keys
    assert len([line for line in code.splitlines() if line.strip()]) <= 15
    (tmp_path / "app.py").write_text(code)
    paths, _ = digit_files
    for path in paths[:3]:
        proc = subprocess.run(
            [sys.executable, "app.py", str(quickstart_onnx), str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        app_label, app_score = LINE.match(proc.stdout.strip()).groups()  # type: ignore[union-attr]
        result = invoke("predict", quickstart_onnx, path, "--top-k", "1")
        ((label, score),) = parse_text(result.output)[str(path)]
        assert app_label == label
        assert float(app_score) == pytest.approx(score, abs=2e-5)


def test_rgb_model_with_normalization_end_to_end(tmp_path: Path) -> None:
    spec = """
name: colours
input: [3, 8, 8]
layers:
  - conv2d: {filters: 4, kernel: 3, activation: relu}
  - global_avgpool2d
  - dense: {units: 3, activation: softmax}
"""
    mean, std = [120.0, 110.0, 100.0], [60.0, 50.0, 40.0]
    record = pre([3, 8, 8], resize=[8, 8], mean=mean, std=std)
    meta = {"task": "multiclass", "classes": ["red", "green", "blue"], "preprocessing": record}
    model = exported(tmp_path, spec, meta)
    rgb = np.random.default_rng(1).integers(0, 256, (20, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "big.jpg", quality=95)
    decoded = np.asarray(Image.open(tmp_path / "big.jpg").convert("RGB")).transpose(2, 0, 1)
    spec_ns = SimpleNamespace(
        preprocess=SimpleNamespace(grayscale=False, resize=[8, 8], center_crop=None)
    )
    x = _geometry(
        ArrayData(x=decoded[None], y=np.zeros(1, np.int64), classes=None, source="test"), spec_ns
    ).x
    p = ort_run(model, export_preprocess(x, record, (3, 8, 8)))[0]
    result = invoke("predict", model, tmp_path / "big.jpg", "--json")
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.output)
    assert [d["label"] for d in doc["predictions"]] == [
        ["red", "green", "blue"][i] for i in np.argsort(-p)
    ]
    assert [d["score"] for d in doc["predictions"]] == pytest.approx(p[np.argsort(-p)], abs=1e-6)


# --- binary, logits, regression, segmentation ------------------------------------------------------

TABLE = """
name: {name}
input: [6]
layers:
  - dense: {{units: 8, activation: tanh}}
  - dense: {{units: {units}, activation: {act}}}
"""


def test_binary_sigmoid_and_logit_heads(tmp_path: Path) -> None:
    rows = np.random.default_rng(2).standard_normal((40, 6)).astype(np.float32)
    np.savetxt(tmp_path / "rows.csv", rows, delimiter=",")
    for act in ("sigmoid", "linear"):
        meta = {"task": "binary", "classes": ["ham", "spam"], "preprocessing": pre([6])}
        model = exported(tmp_path, TABLE.format(name=f"b_{act}", units=1, act=act), meta)
        logits_or_p = ort_run(model, rows)[:, 0]
        p = logits_or_p if act == "sigmoid" else 1 / (1 + np.exp(-logits_or_p))
        assert (p >= 0.5).any() and (p < 0.5).any()  # both branches are exercised
        result = invoke("predict", model, tmp_path / "rows.csv", "--json")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        assert len(doc) == 40
        for r, q in zip(doc, p):
            (d,) = r["predictions"]
            assert d["label"] == ("spam" if q >= 0.5 else "ham")
            assert d["score"] == pytest.approx(q if q >= 0.5 else 1 - q, abs=1e-6)


def test_logits_get_a_softmax(tmp_path: Path) -> None:
    meta = {"task": "multiclass", "classes": ["a", "b", "c", "d"], "preprocessing": pre([6])}
    model = exported(tmp_path, TABLE.format(name="logits", units=4, act="linear"), meta)
    x = np.random.default_rng(3).standard_normal((3, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    z = ort_run(model, x)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    result = invoke("predict", model, tmp_path / "x.npy", "--top-k", "2")
    assert result.exit_code == 0, result.output
    shown = parse_text(result.output)
    for i in range(3):
        order = np.argsort(-p[i])[:2]
        assert shown[f"{tmp_path / 'x.npy'}[{i}]"] == [
            ("abcd"[j], pytest.approx(p[i, j], abs=1e-5)) for j in order
        ]


def test_regression_values(tmp_path: Path) -> None:
    record = pre([6], scale=0.5, per_sample=True)
    model = exported(
        tmp_path,
        TABLE.format(name="reg", units=3, act="linear"),
        {"task": "regression", "preprocessing": record},
    )
    x = np.random.default_rng(4).standard_normal((5, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = ort_run(model, export_preprocess(x, record, (6,)))
    result = invoke("predict", model, tmp_path / "x.npy", "--json")
    assert result.exit_code == 0, result.output
    values = np.array([r["values"] for r in json.loads(result.output)])
    np.testing.assert_allclose(values, expected, atol=1e-6)
    text = invoke("predict", model, tmp_path / "x.npy").output.strip().split("\n\n")
    assert text[0].splitlines()[1].split() == [f"{v:.6g}" for v in expected[0]]


def test_segmentation_writes_palette_masks(tmp_path: Path) -> None:
    spec = """
name: seg
input: [3, 12, 10]
layers:
  - conv2d: {filters: 8, kernel: 3, padding: same, activation: relu}
  - conv2d: {filters: 4, kernel: 1}
  - softmax
"""
    classes = ["background", "road", "car", "tree"]
    record = pre([3, 12, 10], scale=1 / 255, mean=[0.5] * 3, std=[0.25] * 3)
    model = exported(tmp_path, spec, {"classes": classes, "preprocessing": record})
    rng = np.random.default_rng(5)
    inputs = []
    for folder in ("a", "b"):  # two inputs with one stem: two mask files
        (tmp_path / folder).mkdir()
        rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / folder / "street.png")
        inputs.append(rgb)
    out_dir = tmp_path / "masks"
    args = [tmp_path / "a" / "street.png", tmp_path / "b" / "street.png"]
    result = invoke("predict", model, *args, "--out", out_dir, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [r["mask"] for r in doc] == [
        str(out_dir / "street_mask.png"),
        str(out_dir / "street_1_mask.png"),
    ]
    for r, rgb in zip(doc, inputs):
        probs = ort_run(
            model, export_preprocess(rgb.transpose(2, 0, 1)[None], record, (3, 12, 10))
        )[0]
        expected = probs.argmax(0)
        assert len(np.unique(expected)) > 1
        mask = Image.open(r["mask"])
        assert mask.mode == "P" and mask.size == (10, 12)
        np.testing.assert_array_equal(np.asarray(mask), expected)
        # Each class in the colour training's predictions.png gives it (tab10: blue, orange...).
        assert mask.getpalette()[:12] == [31, 119, 180, 255, 127, 14, 44, 160, 44, 214, 39, 40]
        assert r["pixels"] == {classes[k]: int((expected == k).sum()) for k in np.unique(expected)}
    text = invoke("predict", model, args[0], "--out", out_dir)
    assert text.output.splitlines() == [str(args[0]), str(out_dir / "street_mask.png")]


# --- models without netspec metadata, fixed batches, fp16 ----------------------------------------


def test_fixed_batch_and_fp16_exports(tmp_path: Path) -> None:
    meta = {"task": "multiclass", "classes": list("abcd"), "preprocessing": pre([6])}
    text = TABLE.format(name="t", units=4, act="softmax")
    dynamic = exported(tmp_path, text, meta)
    fixed = exported(tmp_path, text, meta, batch=4)
    half = exported(tmp_path, text.replace("name: t", "name: h"), meta, fp16=True)
    x = np.random.default_rng(6).standard_normal((7, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)

    def scores(model: Path) -> np.ndarray:
        result = invoke("predict", model, tmp_path / "x.npy", "--json", "--top-k", "4")
        assert result.exit_code == 0, result.output
        rows = [
            {d["label"]: d["score"] for d in r["predictions"]} for r in json.loads(result.output)
        ]
        assert len(rows) == 7
        return np.array([[row[c] for c in "abcd"] for row in rows])

    reference = scores(dynamic)
    np.testing.assert_allclose(scores(fixed), reference, atol=1e-6)  # 7 samples in batches of 4
    np.testing.assert_allclose(scores(half), reference, atol=1e-2)


def test_a_model_without_metadata(tmp_path: Path) -> None:
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        initializer=[onnx.numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "plain.onnx")
    x = np.random.default_rng(7).standard_normal((2, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = invoke("predict", tmp_path / "plain.onnx", tmp_path / "x.npy", "--json")
    assert result.exit_code == 0, result.output
    values = [r["values"] for r in json.loads(result.output)]
    np.testing.assert_allclose(values, x @ w, rtol=1e-6)
    fails(
        invoke("predict", tmp_path / "plain.onnx", tmp_path / "x.npy", "--batch", "0"),
        "--batch 0",
    )


# --- providers -----------------------------------------------------------------------------------


class FakeSession:
    """Stands in for onnxruntime.InferenceSession: records the providers asked for."""

    asked: ClassVar[list[list[str]]] = []
    usable_cuda = True

    def __init__(self, path, options=None, providers=(), disabled_optimizers=()) -> None:
        FakeSession.asked.append(list(providers))
        self.providers = [p for p in providers if p != session.CUDA or self.usable_cuda]

    def get_providers(self) -> list[str]:
        return self.providers

    def disable_fallback(self) -> None:
        pass


def test_sessions_keep_to_omp_num_threads(
    quickstart_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OMP_NUM_THREADS caps onnxruntime's threads as it caps torch's; `threads` overrides it;
    unset or malformed, onnxruntime's own default (0: a thread per core)."""

    def threads(**kw: int) -> int:
        return (
            session.open_session(quickstart_onnx, "cpu", **kw)
            .get_session_options()
            .intra_op_num_threads
        )

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads() == 3
    assert threads(threads=2) == 2
    for value in ("0", "two", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert threads() == 0, value
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads() == 0


def test_provider_choice(quickstart_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = session.open_session(quickstart_onnx, "auto")
    if session.CUDA not in ort.get_available_providers():
        assert real.get_providers() == [session.CPU]
        fails(invoke("predict", quickstart_onnx, "x.npy", "--device", "cuda"), "netspec[gpu]")
    monkeypatch.setattr(ort, "get_available_providers", lambda: [session.CUDA, session.CPU])
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    FakeSession.asked = []
    assert session.open_session(quickstart_onnx, "auto").get_providers()[0] == session.CUDA
    assert session.open_session(quickstart_onnx, "cpu").get_providers() == [session.CPU]
    assert FakeSession.asked == [[session.CUDA, session.CPU], [session.CPU]]
    FakeSession.usable_cuda = False  # listed, but no device: onnxruntime falls back to the CPU
    try:
        assert session.open_session(quickstart_onnx, "auto").get_providers() == [session.CPU]
        with pytest.raises(session.SessionError, match="--device cuda: CUDA is not usable"):
            session.open_session(quickstart_onnx, "cuda")
    finally:
        FakeSession.usable_cuda = True
    fails(invoke("predict", quickstart_onnx, "x.npy", "--device", "tpu"), "--device tpu")


# --- errors --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = """
name: small
input: [1, 8, 8]
layers:
  - flatten
  - dense: {units: 3, activation: softmax}
"""
    meta = {"task": "multiclass", "classes": ["x", "y", "z"], "preprocessing": pre([1, 8, 8])}
    return exported(tmp_path_factory.mktemp("small"), spec, meta)


def test_model_errors(small_model: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8)))
    fails(
        invoke("predict", tmp_path / "none.onnx", tmp_path / "x.npy"),
        "none.onnx: error: no such model file",
    )
    (tmp_path / "bad.onnx").write_bytes(np.random.default_rng(0).bytes(2000))
    out = fails(invoke("predict", tmp_path / "bad.onnx", tmp_path / "x.npy"), "bad.onnx: error:")
    assert "cannot load the model" in out and "expected an ONNX model file" in out


def test_input_errors(small_model: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 5)))
    fails(
        invoke("predict", small_model, tmp_path / "x.npy"),
        "x.npy: error: array of shape (3, 5); expected (1, 8, 8) or (N, 1, 8, 8)",
    )
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    fails(invoke("predict", small_model, tmp_path / "objects.npy"), "never unpickled")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    fails(
        invoke("predict", small_model, tmp_path / "broken.png"),
        "broken.png: error: cannot decode the image",
    )
    (tmp_path / "notes.txt").write_text("7")
    fails(
        invoke("predict", small_model, tmp_path / "notes.txt"),
        "notes.txt: error: unsupported input file type '.txt'",
    )
    fails(
        invoke("predict", small_model, tmp_path / "gone.png"), "gone.png: error: no such image file"
    )
    (tmp_path / "rows.csv").write_text("1,2,3\n" + ",".join(["0"] * 64) + "\n")
    fails(
        invoke("predict", small_model, tmp_path / "rows.csv"),
        "rows.csv: error: row 1 has 3 values; expected 64",
    )
    (tmp_path / "words.csv").write_text(",".join(["0"] * 64) + "\n" + ",".join(["a"] * 64) + "\n")
    fails(invoke("predict", small_model, tmp_path / "words.csv"), "row 2: 'a' is not a number")
    fails(invoke("predict", small_model, tmp_path / "x.npy", "--top-k", "0"), "--top-k 0")


@pytest.mark.parametrize("crop", [None, "center"])
def test_folder_models_predict_raw_photos_as_the_loader_saw_them(
    tmp_path: Path, shared_data: Path, crop: str | None
) -> None:
    # Photos of any size: the folder loader's crop and resize are recorded and replayed exactly.
    from netspec.data.folder import load_image_folder

    folder = shared_data / "cats_dogs" / "test_set"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    graph = netspec.compile_text(
        "name: cd\ninput: [3, 24, 32]\nlayers:\n  - conv2d: {filters: 4, kernel: 3}\n"
        "  - global_avgpool2d\n  - dense: {units: 1, activation: sigmoid}\n",
        "cd.yaml",
    )
    steps = pre([3, 24, 32], image_size=[24, 32], image_crop=crop, scale=1 / 255)
    meta = {"task": "binary", "classes": ["cats", "dogs"], "preprocessing": steps}
    model = tmp_path / "cd.onnx"
    model.write_bytes(export_onnx(graph, random_weights(graph), meta=meta).SerializeToString())
    photo = sorted((folder / "dogs").glob("*.jpg"))[0]
    loaded = load_image_folder(folder, size=(24, 32), crop=crop)  # what training saw
    index = next(i for i, y in enumerate(loaded.y) if y == 1)  # the first dog, sorted by name
    expected = ort_run(model, loaded.x[index : index + 1].astype(np.float32) / 255)[0, 0]
    result = invoke("predict", model, photo, "--json")
    assert result.exit_code == 0, result.output
    (first,) = json.loads(result.output)
    top = first["predictions"][0]
    got = top["score"] if top["label"] == "dogs" else 1 - top["score"]
    assert got == pytest.approx(float(expected), abs=1e-6)


def _tiff_with_a_damaged_tag(path: Path, truncate: bool = False) -> Path:
    """An 8x8 grayscale TIFF whose ImageDescription claims 1 MiB of text (Pillow warns "Tag data
    larger than file" and skips the tag); `truncate`: its pixels cut off too (unreadable)."""
    import io
    import struct

    from PIL import Image
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    tags = ImageFileDirectory_v2()
    tags[270] = "a digit, scanned"  # ImageDescription: longer than 4 bytes, so stored apart
    buf = io.BytesIO()
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(
        buf, format="TIFF", tiffinfo=tags
    )
    data = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]  # Pillow writes little-endian ("II")
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * k
        if struct.unpack_from("<H", data, entry)[0] == 270:
            struct.pack_into("<I", data, entry + 4, 1 << 20)  # its count
    path.write_bytes(bytes(data[:16]) if truncate else bytes(data))
    return path


@pytest.mark.parametrize("damage", ["a tag", "the pixels"])
def test_a_damaged_tiff_prints_no_library_warning(
    damage: str, quickstart_onnx: Path, tmp_path: Path
) -> None:
    """`netspec predict` (a process, as users run it) on a TIFF with a damaged part: the
    prediction, or the one located error, and none of Pillow's warnings, which name neither
    the file nor the fix but Pillow's own source line."""
    image = _tiff_with_a_damaged_tag(tmp_path / "digit.tif", truncate=damage == "the pixels")
    done = subprocess.run(
        [sys.executable, "-m", "netspec", "predict", str(quickstart_onnx), str(image)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Warning" not in done.stderr and "PIL" not in done.stderr, done.stderr
    if damage == "a tag":
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(str(image))
    else:
        assert done.returncode == 2
        assert done.stderr.splitlines()[0].startswith(f"{image}: error: cannot decode the image")
