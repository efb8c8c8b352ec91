"""The Trainer: exact resume, seeds, frozen layers, transfer, losses, callbacks, augmentation.

Every run here is tiny (a few hundred 8x8 digits, a few epochs) so the file stays fast on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import CONV, MLP, tiny_spec
from helpers import make_trainer as make

from netspec.backends.lowering import count_tensors
from netspec.backends.training import checkpoint
from netspec.backends.training.augment import Augmenter
from netspec.backends.training.evaluate import evaluate_run
from netspec.backends.training.loop import Trainer
from netspec.backends.weights import weights
from netspec.errors import Interrupted, SpecError
from netspec.runs import prepare_run

# history.png is not drawn (conftest's no_plots); a test that asks for `real_plots` draws it.
pytestmark = pytest.mark.usefixtures("no_plots")

# conv + batchnorm + two dropouts: the global RNG (dropout), the shuffle generator, the
# augmenter's generator and the optimizer/scheduler state all matter for an exact resume.
DROPOUTS = (CONV[0], "batchnorm", "dropout: {rate: 0.25}", "flatten")
DROPOUTS += ("dense: {units: 16, activation: relu}", "dropout: {rate: 0.5}", CONV[-1])
TINY = tiny_spec(DROPOUTS, limit=240, epochs=3)

# No dropout and one batch per epoch: the reported training loss is exactly one step's loss.
ONE_STEP = tiny_spec(
    (CONV[0], *MLP),
    name="one_step",
    val=0.0,
    batch_size=1000,
    epochs=1,
    seed=2,
    optimizer="{name: sgd, lr: 0.01}",
)


def snapshot(t: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in weights(t.module).items()}


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different}"


def leftovers(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


def interrupt_on_call(t: Trainer, n: int) -> None:
    """Raise KeyboardInterrupt (as Ctrl-C does) on the n-th call of t.train_epoch."""
    calls = 0
    train_epoch = t.train_epoch

    def boom() -> dict[str, float]:
        nonlocal calls
        calls += 1
        if calls == n:
            raise KeyboardInterrupt
        return train_epoch()

    t.train_epoch = boom  # type: ignore[method-assign]


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    import csv

    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


# --- resume and seeds ------------------------------------------------------------------------

RESUMABLE = (
    "train.augment={shift: 0.1}",
    "train.optimizer={name: sgd, lr: 0.05, momentum: 0.9}",
    "train.epochs=4",
)


@pytest.mark.parametrize(
    "schedule", ["{name: step, step_size: 1, gamma: 0.5}", "{name: one_cycle}"], ids=str
)
def test_resume_after_ctrl_c_is_bit_identical_to_an_uninterrupted_run(
    tmp_path: Path, schedule: str
) -> None:
    sets = (*RESUMABLE, f"train.schedule={schedule}")
    full = make(tmp_path, TINY, *sets, out="full")
    full.fit()

    part = make(tmp_path, TINY, *sets, out="part")
    interrupt_on_call(part, 3)
    with pytest.raises(
        Interrupted, match=r"interrupted during epoch 3; epoch 2 is saved in .*part"
    ):
        part.fit()
    assert (part.run_dir / "checkpoint" / "last.safetensors").is_file()
    assert not (part.run_dir / "model.safetensors").exists()  # only a finished run has one
    assert len(csv_rows(part.run_dir)) == 2
    assert leftovers(part.run_dir) == []

    resumed = make(tmp_path, TINY, *sets, out="part", resume=True)
    assert resumed.state.epoch == 2
    assert any("resumed" in line and "after epoch 2" in line for line in resumed.logs)
    result = resumed.fit()
    assert result["epochs"] == 4
    assert_identical(snapshot(resumed), snapshot(full))
    # The whole history is continued, not restarted: every logged value matches.
    timing = ("time_s", "samples_per_s")
    a, b = csv_rows(full.run_dir), csv_rows(resumed.run_dir)
    assert [{k: v for k, v in r.items() if k not in timing} for r in a] == [
        {k: v for k, v in r.items() if k not in timing} for r in b
    ]
    assert [float(r["lr"]) for r in b] != [float(b[0]["lr"])] * 4  # the schedule did change lr
    assert leftovers(resumed.run_dir) == []


def test_resume_after_ctrl_c_in_the_middle_of_an_epoch(tmp_path: Path) -> None:
    sets = (*RESUMABLE, "train.schedule={name: one_cycle}")
    full = make(tmp_path, TINY, *sets, out="full")
    full.fit()

    part = make(tmp_path, TINY, *sets, out="part")
    loss_fn, steps = part.loss_fn, 0

    def interrupting_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal steps
        if torch.is_grad_enabled():  # a training step, not an evaluation
            steps += 1
            if steps == part.steps + 3:  # three optimizer steps into epoch 2
                raise KeyboardInterrupt
        return loss_fn(out, y)

    part.loss_fn = interrupting_loss  # type: ignore[assignment]
    with pytest.raises(Interrupted, match=r"interrupted during epoch 2; epoch 1 is saved"):
        part.fit()
    resumed = make(tmp_path, TINY, *sets, out="part", resume=True)
    resumed.fit()
    assert_identical(snapshot(resumed), snapshot(full))


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tmp_path: Path) -> None:
    sets = ("train.augment={shift: 0.1}", "train.epochs=2")
    a = make(tmp_path, TINY, *sets, out="a")
    a.fit()
    b = make(tmp_path, TINY, *sets, out="b")
    b.fit()
    c = make(tmp_path, TINY, *sets, "train.seed=7", out="c")
    c.fit()
    assert_identical(snapshot(a), snapshot(b))
    wa, wc = snapshot(a), snapshot(c)
    assert not torch.equal(wa["conv2d.weight"], wc["conv2d.weight"])
    assert not torch.equal(wa["dense_1.weight"], wc["dense_1.weight"])


def test_resume_refuses_a_different_network(tmp_path: Path) -> None:
    make(tmp_path, TINY, "train.epochs=1", out="run").fit()
    wider = TINY.replace("units: 16", "units: 12")
    with pytest.raises(SpecError, match=r"--resume: the network in the spec differs"):
        make(tmp_path, wider, out="run", resume=True)
    # Same tensors, but other trainable layers or another optimizer: the optimizer state differs.
    frozen = TINY.replace(
        "relu}\n  - dropout: {rate: 0.5}", "relu}\n    trainable: false\n  - dropout: {rate: 0.5}"
    )
    assert frozen != TINY
    with pytest.raises(SpecError, match=r"--resume: the optimizer state in .* does not fit"):
        make(tmp_path, frozen, out="run", resume=True)
    with pytest.raises(SpecError, match=r"made by another optimizer"):
        make(tmp_path, TINY, "train.optimizer={name: sgd, momentum: 0.9}", out="run", resume=True)


# --- frozen layers ----------------------------------------------------------------------------

FROZEN = """\
name: frozen
input: [1, 8, 8]
blocks:
  stage:
    params: {filters: null}
    layers:
      - conv2d: {filters: $filters, kernel: 3, padding: same}
      - batchnorm
      - relu
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same, activation: relu}
    trainable: false
  - batchnorm:
    trainable: false
  - stage: {filters: 4}
    trainable: false
  - stage: {filters: 4}
  - flatten
  - dense: {units: 10, activation: softmax}
