"""docs/sidecar.schema.json is the sidecar's contract: every export flavour's sidecar validates,
and sidecars that break it do not."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REPO, invoke

jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("onnx")

SCHEMA = REPO / "docs" / "sidecar.schema.json"


def validator() -> Any:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def assert_valid(doc: dict[str, Any]) -> None:
    errors = [f"{list(e.path)}: {e.message}" for e in validator().iter_errors(doc)]
    assert not errors, errors


@pytest.mark.parametrize(
    "flags",
    [
        (),
        ("--fp16",),
        ("--fp16", "--fp16-io"),
        ("--int8", "--max-drop", "100"),
        ("--batch-dim", "3"),
    ],
    ids=["plain", "fp16", "fp16-io", "int8", "batch3"],
)
def test_every_precision_validates(quickstart_run: Path, tmp_path: Path, flags: tuple) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "m.onnx"
    result = invoke("export", quickstart_run, "-o", out, *flags)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "m.onnx.json").read_text())
    assert_valid(doc)
    assert doc["preprocessing_in_graph"] is False


def test_an_ensemble_validates(quickstart_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    other = tmp_path / "other"
    shutil.copytree(quickstart_run, other)
    out = tmp_path / "e.onnx"
    result = invoke("export", quickstart_run, "--ensemble", other, "-o", out)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "e.onnx.json").read_text())
    assert_valid(doc)
    assert len(doc["ensemble"]) == 2


def _sidecar_of(spec: Path | str, meta: dict[str, Any]) -> dict[str, Any]:
    from netspec.backends.export.model import export_onnx
    from netspec.backends.export.sidecar import sidecar
    from netspec.compiler import compile_file, compile_text

    graph = compile_file(spec) if isinstance(spec, Path) else compile_text(spec)
    # Zeros: the sidecar reads no weight (random ones cost time and prove nothing here).
    zeros = {
        f"{node.name}.{name}": np.zeros(w.shape, np.float32)
        for node in graph.nodes
        for name, w in node.weights.items()
    }
    model = export_onnx(graph, zeros, meta=meta)
    return json.loads(json.dumps(sidecar(model, "m.onnx")))


def test_sequence_text_and_segmentation_models_validate() -> None:
    from helpers import preprocessing_record

    from netspec.data.tokenizer import fit

    seq = _sidecar_of(
        REPO / "specs" / "ucr_gru.yaml",
        {"task": "multiclass", "preprocessing": preprocessing_record([1, 150])},
    )
    assert_valid(seq)
    assert seq["preprocessing"]["layout"] == "NCL"
    tok = fit(["the cat", "le chat"], level="char", max_length=96)
    dynamic = _sidecar_of(  # a dynamic time axis of token ids
        REPO / "specs" / "langid_transformer.yaml",
        {
            "task": "multiclass",
            "tokenizer": tok.to_dict(),
            "preprocessing": preprocessing_record([None]),
        },
    )
    assert_valid(dynamic)
    assert "time" in dynamic["inputs"][0]["shape"] and dynamic["max_length"] >= 1
    tok = fit(["the cat", "le chat"], level="char", max_length=24)
    text = _sidecar_of(
        (REPO / "tests" / "test_text.py").read_text().split('SPEC = """\\\n', 1)[1].split('"""')[0],
        {
            "task": "multiclass",
            "classes": ["en", "fr"],
            "tokenizer": tok.to_dict(),
            "preprocessing": preprocessing_record([24]),
        },
    )
    assert_valid(text)
    assert text["tokenizer"]["level"] == "char" and text["token_ids"]["input_dim"] == 40
    # U-Net at 1/16 of its filters (4 to 64, the logits' 2 kept): the same layers, input and
    # tiling, without exporting 31M weights
    unet = (REPO / "specs" / "unet.yaml").read_text()
    seg = _sidecar_of(
        re.sub(r"\bfilters: (\d{2,})", lambda m: f"filters: {int(m[1]) // 16}", unet),
        {"task": "segmentation", "preprocessing": preprocessing_record([1, 64, 64])},
    )
    assert_valid(seg)
    assert seg["tiling"]["overlap"] >= 0


def test_broken_sidecars_do_not_validate(quickstart_onnx: Path) -> None:
    good = json.loads((quickstart_onnx.parent / "model.onnx.json").read_text())
    assert_valid(good)
    v = validator()

    def broken(change: Any) -> dict[str, Any]:
        doc = copy.deepcopy(good)
        change(doc)
        return doc

    older = broken(lambda d: d.pop("preprocessing_in_graph"))  # before the key: still valid
    assert v.is_valid(older)
    for doc in (
        broken(lambda d: d.update(precision="int4")),
        broken(lambda d: d.pop("head")),
        broken(lambda d: d.update(head=None)),
        broken(lambda d: d.update(preprocessing_in_graph=True)),  # without raw_input
        broken(lambda d: d.update(preprocessing_in_graph="yes")),
        broken(lambda d: d["preprocessing"].update(scale=0)),
        broken(lambda d: d["preprocessing"]["steps"].append({"step": "sharpen", "definition": ""})),
        broken(lambda d: d["inputs"][0].update(shape=[None, 64])),
    ):
        assert not v.is_valid(doc)
