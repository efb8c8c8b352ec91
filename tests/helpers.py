"""Helpers shared by the test modules (imported as `from helpers import ...`; tests/ is on sys.path).

Fixtures live in conftest.py; plain functions live here so a test can call them with arguments.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer.main
import typer.testing
from typer.testing import CliRunner

import netspec
from netspec.cli import app
from netspec.layers import BatchNorm

REPO = Path(__file__).resolve().parents[1]
# CI checks out the repo next to shared/, so the data sits at ../shared/data from the root.
SHARED_DATA = REPO.parent / "shared" / "data"
needs_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"real test datasets not found at {SHARED_DATA} (see shared/data/SOURCES.md)",
)


def needs_digits() -> None:
    """Skip where scikit-learn, whose file holds the builtin digits, is not installed: looked
    up, not imported (netspec reads the digits without importing it; the import is ~1 s)."""
    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("scikit-learn is not installed: the builtin digits are its file")


def decoded_images(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The image files netspec's folder loader decodes from now on, in order (each decode of a
    file noted, the file decoded as before)."""
    from netspec.data import folder

    decoded: list[Path] = []
    decode = folder._decode

    def noted(path: Path, *args: Any) -> Any:
        decoded.append(path)
        return decode(path, *args)

    monkeypatch.setattr(folder, "_decode", noted)
    return decoded


@functools.cache
def _built(app: Any, commands: tuple[Any, ...]) -> Any:
    return typer.main.get_command(app)


def built_command(app: Any) -> Any:
    """The click command of `app`, built once per set of registered commands.

    Typer's CliRunner turns every command's signature into click options again at each invoke
    (~14 ms for netspec's 13 commands; the suite invokes ~700 times, ~10 s of CPU). The tests
    register every command up front, so one build serves them all; test_cli checks that the
    runner uses this.
    """
    return _built(app, tuple(c.callback for c in app.registered_commands))


typer.testing._get_command = built_command  # the name typer.testing's CliRunner.invoke calls
runner = CliRunner()


def plain_specs() -> list[Path]:
    """specs/*.yaml without the search specs (tests/test_tune.py tests those: they are spaces
    of networks, not one network to compile, lower or export)."""
    return list(_plain_specs())


@functools.cache
def _plain_specs() -> tuple[Path, ...]:
    # Read once per process: five test modules ask at collection, each parsing every spec.
    from netspec.search import find_search
    from netspec.source import read

    return tuple(p for p in sorted((REPO / "specs").glob("*.yaml")) if not find_search(read(p)))


# Specs whose size makes building, lowering or exporting them take many seconds (AlexNet's
# 62M parameters): their per-spec tests are marked slow; their layer kinds run in smaller specs.
BIG_SPECS = frozenset({"alexnet"})


def spec_params(paths: list[Path], slow: frozenset[str] = BIG_SPECS) -> list:
    """pytest.param per spec path, id its stem, marked slow when its stem is in `slow`."""
    return [
        pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in slow else [])
        for p in paths
    ]


def invoke(*args: str | Path):
    """`netspec ARGS...` through Typer's CliRunner; whatever happens, never a traceback."""
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def fails(result, *needles: str, problems: int = 1) -> str:
    """Exit 2 with one error line per problem (one, unless told), naming what is wrong.

    Every needle must be in the output; the output is returned for further checks.
    """
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if "error:" in line]
    assert len(errors) == problems, result.output
    for needle in needles:
        assert needle in result.output, result.output
    return result.output


def preprocessing_record(
    raw_shape: Sequence[int], input_shape: Sequence[int] | None = None, **steps: Any
) -> dict[str, Any]:
    """A preprocessing record as the trainer writes it in model.json (and export in the model's
    metadata) for raw samples of `raw_shape`: no step but those in `steps` (scale, mean, ...)."""
    image = len(raw_shape) == 3
    return {
        "input_shape": list(input_shape or raw_shape),
        "raw_shape": list(raw_shape),
        "channel_order": {1: "L", 3: "RGB"}.get(raw_shape[0]) if image else None,
        "grayscale": False,
        "resize": None,
        "center_crop": None,
        "scale": 1.0,
        "mean": None,
        "std": None,
        "per_sample": False,
        **steps,
    }