train:
  data: {source: builtin, limit: 200, val: 0.2}
  preprocess: {rescale: 0.0625}
  batch_size: 32
  epochs: 2
  optimizer: {name: adam, lr: 0.01, weight_decay: 0.01}
"""
FROZEN_LAYERS = ("conv2d", "batchnorm", "stage/conv2d", "stage/batchnorm")


def test_frozen_layers_keep_weights_and_running_statistics(tmp_path: Path) -> None:
    t = make(tmp_path, FROZEN)
    before = snapshot(t)
    t.fit()
    after = snapshot(t)
    layer = {k: k.rsplit(".", 1)[0] for k in before}
    frozen = [k for k in before if layer[k] in FROZEN_LAYERS]
    assert {layer[k] for k in frozen} == set(FROZEN_LAYERS)
    assert {"batchnorm.running_mean", "stage/batchnorm.running_var"} <= set(frozen)
    for k in frozen:
        assert torch.equal(before[k], after[k]), f"frozen tensor {k} changed"
    # The trainable layers did learn, and the trainable batchnorm did update its statistics.
    for k in (
        "stage_1/conv2d.weight",
        "stage_1/batchnorm.weight",
        "stage_1/batchnorm.running_mean",
        "stage_1/batchnorm.running_var",
        "dense.weight",
    ):
        assert not torch.equal(before[k], after[k]), f"trainable tensor {k} did not change"
    # The saved model holds the frozen tensors unchanged too.
    saved, _ = checkpoint.load(t.run_dir / "model.safetensors")
    for k in frozen:
        assert torch.equal(saved[k], before[k])

    summary = (t.run_dir / "summary.txt").read_text()
    for name in FROZEN_LAYERS:
        kind = name.rsplit("/", 1)[-1]
        assert f"\n{name} ({kind}) [frozen]" in summary
    assert "stage_1/conv2d (conv2d)" in summary
    assert "stage_1/conv2d (conv2d) [frozen]" not in summary
    trainable, non_trainable = count_tensors(t.module)
    assert f"Trainable params: {trainable:,}\n" in summary
    assert f"Non-trainable params: {non_trainable:,}\n" in summary


# --- transfer learning --------------------------------------------------------------------------

SOURCE_NET = """\
name: {name}
input: [1, 8, 8]
layers:
  - conv2d: {{filters: 4, kernel: 3, padding: same, activation: relu}}
  - conv2d: {{filters: {filters}, kernel: 3, padding: same, activation: relu}}
  - flatten
  - dense: {{units: 10, activation: softmax}}
