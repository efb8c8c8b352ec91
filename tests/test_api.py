"""The Python API: load_spec (paths, text, overrides, located errors), summaries as data, text
and HTML, to_torch against the IR's shapes, load_run on a trained run, Predictor on its export,
and `import netspec` staying light."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import REPO, imported_by, invoke, needs_digits

import netspec
from netspec.errors import NetspecError

QUICKSTART = REPO / "specs" / "quickstart.yaml"

BRANCHY = """\
name: branchy
input: [3, 8, 8]
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same}
    name: a.b-c
  - conv2d: {filters: 4, kernel: 1}
    name: side
    inputs: [input]
  - add: {}
    inputs: [a.b-c, side]
  - flatten
  - dense: {units: 2}
    trainable: false
"""


def digits(n: int) -> np.ndarray:
    """The first n scikit-learn digits as raw (n, 1, 8, 8) values 0..16."""
    needs_digits()
    from netspec.data.builtin import load_builtin

    return load_builtin("digits").x[:n]


# --- load_spec ---------------------------------------------------------------------------------


def test_load_spec_from_a_path_and_from_text_give_the_same_network():
    from_path = netspec.load_spec(QUICKSTART)
    from_str_path = netspec.load_spec(str(QUICKSTART))
    from_text = netspec.load_spec(QUICKSTART.read_text(encoding="utf-8"))
    assert from_path.graph == from_str_path.graph
    assert from_text.graph.nodes == from_path.graph.nodes
    assert from_path.graph.file == str(QUICKSTART) and from_text.graph.file is None
    assert from_path.name == "quickstart"
    assert from_path.input_shape == (1, 8, 8) and from_path.output_shape == (10,)
    assert from_path.params == 151_306


def test_load_spec_overrides_dotted_or_double_underscore():
    dotted = netspec.load_spec(QUICKSTART, **{"train.epochs": 3, "train.optimizer.lr": 0.01})
    under = netspec.load_spec(QUICKSTART, train__epochs=3, train__optimizer__lr=0.01)
    for net in (dotted, under):
        assert net.graph.train.epochs == 3
        assert net.graph.train.optimizer.lr == 0.01
    wider = netspec.load_spec(QUICKSTART, **{"layers[0].conv2d.filters": 8})
    assert wider.graph.nodes[0].shape == (8, 8, 8)
    assert wider.params < netspec.load_spec(QUICKSTART).params


def test_load_spec_errors_are_netspec_errors_with_their_location(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninput: [4]\nlayers:\n  - dense: {units: 0}\n", encoding="utf-8")
    with pytest.raises(NetspecError, match=r"bad\.yaml:4:\d+: error: layers\[0\]\.dense\.units"):
        netspec.load_spec(bad)
    with pytest.raises(NetspecError, match=r"^<yaml text>:2:1: error: .*unknown key 'inptu'"):
        netspec.load_spec("name: x\ninptu: [4]\nlayers: [flatten]\n")
    with pytest.raises(NetspecError, match=r"missing\.yaml: error: no such file"):
        netspec.load_spec(tmp_path / "missing.yaml")
    with pytest.raises(
        NetspecError,
        match=r"^--set train\.epochs=-1: error: train\.epochs: expected greater than 0",
    ):
        netspec.load_spec(QUICKSTART, train__epochs=-1)
    with pytest.raises(NetspecError, match=r"a spec value is a number, string"):
        netspec.load_spec(QUICKSTART, train__epochs=object())


def test_load_spec_takes_a_dict_as_yaml_safe_load_gives_it():
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    from_dict = netspec.load_spec(data)
    from_file = netspec.load_spec(QUICKSTART)
    assert from_dict.summary().to_dict() == from_file.summary().to_dict()
    assert from_dict.graph.train == from_file.graph.train
    # Tuples, numpy numbers and overrides are taken as in a file; the dict is not changed.
    data["input"] = (1, 8, 8)
    data["layers"][0]["conv2d"]["filters"] = np.int64(8)
    wider = netspec.load_spec(data, train__epochs=2)
    assert wider.graph.nodes[0].shape == (8, 8, 8) and wider.graph.train.epochs == 2
    assert data["input"] == (1, 8, 8)
    bad = {"name": "x", "input": [4], "layers": [{"dense": {"units": 2}}, "sofmax"]}
    with pytest.raises(NetspecError, match=r"^<dict>:\d+:\d+: error: layers\[1\]\.sofmax: unknown"):
        netspec.load_spec(bad)
    with pytest.raises(NetspecError, match=r"^<dict>: error: layers\[0\]\.dense\.units: <object"):
        netspec.load_spec({"name": "x", "input": [4], "layers": [{"dense": {"units": object()}}]})
    with pytest.raises(NetspecError, match="load_spec takes a path, YAML text or a dict, not int"):
        netspec.load_spec(3)  # type: ignore[arg-type]


def test_a_str_is_a_file_when_one_exists_else_yaml_text_and_errors_say_which(
    tmp_path: Path, monkeypatch
):
    one_line = "{name: x, input: [4], layers: [{dense: {units: 2}}]}"
    assert netspec.load_spec(one_line).output_shape == (2,)  # one line of YAML, not a path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.yaml").write_text(one_line, encoding="utf-8")
    assert netspec.load_spec("net.yaml").graph.file == "net.yaml"
    with pytest.raises(NetspecError, match=r"^nett\.yaml: error: no such file, and not a spec as"):
        netspec.load_spec("nett.yaml")  # a misspelt path is not taken for a YAML string
    with pytest.raises(NetspecError, match=r"^<yaml text>:1:\d+: error: .*units"):
        netspec.load_spec("{name: x, input: [4], layers: [{dense: {units: 0}}]}")
    with pytest.raises(NetspecError, match=r"nett\.yaml: error: no such file$"):
        netspec.load_spec(Path("nett.yaml"))  # a Path is always a file


# --- summary -----------------------------------------------------------------------------------


def test_summary_rows_are_data_and_print_as_the_cli_table():
    net = netspec.load_spec(QUICKSTART)
    summary = net.summary()
    assert [r.name for r in summary.rows] == [n.name for n in net.graph.nodes]
    assert summary.rows[1].output_shape == (64, 8, 8) and summary.rows[1].params == 18_496
    assert summary.totals.total_params == sum(r.params for r in summary.rows) == net.params
    assert summary.to_dict()["total_params"] == net.params
    cli = invoke("summary", QUICKSTART)
    assert cli.exit_code == 0
    assert str(summary) == repr(summary) == cli.output


def test_summary_html_escapes_names_and_holds_every_row():
    net = netspec.load_spec(BRANCHY)
    page = net._repr_html_()
    assert page == net.summary()._repr_html_()
    assert "<b>Model: &quot;branchy&quot;</b>" in page
    assert "a.b-c (conv2d)" in page
    assert page.count("<tr>") == 1 + 1 + len(net.graph.nodes)  # header, input, layers
    assert "<th" in page and "Inputs" in page  # a branching network shows each layer's inputs
    assert "dense (dense) [frozen]" in page
    assert f"Total params: {net.params:,}" in page
    # Names are checked by the language, so an unsafe one can only come from a hand-made graph.
    odd = netspec.Summary(replace(net.graph, name="<script>&"))._repr_html_()
    assert "&lt;script&gt;&amp;" in odd and "<script>" not in odd


def test_summary_renders_as_a_rich_table():
    from rich.console import Console

    console = Console(width=120, record=True, color_system=None)
    console.print(netspec.load_spec(BRANCHY).summary())
    text = console.export_text()
    assert "┃ Layer (type)" in text and "dense (dense) [frozen]" in text  # not read as markup
    assert "Non-trainable params: 514" in text


# --- to_torch ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [QUICKSTART, BRANCHY], ids=["quickstart", "branchy"])
def test_to_torch_is_a_plain_module_with_the_ir_shapes(spec):
    torch = pytest.importorskip("torch")
    net = netspec.load_spec(spec)
    module = net.to_torch()
    assert isinstance(module, torch.nn.Module) and module.training
    assert sum(p.numel() for p in module.parameters()) == net.params
    with torch.no_grad():
        y = module.eval()(torch.zeros(3, *net.input_shape))
    assert tuple(y.shape) == (3, *net.output_shape)


def test_to_torch_logits_stops_before_the_head_with_the_same_weights():
    torch = pytest.importorskip("torch")
    net = netspec.load_spec(QUICKSTART)  # ends in softmax
    probs, logits = net.to_torch().eval(), net.to_torch(logits=True).eval()
    assert probs.state_dict().keys() == logits.state_dict().keys()
    logits.load_state_dict(probs.state_dict())
    x = torch.randn(4, *net.input_shape)
    with torch.no_grad():
        z = logits(x)
        torch.testing.assert_close(torch.softmax(z, 1), probs(x))
    assert not torch.allclose(z.sum(1), torch.ones(4))  # not probabilities
    linear = netspec.load_spec(BRANCHY)  # no softmax or sigmoid at the end: the same module
    a, b = linear.to_torch().eval(), linear.to_torch(logits=True).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(a(torch.ones(2, 3, 8, 8)), b(torch.ones(2, 3, 8, 8)))


def test_network_export_onnx_exports_a_module_trained_in_a_loop_of_ones_own(tmp_path: Path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    net = netspec.load_spec(QUICKSTART)
    torch.manual_seed(0)
    model = net.to_torch(logits=True)  # with CrossEntropyLoss, which applies the softmax
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.from_numpy(digits(32) / 16).float(), torch.arange(32) % 10
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    path = net.export_onnx(model, tmp_path / "own.onnx")
    assert path == tmp_path / "own.onnx" and (tmp_path / "own.onnx.json").is_file()
    results = netspec.Predictor(path, top_k=10).predict(x.numpy())  # the spec's softmax inside
    with torch.no_grad():
        want = torch.softmax(model.eval()(x), 1).numpy()
    for row, result in zip(want, results):
        scores = {p["label"]: p["score"] for p in result["predictions"]}
        np.testing.assert_allclose([scores[str(k)] for k in range(10)], row, atol=1e-5)
    with pytest.raises(NetspecError, match=r"takes the module that Network\.to_torch"):
        net.export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
    other = netspec.load_spec(REPO / "specs" / "mnist_cnn.yaml").to_torch()
    with pytest.raises(NetspecError, match="the weights do not fit the network 'quickstart'"):
        net.export_onnx(other, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_import_netspec_and_load_spec_do_not_load_torch_or_onnxruntime():
    code = (
        "import sys, netspec\n"
        f"net = netspec.load_spec({str(QUICKSTART)!r}); net.summary()._repr_html_(); str(net.summary())\n"
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'rich') if m in sys.modules))\n"
        "print('netspec.compiler' in sys.modules)\n"  # the check is real: what it used is there
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.splitlines()
    assert out == ["[]", "True"]


# What `netspec summary`, `validate` and `schema` never need: they start in under 0.5 s
# (docs/performance.md), and numpy alone took 60-140 ms of that.
NOT_FOR_SUMMARY = (
    "numpy", "torch", "onnx", "onnxruntime", "onnxscript", "PIL", "rich", "jsonschema",
)  # fmt: skip


def summary_imports(
    *args: str | Path, cwd: Path, used: str = "netspec.spec_report"
) -> tuple[str, list[str]]:
    """The stdout of `python -X importtime -m netspec ARGS`, and the NOT_FOR_SUMMARY modules
    (or their submodules) it imported; `used`, a module the command needs, shows the list is real."""
    out, imported = imported_by(*args, cwd=cwd)
    assert used in imported
    return out, sorted(m for m in imported if m.split(".")[0] in NOT_FOR_SUMMARY)


def test_light_commands_import_neither_numpy_nor_a_framework(tmp_path: Path):
    # Three kinds of spec: blocks and crops (the U-Net), a residual net, the quickstart.
    out, heavy = summary_imports("summary", REPO / "specs" / "unet.yaml", cwd=tmp_path)
    assert out.startswith('Model: "unet"') and not heavy
    out, heavy = summary_imports("summary", QUICKSTART, "--json", cwd=tmp_path)
    assert json.loads(out)["name"] == "quickstart" and not heavy
    out, heavy = summary_imports("validate", REPO / "specs" / "resnet_cifar.yaml", cwd=tmp_path)
    assert out.startswith("ok: ") and not heavy
    out, heavy = summary_imports("schema", cwd=tmp_path, used="netspec.cli")
    assert "$defs" in json.loads(out) and not heavy


def test_summary_of_a_run_imports_neither_numpy_nor_a_framework(quickstart_run: Path):
    out, heavy = summary_imports("summary", quickstart_run, cwd=quickstart_run.parent)
    assert out.startswith('Model: "quickstart"') and not heavy


def test_netspec_lists_the_api_and_documents_every_public_name():
    for name in ("load_spec", "load_run", "Network", "Run", "Predictor", "Summary"):
        assert name in netspec.__all__ and name in dir(netspec)
    for name in netspec.__all__:
        if name != "__version__":
            assert getattr(netspec, name).__doc__, name
    for cls in (netspec.Network, netspec.Run, netspec.Predictor, netspec.Summary):
        for attr, value in vars(cls).items():
            if not attr.startswith("_"):
                doc = getattr(value, "__doc__", None) or getattr(
                    getattr(value, "fget", None), "__doc__", None
                )
                assert doc, f"{cls.__name__}.{attr}"


# --- load_run on a trained run -------------------------------------------------------------------


def test_load_run_reads_metrics_and_history(quickstart_run: Path):
    run = netspec.load_run(quickstart_run)
    assert run.dir == quickstart_run
    recorded = json.loads((quickstart_run / "metrics.json").read_text())
    assert run.metrics == {k: v for k, v in recorded.items() if k != "history"}
    assert run.metrics["epochs"] == 1 and 0 <= run.metrics["test"]["accuracy"] <= 1
    assert run.history == recorded["history"]  # from metrics.csv, numbers as written
    assert isinstance(run.history[0]["epoch"], int)
    assert run.graph.name == "quickstart" and run.meta is not None and run.meta.task == "multiclass"
    assert netspec.load_run(quickstart_run / "model.safetensors").dir == quickstart_run


def test_history_frame_is_a_dataframe_or_says_what_it_needs(quickstart_run: Path, monkeypatch):
    run = netspec.load_run(quickstart_run)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs pandas: pip install pandas"):
            run.history_frame()
        return
    frame = run.history_frame()
    assert list(frame.index) == [1] and frame.loc[1, "loss"] == run.history[0]["loss"]


def test_load_run_refuses_what_is_not_a_run(tmp_path: Path):
    with pytest.raises(NetspecError, match=r"not a run directory \(no spec\.yaml\)"):
        netspec.load_run(tmp_path)
    with pytest.raises(NetspecError, match=r"no such run directory or weights file"):
        netspec.load_run(tmp_path / "nothing")


def test_run_module_agrees_with_the_onnx_predictor(quickstart_run: Path, quickstart_onnx: Path):
    torch = pytest.importorskip("torch")
    run = netspec.load_run(quickstart_run)
    module = run.module
    assert module is run.module and not module.training  # built once, in eval mode
    x = digits(5)
    with torch.no_grad():
        probs = module(torch.from_numpy(x * 0.0625)).numpy()  # the recorded rescale
    results = netspec.Predictor(quickstart_onnx, top_k=10).predict(x)
    assert [r["input"] for r in results] == [f"inputs[0][{i}]" for i in range(5)]
    for row, result in zip(probs, results):
        scores = {p["label"]: p["score"] for p in result["predictions"]}
        np.testing.assert_allclose([scores[str(k)] for k in range(10)], row, atol=1e-5)


def test_run_evaluate_is_what_the_cli_prints(quickstart_run: Path, no_plots):
    # The report pictures are not drawn (test_classify.py checks them): only the numbers compared.
    run = netspec.load_run(quickstart_run)
    result = run.evaluate(device="cpu")
    assert result["split"] == "test" and result["samples"] == 359
    assert result["accuracy"] == pytest.approx(run.metrics["test"]["accuracy"])
    cli = invoke("evaluate", quickstart_run, "--device", "cpu")
    assert cli.exit_code == 0
    assert json.loads(cli.stdout) == result


def test_run_export_onnx_writes_a_checked_model(quickstart_copy: Path, tmp_path: Path):
    pytest.importorskip("onnx")
    run = netspec.load_run(quickstart_copy)
    path = run.export_onnx(tmp_path / "q.onnx", batch_dim=2, check=False)
    assert path == tmp_path / "q.onnx" and path.is_file()
    assert not (quickstart_copy / "model.onnx").exists()
    predictor = netspec.Predictor(path)
    assert predictor.model.info.batch == 2
    assert predictor.classes == tuple(str(k) for k in range(10))
    assert run.export_onnx() == quickstart_copy / "model.onnx"


def test_run_predict_takes_raw_inputs_as_the_exported_model_does(
    quickstart_run: Path, quickstart_onnx: Path, tmp_path: Path
):
    x = digits(3)
    np.save(tmp_path / "x.npy", x)
    run = netspec.load_run(quickstart_run)
    onnx = netspec.Predictor(quickstart_onnx, top_k=3)
    for inputs in (x, x[0], tmp_path / "x.npy", [x[1], str(tmp_path / "x.npy")]):
        got, want = run.predict(inputs, device="cpu", top_k=3), onnx.predict(inputs)
        assert [r["input"] for r in got] == [r["input"] for r in want]
        for g, w in zip(got, want):
            assert [p["label"] for p in g["predictions"]] == [p["label"] for p in w["predictions"]]
            np.testing.assert_allclose(
                [p["score"] for p in g["predictions"]],
                [p["score"] for p in w["predictions"]],
                atol=1e-5,
            )

    # The CLI's words: --device, --batch, --out, --top-k.
    def labels(results: list[dict]) -> list[list[str]]:
        return [[p["label"] for p in r["predictions"]] for r in results]

    assert labels(run.predict(x, batch=1, device="cpu")) == labels(run.predict(x, device="cpu"))
    with pytest.raises(NetspecError, match="--batch 0: expected a positive number"):
        run.predict(x, batch=0, device="cpu")
    with pytest.raises(NetspecError, match="--device tpu: expected"):
        run.predict(x, device="tpu")
    with pytest.raises(TypeError):
        run.predict(x, batch_size=1)  # type: ignore[call-arg]


def test_run_predict_gives_regression_values_in_the_targets_units(tmp_path: Path, no_plots):
    # Targets are standardized in training; the export undoes it in its graph, Run.predict too.
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=(x @ rng.normal(size=6) * 50 + 300).astype(np.float32))
    spec = (
        "name: reg\ninput: [6]\nlayers:\n  - dense: {units: 8, activation: relu}\n"
        "  - dense: {units: 1}\ntrain:\n"
        f"  data: {{source: arrays, path: {tmp_path / 'reg.npz'}, val: 0.2, test: 0.1}}\n"
        "  epochs: 1\n"
    )
    run = netspec.load_spec(spec).train(tmp_path / "run", echo=lambda line: None)
    want = netspec.Predictor(run.export_onnx()).predict(x[:5])
    got = run.predict(x[:5], device="cpu")
    assert [r["input"] for r in got] == [r["input"] for r in want]
    np.testing.assert_allclose(
        [r["values"] for r in got], [r["values"] for r in want], rtol=1e-5, atol=1e-3
    )
    assert abs(np.mean([r["values"] for r in got]) - 300) < 200  # the targets' units


# --- Predictor -----------------------------------------------------------------------------------


def test_predictor_takes_arrays_and_files_like_the_cli(quickstart_onnx: Path, tmp_path: Path):
    x = digits(3)
    np.save(tmp_path / "x.npy", x)
    predictor = netspec.Predictor(quickstart_onnx, top_k=2)
    from_file = predictor.predict(tmp_path / "x.npy")
    cli = invoke("predict", quickstart_onnx, tmp_path / "x.npy", "--json", "--top-k", "2")
    assert json.loads(cli.stdout) == from_file
    one = predictor.predict(x[0])  # one sample, no batch axis
    assert one[0]["input"] == "inputs[0]"
    assert one[0]["predictions"] == from_file[0]["predictions"]
    mixed = predictor.predict([x[1], str(tmp_path / "x.npy")])
    assert [r["input"] for r in mixed] == [
        "inputs[0]",
        *(f"{tmp_path / 'x.npy'}[{i}]" for i in range(3)),
    ]
    assert mixed[0]["predictions"] == from_file[1]["predictions"]


def test_predictor_takes_the_cli_words(quickstart_onnx: Path, tmp_path: Path):
    # device=, batch= and out= mean what --device, --batch and --out mean.
    x = digits(3)
    np.save(tmp_path / "x.npy", x)
    predictor = netspec.Predictor(quickstart_onnx, device="cpu", top_k=2)
    assert predictor.predict(x, batch=1) == predictor.predict(x, batch=64)
    cli = invoke("predict", quickstart_onnx, tmp_path / "x.npy", "--json", "--top-k", "2")
    assert json.loads(cli.stdout) == predictor.predict(tmp_path / "x.npy", batch=2, out=tmp_path)
    with pytest.raises(NetspecError, match="--batch 0: expected a positive number"):
        predictor.predict(x, batch=0)
    with pytest.raises(NetspecError, match="--device tpu: expected one of"):
        netspec.Predictor(quickstart_onnx, device="tpu")
    with pytest.raises(TypeError):
        netspec.Predictor(quickstart_onnx, provider="cpu")  # type: ignore[call-arg]
    for old in ({"batch_size": 1}, {"out_dir": tmp_path}):
        with pytest.raises(TypeError):
            predictor.predict(x, **old)


def test_predictor_errors_name_the_array(quickstart_onnx: Path):
    predictor = netspec.Predictor(quickstart_onnx)
    with pytest.raises(
        NetspecError, match=r"inputs\[1\]: error: array of shape \(3, 3\); expected \(1, 8, 8\)"
    ):
        predictor.predict([np.zeros((1, 8, 8)), np.zeros((3, 3))])
    with pytest.raises(
        NetspecError, match=r"inputs\[0\]: error: array of dtype <U1; expected numbers"
    ):
        predictor.predict(np.array(["a"]))
    with pytest.raises(NetspecError, match=r"no inputs"):
        predictor.predict([])


# --- training ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_network_train_returns_its_run(tmp_path: Path, no_plots):
    pytest.importorskip("torch")
    net = netspec.load_spec(QUICKSTART, **{"train.data.limit": 300})
    lines: list[str] = []
    run = net.train(tmp_path / "run", epochs=1, optimizer__lr=0.002, echo=lines.append)
    assert run.dir == tmp_path / "run" and len(run.history) == 1
    assert run.history[0]["lr"] == 0.002
    assert any(line.startswith("epoch 1/1") for line in lines)
    assert run.metrics["epochs"] == 1
    with pytest.raises(NetspecError, match=r"already holds a run"):
        net.train(tmp_path / "run", epochs=1, echo=lines.append)