def random_weights(graph: netspec.Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights of the shapes each layer declares (`node.weights`), without torch.

    Fan-in scaled normals for kernels, small normals for 1-D tensors (biases, shifts, means),
    and batchnorm scales and running variances in [0.5, 1.5] so that nothing divides by ~0.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for node in graph.nodes:
        for name, weight in node.weights.items():
            shape = weight.shape
            if isinstance(node.layer, BatchNorm) and name in ("weight", "running_var"):
                value = rng.uniform(0.5, 1.5, shape)
            elif len(shape) == 1:
                value = 0.1 * rng.standard_normal(shape)
            else:
                value = rng.standard_normal(shape) / np.sqrt(max(1, int(np.prod(shape[1:]))))
            weights[f"{node.name}.{name}"] = value.astype(np.float32)
    return weights


# --- tiny specs ---------------------------------------------------------------------------------

# The layers of the tiny networks the tests train on the bundled 8x8 digits (one YAML line each).
CONV = (
    "conv2d: {filters: 4, kernel: 3, padding: same, activation: relu}",
    "flatten",
    "dense: {units: 10, activation: softmax}",
)
MLP = ("flatten", "dense: {units: 16, activation: relu}", "dense: {units: 10, activation: softmax}")
LINEAR = ("flatten", "dense: {units: 10, activation: softmax}")
# The picture of a classification run costs ~1.5 s: a run in its own process goes without it.
NO_PICTURES = "{pictures: false}"


def tiny_spec(
    layers: Sequence[str] = CONV,
    *,
    name: str = "tiny",
    input: str = "[1, 8, 8]",
    data: str | None = None,
    limit: int | None = 200,
    val: float = 0.25,
    test: float | None = None,
    preprocess: str | None = "{rescale: 0.0625}",
    batch_size: int | None = 32,
    epochs: int | None = 2,
    seed: int | None = 1,
    **train: object,
) -> str:
    """The YAML text of a tiny spec: `layers` (one YAML line each, default CONV) trained on the
    bundled digits (`limit` samples, `val`/`test` fractions) unless `data` says otherwise.

    Each train key comes out as `key: value` in the order data, preprocess, batch_size, epochs,
    seed, then `train`'s keywords; a None leaves the key out. Values are YAML text (flow style).
    """
    if data is None:
        parts = ["source: builtin"] + [f"limit: {limit}"] * (limit is not None) + [f"val: {val}"]
        data = "{" + ", ".join(parts + [f"test: {test}"] * (test is not None)) + "}"
    keys = {"data": data, "preprocess": preprocess, "batch_size": batch_size, "epochs": epochs}
    keys |= {"seed": seed, **train}
    lines = [f"name: {name}", f"input: {input}", "layers:", *(f"  - {layer}" for layer in layers)]
    lines += ["train:", *(f"  {k}: {v}" for k, v in keys.items() if v is not None)]
    return "\n".join(lines) + "\n"


def write_spec(folder: Path, text: str | None = None, name: str = "tiny.yaml", **kw: Any) -> Path:
    """`text` (default: `tiny_spec(**kw)`), dedented, written to folder/name; its path."""
    import textwrap

    path = folder / name
    path.write_text(textwrap.dedent(tiny_spec(**kw) if text is None else text))
    return path


def make_trainer(tmp_path: Path, text: str, *sets: str, out: str = "run", resume: bool = False):
    """A set-up Trainer (CPU, quiet) for the spec `text` written to tmp_path/<out>.yaml, its run
    in tmp_path/<out>, as `netspec train SPEC --set ... --out OUT [--resume]` builds it; what it
    logs is kept in `.logs`."""
    from netspec.backends.training.loop import Trainer
    from netspec.runs import TrainOptions, prepare_run

    spec = write_spec(tmp_path, text, f"{out}.yaml")
    run = prepare_run(spec, list(sets), tmp_path / out, resume)
    logs: list[str] = []
    t = Trainer(run, TrainOptions("cpu", resume, progress=False), log=logs.append)
    t.logs = logs  # type: ignore[attr-defined]
    t.setup()
    return t


def predict_one_class(run: Path, label: int = 0, margin: float = 5.0) -> None:
    """Rewrite a trained classification run's output layer so that the run predicts `label` for
    every input, by a logit margin that int8 rounding cannot close: an int8 export of it loses
    exactly 0 points of accuracy, whatever the training reached.

    The last dense layer's weights become +-1e-4 (so the other logits stay within ~0.1 of each
    other for any hidden activations a short training gives) and its bias `margin` for `label`:
    the softmax then gives `label` ~0.94 (not a saturated 1.0, so that the int8 model's
    outputs still differ measurably from the float32 ones) against ~0.006 for each other class,
    far beyond int8's rounding of the logits (~margin/255) and of the probabilities (~1/255).
    """
    from safetensors.numpy import save_file

    from netspec.runs import read_weights

    graph = netspec.compile_file(run / "spec.yaml")
    last = [n.name for n in graph.nodes if "weight" in n.weights][-1]  # the output dense
    kernel, bias = f"{last}.weight", f"{last}.bias"
    path = run / "model.safetensors"
    tensors, header = read_weights(path)
    assert tensors[kernel].ndim == 2, f"{last} is not a dense layer"
    signs = np.where(np.random.default_rng(0).random(tensors[kernel].shape) < 0.5, -1.0, 1.0)
    tensors[kernel] = (1e-4 * signs).astype(np.float32)
    tensors[bias] = np.zeros_like(tensors[bias])
    tensors[bias][label] = margin
    save_file(tensors, str(path), metadata=header)


def module_state(trainer: Any) -> dict[str, Any]:
    """A trainer's module weights, copied (the streaming tests compare runs bit for bit)."""
    return {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}


def same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same tensors, bit for bit."""
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@contextlib.contextmanager
def spawned(cmd: Sequence[str | Path], **kw: Any) -> Iterator[subprocess.Popen]:
    """`cmd` started in a session of its own; on leaving the block, it and every process it
    started are killed if still running and its pipes closed, so a failed assertion leaves
    nothing behind (a Popen collected while running warns into whichever test runs next)."""
    proc = subprocess.Popen([str(c) for c in cmd], start_new_session=True, **kw)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with proc:  # closes its pipes and waits
            pass


def digits_npz(folder: Path, name: str = "digits.npz") -> Path:
    """scikit-learn's 8x8 digits as `source: builtin` gives them (x (N, 1, 8, 8) float32 in
    0..16, y int64) written to folder/name, for `source: arrays, path: digits.npz`: the digits as
    a user's own arrays file (read whole or memory-mapped)."""
    from netspec.data.builtin import load_builtin

    digits = load_builtin("digits")  # read once per process, and the very arrays it gives
    path = folder / name
    np.savez(path, x=digits.x, y=digits.y)
    return path