train:
  data: {{source: builtin, limit: 160, val: 0.2}}
  preprocess: {{rescale: 0.0625}}
  epochs: 1
  seed: {seed}
"""


@pytest.fixture(scope="module")
def trained_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source run, trained once for the file (a module fixture comes before no_plots:
    its pictures are switched off in its spec)."""
    spec = SOURCE_NET.format(name="src", filters=6, seed=0)
    t = make(tmp_path_factory.mktemp("source"), spec, "train.log.pictures=false", out="src")
    t.fit()
    return t.run_dir


@pytest.fixture
def source_run(trained_source: Path, tmp_path: Path) -> Path:
    """The test's own copy of the source run (one test deletes it)."""
    return Path(shutil.copytree(trained_source, tmp_path / "src"))


@pytest.mark.parametrize(
    ("layers", "loaded"),
    [('["conv2d*"]', {"conv2d", "conv2d_1"}), ('["conv2d"]', {"conv2d"})],
)
def test_init_from_a_run_loads_exactly_the_named_layers(
    tmp_path: Path, source_run: Path, layers: str, loaded: set[str]
) -> None:
    src, _ = checkpoint.load(source_run / "model.safetensors")
    t = make(
        tmp_path,
        SOURCE_NET.format(name="dst", filters=6, seed=5),
        f'train.init={{from: "{source_run}", layers: {layers}}}',
        out="dst",
    )
    assert f"init: loaded {len(loaded)} layers from {source_run}" in t.logs
    before = snapshot(t)
    for key, value in before.items():
        same = torch.equal(value, src[key])
        assert same == (key.rsplit(".", 1)[0] in loaded), key
    t.fit()  # the loaded layers still train
    assert not torch.equal(snapshot(t)["conv2d.weight"], src["conv2d.weight"])


def test_init_shape_mismatch_names_the_tensor_and_both_shapes(
    tmp_path: Path, source_run: Path
) -> None:
    with pytest.raises(SpecError, match=r"train\.init: 'conv2d_1\.(weight|bias)' has shape") as err:
        make(
            tmp_path,
            SOURCE_NET.format(name="dst", filters=8, seed=0),
            f'train.init={{from: "{source_run}", layers: ["conv2d*"]}}',
            out="dst",
        )
    text = str(err.value)
    assert "'conv2d_1.weight' has shape (6, 4, 3, 3)" in text
    assert "but (8, 4, 3, 3) in this network" in text
    assert "'conv2d_1.bias' has shape (6,)" in text
    assert "'conv2d.weight'" not in text  # the layers that fit are not reported


