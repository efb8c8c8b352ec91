"""The JSON Schema (`netspec schema`): every shipped spec valid, every typo spec invalid, a
description for every key, and the completions an editor offers read from the schema itself."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, fails, invoke

from netspec.items import META_KEYS
from netspec.layers import KINDS, LAYER_KINDS
from netspec.layers.base import ACTIVATIONS
from netspec.schema import json_schema
from netspec.train_spec import LOSSES, METRICS, OPTIMIZERS, SCHEDULES

jsonschema = pytest.importorskip("jsonschema")

SHIPPED = sorted((REPO / "specs").glob("*.yaml"))  # search specs included: the schema allows them
TYPOS = sorted((Path(__file__).parent / "typo_specs").glob("*.yaml"))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json_schema()


def test_each_caller_gets_its_own_copy_of_the_schema() -> None:
    first = json_schema()  # built once per process, then copied
    first["$defs"].clear()
    first["properties"]["name"]["description"] = "changed"
    again = json_schema()
    assert again["$defs"] and again["properties"]["name"]["description"] != "changed"


@pytest.fixture(scope="module")
def validator(schema):
    # Not checked against the metaschema here (3.5-10 s for a schema this size):
    # test_the_schema_is_a_draft_2020_12_schema and check-jsonschema's run below do that.
    return jsonschema.Draft202012Validator(schema)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _errors(validator, data: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(data)]


# --- shipped specs and typo specs --------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_spec_is_valid(validator, path: Path):
    assert _errors(validator, _load(path)) == []


def test_the_typo_specs_are_one_line_away_from_a_shipped_spec():
    assert len(TYPOS) >= 20
    for path in TYPOS:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        base = first.split("specs/")[1].split(" ")[0]
        shipped = (REPO / "specs" / base).read_text(encoding="utf-8").splitlines()
        typo = path.read_text(encoding="utf-8").splitlines()[1:]
        assert len(typo) == len(shipped), path.name
        assert sum(a != b for a, b in zip(typo, shipped)) == 1, path.name


@pytest.mark.parametrize("path", TYPOS, ids=[p.stem for p in TYPOS])
def test_every_typo_spec_is_refused_by_the_schema_and_by_validate(validator, path: Path):
    assert _errors(validator, _load(path)), f"the schema accepts {path.name}"
    result = invoke("validate", path)
    assert result.exit_code == 2, result.output


def _mistake(path: Path) -> set[str]:
    """The words a typo spec's first line says were brought in (`old` -> `new`; or, where that
    pair shows no change, the description's own `wrong` for `right`)."""
    quoted = re.findall(r"`([^`]*)`", path.read_text(encoding="utf-8").splitlines()[0])
    word = re.compile(r'"[^"]*"|[\w$.+-]+')
    for new, old in ((quoted[-1], quoted[-2]), (quoted[0], quoted[1])):
        words = set(word.findall(new)) - set(word.findall(old))
        if words:
            return {w.strip('"') for w in words}
    raise AssertionError(path.name)


@pytest.mark.parametrize("path", TYPOS, ids=[p.stem for p in TYPOS])
def test_the_schema_message_of_a_typo_names_the_mistake(validator, path: Path):
    """As check-jsonschema prints them without --verbose: an error's own line (path: message)
    names the wrong word, not only a dump of the whole item "not valid under any" of its forms."""
    words = _mistake(path)
    lines = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(_load(path))]
    named = [
        line
        for line in lines
        if not line.split(": ", 1)[1].startswith(("{", "["))
        and any(re.search(rf"(?<![\w$]){re.escape(w)}(?!\w)", line) for w in words)
    ]
    assert named, (words, lines)


HAS_CHECK_JSONSCHEMA = importlib.util.find_spec("check_jsonschema") is not None