def imported_by(*args: str | Path, cwd: Path, timeout: float = 120) -> tuple[str, set[str]]:
    """The stdout of `python -X importtime -m netspec ARGS` and the modules it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "netspec", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "import time:" in line
    }
    return proc.stdout, imported


STREAMED_RUNS = (("none", 0), ("none", 1), ("disk", 0))


def trains_as_in_memory(
    make: Callable[..., Any],
    check: Callable[[Any, Any], None] = lambda streamed, ram: None,
    runs: Sequence[tuple[str, int]] = STREAMED_RUNS,
    same_history: Sequence[str] = (),
) -> Any:
    """The streaming tests' frame: `make("ram")` gives a trainer holding its data in memory,
    trained first; each `make(cache, workers)` of `runs` streams its batches, passes
    `check(streamed, ram)` before training, and ends with ram's weights bit for bit (and the
    same last values of `same_history`). The trained ram trainer is returned."""
    import torch

    from netspec.backends.training.loader import Streamed

    ram = make("ram")
    assert isinstance(ram.x_train, torch.Tensor)
    ram.fit()
    for cache, workers in runs:
        t = make(cache, workers)
        assert isinstance(t.x_train, Streamed)
        check(t, ram)
        t.fit()
        assert same_state(module_state(t), module_state(ram)), (cache, workers)
        for key in same_history:
            assert t.state.history[-1][key] == ram.state.history[-1][key], (key, cache, workers)
    return ram


def inside(fig: Any, artist: Any) -> bool:
    """Whether a drawn artist (a title) lies wholly inside its matplotlib figure."""
    renderer = fig.canvas.get_renderer()
    box, page = artist.get_window_extent(renderer), fig.bbox
    return box.x0 >= page.x0 and box.x1 <= page.x1 and box.y0 >= page.y0 and box.y1 <= page.y1