def test_init_without_a_matching_layer_is_a_clear_error(tmp_path: Path, source_run: Path) -> None:
    # Refused when the spec is compiled, before the source run is read.
    with pytest.raises(
        SpecError,
        match=r"--set train\.init=.*: error: train\.init\.layers\[0\]: 'encoder\*' matches no "
        r"layer with weights in this network\n  hint: .*: conv2d, conv2d_1, dense",
    ):
        make(
            tmp_path,
            SOURCE_NET.format(name="dst", filters=6, seed=0),
            f'train.init={{from: "{source_run}", layers: ["encoder*"]}}',
            out="dst",
        )


def test_evaluating_a_transfer_run_does_not_need_its_source(
    tmp_path: Path, source_run: Path
) -> None:
    t = make(
        tmp_path,
        SOURCE_NET.format(name="dst", filters=6, seed=0),
        f'train.init={{from: "{source_run}", layers: ["conv2d"]}}',
        "train.data.test=0.2",
        out="dst",
    )
    test = t.fit()["test"]
    shutil.rmtree(source_run)
    got = evaluate_run(t.run_dir, device="cpu")
    assert {k: got[k] for k in test} == test


# --- losses pair with the head -----------------------------------------------------------------


def test_softmax_head_trains_cross_entropy_on_the_logits(tmp_path: Path) -> None:
    t = make(tmp_path, ONE_STEP, "train.data.val=0.2")
    assert (t.data.task, t.loss_fn.name, t.module.head) == (
        "multiclass",
        "cross_entropy",
        "softmax",
    )
    x, y = t.x_train, t.y_train
    xb = t._prep(x)
    with torch.no_grad():
        t.module.train()
        expected_train = F.nll_loss(torch.log(t.module(xb)), y)
        t.module.eval()
        batch = t.loss_fn(t.module.forward_logits(xb[:64]), y[:64])
        assert float(batch) == pytest.approx(
            float(F.nll_loss(torch.log(t.module(xb[:64])), y[:64])), abs=1e-5
        )
    # The epoch's reported loss (one full batch) is that of the probabilities the network outputs.
    row = t.train_epoch()
    assert row["loss"] == pytest.approx(float(expected_train), abs=1e-5)
    xv, yv = t.val
    with torch.no_grad():
        t.module.eval()
        expected_val = F.nll_loss(torch.log(t.module(t._prep(xv))), yv)
    assert t.evaluate(xv, yv)["loss"] == pytest.approx(float(expected_val), abs=1e-5)


def test_label_smoothing_changes_the_cross_entropy(tmp_path: Path) -> None:
    eps = 0.1
    t = make(tmp_path, ONE_STEP, f"train.loss={{name: cross_entropy, label_smoothing: {eps}}}")
    xb, y = t._prep(t.x_train), t.y_train
    t.module.eval()
    with torch.no_grad():
        logp = torch.log(t.module(xb))
        plain = F.nll_loss(logp, y)
        q = torch.full_like(logp, eps / logp.shape[1])
        q[torch.arange(len(y)), y] += 1 - eps
        smoothed = -(q * logp).sum(1).mean()
    got = t.evaluate(t.x_train, t.y_train)["loss"]
    assert got == pytest.approx(float(smoothed), abs=1e-5)
    assert abs(got - float(plain)) > 1e-3


BINARY = """\
name: binary
input: [4]
layers:
  - dense: {units: 8, activation: relu}
  - dense: {units: 1, activation: sigmoid}
train:
  data: {source: arrays, path: binary.npz, val: 0.0}
  epochs: 1
"""


@pytest.fixture
def binary_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    path = tmp_path / "binary.npz"
    np.savez(path, x=x, y=y)
    return path


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_sigmoid_head_trains_binary_cross_entropy_with_logits(
    tmp_path: Path, binary_npz: Path, smoothing: float
) -> None:
    t = make(
        tmp_path,
        BINARY,
        f"train.loss={{name: binary_cross_entropy, label_smoothing: {smoothing}}}",
    )
    assert (t.data.task, t.loss_fn.name, t.module.head) == (
        "binary",
        "binary_cross_entropy",
        "sigmoid",
    )
    x, y = t.x_train, t.y_train
    t.module.eval()
    with torch.no_grad():
        p = t.module(t._prep(x)).view(-1)
        target = y.float() * (1 - smoothing) + 0.5 * smoothing
        expected = F.binary_cross_entropy(p, target)
        logits = t.module.forward_logits(t._prep(x))
    assert t.evaluate(x, y)["loss"] == pytest.approx(float(expected), abs=1e-5)
    assert float(t.loss_fn(logits, y)) == pytest.approx(float(expected), abs=1e-5)
    if smoothing:
        plain = F.binary_cross_entropy(p, y.float())
        assert abs(float(expected) - float(plain)) > 1e-3