@pytest.mark.slow  # 3.5-10 s: the whole schema walked against the 2020-12 metaschema
@pytest.mark.skipif(HAS_CHECK_JSONSCHEMA, reason="check-jsonschema's run checks it (next test)")
def test_the_schema_is_a_draft_2020_12_schema(schema):
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.slow  # a check-jsonschema process: ~4 s on 2 busy cores (it checks the schema first)
@pytest.mark.skipif(not HAS_CHECK_JSONSCHEMA, reason="check-jsonschema not installed")
def test_check_jsonschema_accepts_the_specs_and_refuses_the_typos(tmp_path: Path):
    """The issue's own check: check-jsonschema with the file `netspec schema -o` writes, on
    the shipped specs and the typos at once (one process: the schema is checked once): every
    typo refused, nothing else. It is also the proof that the file is a valid Draft 2020-12
    schema: check-jsonschema checks the schema against its metaschema first, and on a schema
    error prints no JSON and exits 1."""
    out = tmp_path / "netspec.schema.json"
    assert invoke("schema", "-o", out).exit_code == 0
    cmd = [sys.executable, "-m", "check_jsonschema", "--schemafile", str(out), "-o", "JSON"]
    files = [str(p) for p in SHIPPED + TYPOS]
    done = subprocess.run([*cmd, *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    refused = {Path(e["filename"]) for e in json.loads(done.stdout)["errors"]}
    assert refused == set(TYPOS)


# --- layer items: kinds, block uses, groups, $params, search entries ----------------------------

BLOCK = {"params": {"f": None}, "layers": [{"conv2d": {"filters": "$f", "kernel": 3}}]}


def _spec(layers: list[Any], blocks: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {"name": "t", "input": [1, 8, 8], "layers": layers, **top} | (
        {"blocks": blocks} if blocks is not None else {}
    )


@pytest.mark.parametrize(
    "layers",
    [
        [{"pair": {"f": 8}}],
        [{"pair": {"f": 8}, "name": "p", "repeat": 2}],
        [{"pair": None}],
        [{"repeat": 2, "layers": [{"pair": {"f": 8}}, "relu"]}],
        [{"conv2d": {"filters": {"search": "int", "low": 8, "high": 32}, "kernel": 3}}],
        [{"pair": {"f": {"search": "choice", "values": [8, 16]}}}],
    ],
)
def test_valid_items(validator, layers):
    assert _errors(validator, _spec(layers, {"pair": BLOCK})) == []


@pytest.mark.parametrize(
    "layers",
    [
        [{"Conv2D": {"filters": 8, "kernel": 3}}],  # a kind in the wrong case is no block name
        [{"pair": {"f": 8}, "nmae": "p"}],  # two keys besides the item keys
        [{"pair": {"f": 8}, "conv2d": {"filters": 8, "kernel": 3}}],
        [{"pair": {"f": "$f"}}],  # a `$param` outside `blocks:`
        [{"conv2d": {"filters": "$f", "kernel": 3}}],
        [{"conv2d": None}],  # conv2d has required arguments
        [{"name": "x"}],  # no layer type
        [{"repeat": 2, "name": "g", "layers": ["relu"]}],  # a group has no name
        [{"conv2d": {"filters": {"search": "int", "low": 8}, "kernel": 3}}],  # no high
        [{"dense": {"units": 8}, "name": "input"}],  # `input` is the network's input
    ],
)
def test_invalid_items(validator, layers):
    assert _errors(validator, _spec(layers, {"pair": BLOCK}))


def test_without_blocks_every_item_key_is_a_layer_type(validator):
    """With no `blocks:`, a misspelt kind cannot pass for a block use."""
    assert _errors(validator, _spec([{"dens": {"units": 8}}]))
    assert _errors(validator, _spec([{"dens": {"units": 8}}], {"dens": BLOCK})) == []


def test_param_strings_only_inside_blocks(validator):
    inner = {"params": {"k": 3, "f": None}, "layers": [{"pair": {"f": "$f"}, "repeat": "$k"}]}
    assert _errors(validator, _spec([{"outer": {"f": 8}}], {"pair": BLOCK, "outer": inner})) == []
    assert _errors(validator, _spec([{"pair": {"f": 8}, "repeat": "$k"}], {"pair": BLOCK}))


def test_block_names_cannot_be_layer_types_or_item_keys(validator):
    for name in ("conv2d", "Dense", "name", "layers", "9lives"):
        assert _errors(validator, _spec([{"dense": {"units": 8}}], {name: BLOCK})), name


# --- train: the full model, shorthands included ------------------------------------------------


@pytest.mark.parametrize(
    "train",
    [
        {"data": {"source": "builtin"}, "loss": "cross_entropy + dice", "optimizer": "sgd"},
        {"data": {"source": "builtin"}, "schedule": "cosine", "channels_last": False},
        {"data": {"source": "builtin"}, "preprocess": {"rescale": "1/255"}},
        {"data": {"source": "builtin"}, "init": {"from": "runs/m1", "layers": ["conv*"]}},
    ],
)
def test_train_shorthands_are_valid(validator, train):
    assert _errors(validator, _spec(["flatten"], train=train)) == []


@pytest.mark.parametrize(
    "train",
    [
        {"data": {"source": "builtin"}, "loss": "cross_entropy + dcie"},
        {"data": {"source": "builtin"}, "preprocess": {"rescale": "one/255"}},
        {"data": {"source": "mnist"}},  # no path
        {"data": {"source": "builtin"}, "callbacks": {"early_stopping": {"patiense": 3}}},
        {"epochs": 3},  # no data
    ],
)
def test_train_mistakes_are_invalid(validator, train):
    assert _errors(validator, _spec(["flatten"], train=train))


# --- what an editor offers, read from the schema ------------------------------------------------


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _branches(schema: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every alternative of a value, through $refs, anyOf/oneOf, and the then/else and allOf
    of the if/then forms that pick a branch by the value's form, as an editor gathers them."""
    node = _resolve(schema, node)
    alts = node.get("anyOf", []) + node.get("oneOf", [])
    alts += [node[k] for k in ("then", "else") if k in node]
    alts += [part["then"] for part in node.get("allOf", []) if "then" in part]
    if not alts:
        return [node]
    own = [node] if "properties" in node or "enum" in node else []
    return own + [b for alt in alts for b in _branches(schema, alt)]


def _keys(schema, node) -> set[str]:
    return {k for b in _branches(schema, node) for k in b.get("properties", {})}


def _values(schema, node) -> set[Any]:
    out = set()
    for b in _branches(schema, node):
        out |= set(b.get("enum", [])) | ({b["const"]} if "const" in b else set())
    return out


def test_completions_offered_by_the_schema(schema):
    item = schema["else"]["properties"]["layers"]["items"]  # a spec without blocks
    assert set(KINDS) | set(META_KEYS) <= _keys(schema, item)  # after `- `
    assert {"flatten", "relu", "batchnorm"} <= _values(schema, item)  # bare layers
    conv2d = next(b for b in _branches(schema, item) if "conv2d" in b.get("properties", {}))
    args = conv2d["properties"]["conv2d"]
    assert {"filters", "kernel", "stride", "padding", "activation"} <= _keys(schema, args)
    activation = _resolve(schema, args)["properties"]["activation"]
    assert _values(schema, activation) == set(ACTIVATIONS)
    train = schema["properties"]["train"]
    assert {"data", "epochs", "optimizer", "loss", "metrics", "callbacks"} <= _keys(schema, train)
    props = next(b for b in _branches(schema, train) if "properties" in b)["properties"]
    assert set(OPTIMIZERS) <= _values(schema, props["optimizer"])
    assert set(OPTIMIZERS) == _values(schema, _keys_node(schema, props["optimizer"], "name"))
    assert set(SCHEDULES) <= _values(schema, props["schedule"])
    assert set(LOSSES) <= _values(schema, props["loss"])
    (metrics,) = [b for b in _branches(schema, props["metrics"]) if b.get("type") == "array"]
    assert set(METRICS) == _values(schema, _resolve(schema, metrics["items"]))
    sources = _values(schema, _keys_node(schema, props["data"], "source"))
    assert {"builtin", "mnist", "cifar10", "folder", "arrays", "csv", "mask_folder"} <= sources


def _keys_node(schema, node, key: str) -> dict[str, Any]:
    """The alternatives of `key` in every object branch of `node`, as one anyOf."""
    return {
        "anyOf": [
            b["properties"][key] for b in _branches(schema, node) if key in b.get("properties", {})
        ]
    }


def _properties(node: Any):
    if isinstance(node, dict):
        yield from node.get("properties", {}).items()
        for v in node.values():
            yield from _properties(v)
    elif isinstance(node, list):
        for v in node:
            yield from _properties(v)


def test_every_property_has_a_description(schema):
    props = list(_properties(schema))
    assert len(props) > 300
    missing = sorted({name for name, prop in props if not prop.get("description")})
    assert missing == []


def test_every_layer_kind_has_an_item_with_its_docstring(schema):
    for cls in LAYER_KINDS:
        item = schema["$defs"][f"{cls.__name__}Item"]
        assert next(iter(item["properties"])) == cls.kind
        assert cls.__doc__ and cls.__doc__.split()[0] in item["description"], cls.kind


# --- the command ---------------------------------------------------------------------------------


def test_schema_command_prints_and_writes_the_same_schema(tmp_path: Path, schema):
    printed = invoke("schema")
    assert printed.exit_code == 0
    assert json.loads(printed.stdout) == schema
    out = tmp_path / "editor" / "netspec.schema.json"
    result = invoke("schema", "-o", out)
    assert result.exit_code == 0 and f"wrote {out}" in result.stdout
    assert json.loads(out.read_text(encoding="utf-8")) == schema
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left


def test_schema_command_cannot_write_a_folder(tmp_path: Path):
    fails(invoke("schema", "-o", tmp_path), f"cannot write {tmp_path}")


# --- the README's editor section ----------------------------------------------------------------


def test_readme_modeline_and_vscode_setting_name_the_written_file(validator):
    readme = (REPO / "docs" / "language.md").read_text(encoding="utf-8")
    section = readme.split("## Editors", 1)[1].split("\n## ", 1)[0]
    assert "netspec schema -o netspec.schema.json" in section
    modeline = section.split("```yaml\n")[1].split("```")[0]
    first = modeline.splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=") and first.endswith(
        "/netspec.schema.json"
    )
    assert _errors(validator, yaml.safe_load(modeline)) == []
    settings = json.loads(section.split("```json\n")[1].split("```")[0])
    assert list(settings["yaml.schemas"]) == ["./netspec.schema.json"]


def test_readme_layer_table_names_every_argument():
    """The README's table and the models' descriptions tell the same story: a new argument is
    described in its model (test_every_property_has_a_description) and listed in the table."""
    readme = (REPO / "docs" / "language.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    for cls in LAYER_KINDS:
        base = cls.kind.removesuffix("1d").removesuffix("2d")
        row = " ".join(r for r in rows if f"`{cls.kind}" in r or f"`{base}1d/2d`" in r)
        assert row, cls.kind
        missing = [name for name in cls.model_fields if name not in row]
        assert missing == [], (cls.kind, missing)