def test_default_loss_of_a_sigmoid_head_is_binary_cross_entropy(
    tmp_path: Path, binary_npz: Path
) -> None:
    t = make(tmp_path, BINARY)
    assert t.loss_fn.name == "binary_cross_entropy"


@pytest.mark.parametrize(
    ("head", "loss"),
    [
        ("units: 1, activation: softmax", None),
        ("units: 2, activation: softmax", "binary_cross_entropy"),
    ],
    ids=["one_unit_softmax", "bce_on_two_softmax_units"],
)
def test_binary_cross_entropy_needs_one_sigmoid_unit(
    tmp_path: Path, binary_npz: Path, head: str, loss: str | None
) -> None:
    text = BINARY.replace("units: 1, activation: sigmoid", head)
    sets = [f"train.loss={loss}"] if loss else []
    with pytest.raises(SpecError, match=r"binary_cross_entropy needs a single sigmoid output unit"):
        make(tmp_path, text, *sets)


def test_cross_entropy_refuses_a_sigmoid_head(tmp_path: Path) -> None:
    text = ONE_STEP.replace("units: 10, activation: softmax", "units: 10, activation: sigmoid")
    with pytest.raises(SpecError, match=r"cross_entropy needs a softmax output"):
        make(tmp_path, text)


@pytest.mark.parametrize(("loss", "reference"), [("mse", F.mse_loss), ("mae", F.l1_loss)])
def test_regression_loss_compares_the_network_output(tmp_path: Path, loss: str, reference) -> None:
    # A sigmoid output for targets in (0, 1): the loss must see the sigmoid's output.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    y = (1 / (1 + np.exp(-(x @ np.array([1.0, -2.0, 0.5]))))).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=y)
    text = BINARY.replace("[4]", "[3]").replace("binary.npz", "reg.npz")
    t = make(tmp_path, text, f"train.loss={loss}")
    assert (t.data.task, t.loss_fn.name, t.metric_names) == ("regression", loss, ["mae"])
    t.module.eval()
    with torch.no_grad():
        expected = reference(t.module(t._prep(t.x_train)).view(-1), t.y_train)
    result = t.evaluate(t.x_train, t.y_train)
    assert result["loss"] == pytest.approx(float(expected), abs=1e-6)
    with torch.no_grad():
        mae = (t.module(t._prep(t.x_train)).view(-1) - t.y_train).abs().mean()
    assert result["mae"] == pytest.approx(float(mae), abs=1e-6)


@pytest.mark.parametrize(("l1", "l2"), [(0.0, 0.01), (0.001, 0.0)])
def test_regularize_adds_exactly_the_penalty_of_matching_weights(
    tmp_path: Path, l1: float, l2: float
) -> None:
    plain = make(tmp_path, ONE_STEP, out="plain")
    reg = make(
        tmp_path,
        ONE_STEP,
        f'train.regularize=[{{layers: ["dense*"], l1: {l1}, l2: {l2}}}]',
        out="reg",
    )
    for t in (plain, reg):  # non-zero biases, so a penalty on biases would show
        with torch.no_grad():
            for name in ("dense", "dense_1", "conv2d"):
                t.module.layer(name).bias.fill_(0.5)
    w = snapshot(reg)
    assert_identical(w, snapshot(plain))
    expected = sum(
        l2 * float(w[k].double().pow(2).sum()) + l1 * float(w[k].double().abs().sum())
        for k in ("dense.weight", "dense_1.weight")  # not conv2d (no match), not the biases
    )
    assert expected > 1e-3
    penalty = reg.train_epoch()["loss"] - plain.train_epoch()["loss"]
    assert penalty == pytest.approx(expected, rel=1e-4)


# --- callbacks ------------------------------------------------------------------------------------


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path: Path) -> None:
    t = make(
        tmp_path,
        TINY,
        "train.epochs=6",
        "train.optimizer={name: adam, lr: 1.0e-5}",
        "train.callbacks={early_stopping: {patience: 1, min_delta: 10.0, restore_best: true}}",
    )
    result = t.fit()
    assert result["epochs"] == 2 < 6
    assert result["stopped"].startswith("early stopping: val_loss did not improve for 1 epochs")
    assert result["best"]["epoch"] == 1
    assert len(csv_rows(t.run_dir)) == 2
    best, meta = checkpoint.load(t.run_dir / "checkpoint" / "best.safetensors")
    assert json.loads(meta["epoch"]) == 1
    last, _ = checkpoint.load(t.run_dir / "checkpoint" / "last.safetensors")
    final = snapshot(t)
    assert_identical(final, best)
    assert not torch.equal(final["dense.weight"], last["model/dense.weight"])  # not epoch 2's
    assert_identical(checkpoint.load(t.run_dir / "model.safetensors")[0], best)
    # The restored weights are epoch 1's: they give its validation loss again.
    assert t.evaluate(*t.val)["loss"] == result["history"][0]["val_loss"]


def test_without_restore_best_the_last_weights_are_kept(tmp_path: Path) -> None:
    t = make(
        tmp_path,
        TINY,
        "train.optimizer={name: adam, lr: 1.0e-5}",
        "train.callbacks={early_stopping: {patience: 1, min_delta: 10.0, restore_best: false}}",
    )
    assert t.fit()["epochs"] == 2
    last, _ = checkpoint.load(t.run_dir / "checkpoint" / "last.safetensors")
    model, _ = checkpoint.load(t.run_dir / "model.safetensors")
    assert_identical(
        model, {k[len("model/") :]: v for k, v in last.items() if k.startswith("model/")}
    )


def test_stop_on_nan(tmp_path: Path) -> None:
    t = make(tmp_path, TINY, "train.optimizer={name: sgd, lr: 1000000.0}")
    result = t.fit()
    assert result["epochs"] == 1 < 3
    assert result["stopped"] in ("the training loss is nan", "the training loss is inf")
    assert f"stopped: {result['stopped']}" in t.logs
    assert (t.run_dir / "metrics.json").is_file()
    kept = make(
        tmp_path,
        TINY,
        "train.optimizer={name: sgd, lr: 1000000.0}",
        "train.callbacks={stop_on_nan: false}",
        out="kept",
    )
    assert kept.fit()["epochs"] == 3


def test_reduce_lr_on_plateau_lowers_the_lr_in_metrics_csv(tmp_path: Path) -> None:
    # Batchnorm at momentum 0.99 (torch's 0.01): its running statistics barely move either.
    slow_bn = TINY.replace("  - batchnorm\n", "  - batchnorm: {momentum: 0.99}\n")
    assert slow_bn != TINY
    t = make(
        tmp_path,
        slow_bn,
        "train.epochs=4",
        "train.optimizer={name: adam, lr: 1.0e-6}",
        "train.callbacks={reduce_lr_on_plateau: "
        "{monitor: val_accuracy, patience: 1, factor: 0.5, min_lr: 4.0e-7}}",
    )
    t.fit()
    rows = csv_rows(t.run_dir)
    # lr 1e-6 cannot move the validation accuracy: every epoch after the first is a plateau.
    assert len({r["val_accuracy"] for r in rows}) == 1
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-6, 1e-6, 5e-7, 4e-7])


def test_checkpoint_files_and_csv_log(tmp_path: Path) -> None:
    t = make(tmp_path, TINY, "train.epochs=1")
    t.fit()
    ck = t.run_dir / "checkpoint"
    assert (ck / "best.safetensors").is_file() and (ck / "last.safetensors").is_file()
    assert (t.run_dir / "metrics.csv").is_file()

    quiet = make(
        tmp_path,
        TINY,
        "train.epochs=1",
        "train.callbacks={csv_log: false, checkpoint: {best: false}}",
        out="quiet",
    )
    quiet.fit()
    assert not (quiet.run_dir / "metrics.csv").exists()
    assert not (quiet.run_dir / "checkpoint" / "best.safetensors").exists()
    assert (quiet.run_dir / "checkpoint" / "last.safetensors").is_file()
    assert json.loads((quiet.run_dir / "metrics.json").read_text())["epochs"] == 1


# --- augmentation is for training batches only ----------------------------------------------------


def test_augmentation_never_touches_validation_or_test_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    callers: list[str] = []
    original = Augmenter.__call__

    def recording(self, x, mask=None):
        frame, stack = sys._getframe(1), []
        while frame is not None:
            stack.append(frame.f_code.co_name)
            frame = frame.f_back
        where = [name for name in ("evaluate", "train_epoch") if name in stack]
        callers.append(where[0] if where else stack[0])
        return original(self, x, mask)

    monkeypatch.setattr(Augmenter, "__call__", recording)
    t = make(
        tmp_path,
        TINY,
        "train.augment={shift: 0.2, flip: horizontal, rotate: 20, zoom: 0.1}",
        "train.data.test=0.2",
        "train.epochs=2",
    )
    result = t.fit()  # evaluates the validation split every epoch and the test split at the end
    assert "test" in result and "val_loss" in result["history"][0]
    assert callers == ["train_epoch"] * (2 * t.steps)
    callers.clear()
    first = t.evaluate(*t.test)
    second = t.evaluate(*t.test)
    assert callers == []
    assert first == second == result["test"]


# --- atomic writes -------------------------------------------------------------------------------


def test_no_temporary_files_after_a_run(tmp_path: Path, real_plots: None) -> None:
    t = make(tmp_path, TINY, "train.epochs=2")
    t.fit()
    names = {p.relative_to(t.run_dir).as_posix() for p in t.run_dir.rglob("*") if p.is_file()}
    assert names == {
        "spec.yaml",
        "summary.txt",
        "model.json",
        "model.safetensors",
        "metrics.csv",
        "metrics.json",
        "history.png",
        "checkpoint/last.safetensors",
        "checkpoint/best.safetensors",
        "classification_report.txt",  # of the test split (builtin data: test 0.2)
        "classification_report.json",
        "confusion_matrix.png",
        "mistakes.png",
    }
    report = json.loads((t.run_dir / "classification_report.json").read_text())
    assert (report["split"], report["samples"]) == ("test", len(t.data.test))


def test_ctrl_c_while_a_checkpoint_is_written_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = 0
    save_file = checkpoint.save_file

    def slow_disk(tensors, filename, metadata=None):
        nonlocal writes
        writes += 1
        if writes == 2:  # epoch 2's checkpoint: half written, then Ctrl-C
            Path(filename).write_bytes(b"\0" * 100)
            raise KeyboardInterrupt
        return save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", slow_disk)
    sets = ("train.callbacks={checkpoint: {best: false}}",)  # one write per epoch: last only
    t = make(tmp_path, TINY, *sets)
    with pytest.raises(Interrupted, match=r"interrupted during epoch 2; epoch 1 is saved"):
        t.fit()
    assert leftovers(t.run_dir) == []
    _, meta = checkpoint.load(t.run_dir / "checkpoint" / "last.safetensors")
    assert json.loads(meta[checkpoint.STATE_KEY])["run"]["epoch"] == 1

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    resumed = make(tmp_path, TINY, *sets, resume=True)
    assert [r["epoch"] for r in resumed.fit()["history"]] == [1, 2, 3]
    assert leftovers(resumed.run_dir) == []


def test_ctrl_c_before_the_first_epoch_ends_says_nothing_was_saved(tmp_path: Path) -> None:
    t = make(tmp_path, TINY)
    interrupt_on_call(t, 1)
    with pytest.raises(Interrupted, match=r"interrupted during epoch 1; no epoch was completed"):
        t.fit()
    assert not (t.run_dir / "checkpoint" / "last.safetensors").exists()
    assert leftovers(t.run_dir) == []


def test_metrics_json_is_strict_json_after_a_diverged_run(tmp_path: Path) -> None:
    t = make(tmp_path, TINY, "train.optimizer={name: sgd, lr: 1000000.0}")
    t.fit()
    text = (t.run_dir / "metrics.json").read_text()
    # json.loads accepts NaN; a strict parser (browsers, other languages) does not.
    result = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert result["history"][0]["loss"] is None


def test_checkpoint_last_off_keeps_no_resumable_state(tmp_path: Path) -> None:
    t = make(tmp_path, TINY, "train.callbacks={checkpoint: {last: false}}")
    t.fit()
    assert not (t.run_dir / "checkpoint" / "last.safetensors").exists()
    assert (t.run_dir / "model.safetensors").is_file()


def test_run_files_are_readable_like_ordinary_files(tmp_path: Path) -> None:
    t = make(tmp_path, TINY)
    t.fit()
    mask = os.umask(0)
    os.umask(mask)
    for name in ("model.safetensors", "metrics.json", "model.json"):
        assert (t.run_dir / name).stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("marker", ["model.safetensors", "checkpoint"])
def test_training_into_an_existing_run_needs_resume(tmp_path: Path, marker: str) -> None:
    # prepare_run knows a run by the model.json netspec wrote; no training is needed.
    from netspec.runs import RunMeta

    spec = tmp_path / "tiny.yaml"
    spec.write_text(textwrap.dedent(TINY))
    out = tmp_path / "run"
    out.mkdir()
    assert prepare_run(spec, [], out, False)[1] == out
    if marker == "checkpoint":
        (out / marker).mkdir()
    else:
        (out / marker).write_bytes(b"")
    # Weights or a checkpoint folder alone are not a run: they may be the user's own files.
    for resume in (False, True):
        with pytest.raises(SpecError, match=r"other files|holds no run made by netspec"):
            prepare_run(spec, [], out, resume)
    RunMeta(name="tiny", netspec_version="0.1.0").write(out / "model.json")
    with pytest.raises(SpecError, match=rf"--out {re.escape(str(out))} already holds a run"):
        prepare_run(spec, [], out, False)
    assert prepare_run(spec, [], out, True)[1] == out  # --resume continues it


def test_make_optimizer_uses_the_fused_adam_step_on_the_cpu() -> None:
    from netspec.backends.training.optim import make_optimizer
    from netspec.train_spec import TrainSpec

    params = [torch.nn.Parameter(torch.randn(4, 3))]
    spec = TrainSpec.model_validate({"data": {"source": "builtin"}, "optimizer": "adam"})
    assert make_optimizer(spec, params).defaults["fused"] is True
    sgd = TrainSpec.model_validate({"data": {"source": "builtin"}, "optimizer": "sgd"})
    assert not make_optimizer(sgd, params).defaults.get("fused")


def test_an_unknown_optimizer_name_is_an_error_not_rmsprop() -> None:
    from netspec.backends.training.optim import make_optimizer
    from netspec.train_spec import TrainSpec

    params = [torch.nn.Parameter(torch.randn(4, 3))]
    spec = TrainSpec.model_validate({"data": {"source": "builtin"}, "optimizer": "rmsprop"})
    assert isinstance(make_optimizer(spec, params), torch.optim.RMSprop)
    # The schema refuses other names; one that got past it must not silently become RMSprop.
    with pytest.raises(Exception, match=r"literal_error|Input should be"):
        TrainSpec.model_validate({"data": {"source": "builtin"}, "optimizer": "lion"})
    object.__setattr__(spec.optimizer, "name", "lion")
    with pytest.raises(SpecError, match="optimizer 'lion' has no PyTorch optimizer"):
        make_optimizer(spec, params)


def test_restored_optimizer_moments_take_their_parameters_memory_layout(tmp_path: Path) -> None:
    # A channels-last weight with contiguous moments made the fused step pair wrong elements.
    w = torch.nn.Parameter(torch.randn(8, 3, 3, 3).contiguous(memory_format=torch.channels_last))
    opt = torch.optim.Adam([w], lr=0.1, fused=True)
    w.grad = torch.randn_like(w)
    opt.step()
    tensors, rest = checkpoint.optimizer_state(opt)
    # As read back from a file: contiguous copies, nothing shared with the live optimizer.
    tensors = {k: v.contiguous().clone() for k, v in tensors.items()}
    twin = torch.nn.Parameter(w.detach().clone())
    opt2 = torch.optim.Adam([twin], lr=0.1, fused=True)
    checkpoint.load_optimizer_state(opt2, tensors, json.loads(json.dumps(rest)))
    assert opt2.state[twin]["exp_avg"].stride() == twin.stride()
    grad = torch.randn_like(w)
    w.grad, twin.grad = grad.clone(), grad.clone()
    opt.step()
    opt2.step()
    assert torch.equal(w, twin)
