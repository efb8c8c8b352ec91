"""`netspec train --nproc`: data-parallel workers started by torchrun, gloo on the CPU.

The runs go through real subprocesses (torchrun starts workers), each bounded by a timeout;
the checks that refuse a launch run in-process, before any worker starts.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from helpers import NO_PICTURES, digits_npz, fails, invoke, spawned, tiny_spec, write_spec
from safetensors import safe_open
from safetensors.torch import load_file

from netspec import compile_file
from netspec.backends.lowering import build_module
from netspec.backends.lowering.weighted import FrozenBatchNorm2d
from netspec.backends.training.distributed import Dist, sync_batchnorm
from netspec.backends.training.launch import torchrun_args
from netspec.backends.training.loop import Trainer
from netspec.backends.training.metrics import Metrics
from netspec.backends.weights import weights
from netspec.errors import SpecError
from netspec.runs import PreparedRun

# No dropout, no augmentation: 1 and 2 processes then compute the same thing. 141 training
# digits in batches of 16: the last batch of 13 splits 7/6, so unequal shares are weighted too.
# The digits from an .npz beside the spec (helpers.digits_npz): no process imports scikit-learn.
DATA = "{source: arrays, path: digits.npz, limit: 201, val: 0.2, test: 0.1}"
SPEC = tiny_spec(data=DATA, batch_size=16, seed=4, metrics="[accuracy, f1]", log=NO_PICTURES)

TWO_CORES = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="two worker processes need two cores"
)


def write(tmp_path: Path, text: str = SPEC) -> Path:
    digits_npz(tmp_path)
    return write_spec(tmp_path, text)


def netspec_train(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m netspec train ARGS` in a subprocess, bounded by `timeout` seconds."""
    cmd = [sys.executable, "-m", "netspec", "train", *map(str, args), "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


# --- refused before any worker starts ------------------------------------------------------


@pytest.mark.parametrize("n", [0, 10_000])
def test_nproc_out_of_range(tmp_path: Path, n: int) -> None:
    fails(invoke("train", write(tmp_path), "--nproc", n), f"--nproc {n}: expected 1 to")


def test_batch_size_must_divide_by_the_processes(tmp_path: Path) -> None:
    out = fails(
        invoke(
            "train",
            write(tmp_path),
            "--nproc",
            "1",
            "--nnodes",
            "3",
            "--rdzv-endpoint",
            f"127.0.0.1:{free_port()}",
        ),
        "train.batch_size: batch_size 16 does not divide by the 3 processes",
    )
    assert "--set train.batch_size=15" in out


def test_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        port = s.getsockname()[1]
        fails(
            invoke(
                "train", write(tmp_path), "--nproc", "1", "--rdzv-endpoint", f"127.0.0.1:{port}"
            ),
            f"port {port} is in use",
        )


def test_a_bad_endpoint(tmp_path: Path) -> None:
    fails(
        invoke("train", write(tmp_path), "--nproc", "1", "--rdzv-endpoint", "node001"),
        "--rdzv-endpoint 'node001' is not HOST:PORT",
    )


def test_multi_node_flags_reach_torchrun() -> None:
    args = torchrun_args(
        ["s.yaml", "--out", "r"], nproc=4, nnodes=2, node_rank=1, endpoint="node001:29400"
    )
    assert args == [
        *("--nproc-per-node", "4", "--nnodes", "2", "--node-rank", "1"),
        *("--master-addr", "node001", "--master-port", "29400", "--rdzv-conf", "timeout=300"),
        *("--module", "netspec", "train", "s.yaml", "--out", "r"),
    ]
    assert "--standalone" in torchrun_args([], nproc=2, nnodes=1, node_rank=0, endpoint=None)


# --- the parts, in-process -----------------------------------------------------------------


def _halves(task, names, k, logits, target) -> tuple[Metrics, Metrics, Metrics]:
    whole, a, b = (Metrics(names, task=task, num_classes=k) for _ in range(3))
    whole.update(logits, target)
    a.update(logits[:7], target[:7])
    b.update(logits[7:], target[7:])
    return whole, a, b


@pytest.mark.parametrize(
    ("task", "names", "k"),
    [("multiclass", ["accuracy", "f1", "top5_accuracy"], 6), ("regression", ["mae", "rmse"], 1)],
)
def test_metrics_summed_across_processes_are_the_whole_sets(task, names, k) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20, k, generator=g)
    # Both drawn from g: the global generator, freshly seeded with 0 by an earlier test in the
    # process, drew targets equal to these logits (every error 0, and the halves' scores equal).
    if task == "multiclass":
        target = torch.randint(0, k, (20,), generator=g)
    else:
        target = torch.randn(20, k, generator=g)
    whole, a, b = _halves(task, names, k, logits, target)
    # Two ranks' all_reduce, played in one process: b's statistics are added to a's.
    sent: list[torch.Tensor] = []
    b.sum_across(lambda t: sent.append(t.clone()), torch.device("cpu"))
    a.sum_across(lambda t: t.add_(sent.pop(0)), torch.device("cpu"))
    assert a.compute() == pytest.approx(whole.compute(), rel=1e-12)
    assert a.compute() != b.compute()


def test_a_rank_that_saw_nothing_adds_nothing() -> None:
    seen, empty = (Metrics(["accuracy"], task="binary", num_classes=1) for _ in range(2))
    seen.update(torch.tensor([1.0, -1.0, 2.0]), torch.tensor([1, 1, 1]))
    sent: list[torch.Tensor] = []
    seen.sum_across(lambda t: sent.append(t.clone()), torch.device("cpu"))
    empty.sum_across(lambda t: t.add_(sent.pop(0)), torch.device("cpu"))
    assert empty.compute() == {"accuracy": pytest.approx(2 / 3)}


BN_SPEC = """\
name: bn
input: [1, 8, 8]
layers:
  - conv2d: {filters: 4, kernel: 3}
  - batchnorm:
    name: free
  - conv2d: {filters: 4, kernel: 3}
  - batchnorm:
    name: frozen
    trainable: false
  - flatten
  - dense: {units: 3}
"""


def test_sync_batchnorm_converts_the_trainable_batchnorms_only(tmp_path: Path) -> None:
    module = build_module(compile_file(write(tmp_path, BN_SPEC)))
    before = weights(module)
    x = torch.randn(4, 1, 8, 8)
    out = module.eval()(x)
    assert sync_batchnorm(module) == ["free"]
    assert type(module.layer("free")) is torch.nn.SyncBatchNorm
    assert type(module.layer("frozen")) is FrozenBatchNorm2d  # keeps its running statistics
    after = weights(module)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert torch.equal(module(x), out)  # the rebuilt forward runs the new module


def test_sync_batchnorm_on_the_cpu_is_refused(tmp_path: Path) -> None:
    text = SPEC.replace("layers:\n", "layers:\n  - batchnorm\n").replace(
        "  seed: 4", "  seed: 4\n  sync_batchnorm: true"
    )
    graph = compile_file(write(tmp_path, text))
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        run = PreparedRun(graph, tmp_path / "run")
        trainer = Trainer(run, dist=Dist(0, 1, torch.device("cpu")))
        with pytest.raises(SpecError, match="sync_batchnorm needs CUDA"):
            trainer.setup()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("ends", ["finished", "failed"])
def test_the_trainer_is_freed_before_the_group_is_destroyed(
    tmp_path: Path, monkeypatch, ends: str
) -> None:
    """A rank's DDP module (which holds the process group) is gone when the group is destroyed,
    even if the Trainer sits in a reference cycle or in the frames of an error. Before, it lived
    on until the interpreter's exit, where gloo's teardown aborted a finished worker once (exit
    -6, "terminate called without an active exception")."""
    from netspec.backends.training import run as run_mod
    from netspec.runs import TrainOptions

    env = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    env |= {"MASTER_PORT": str(free_port()), "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    alive: list[int] = []
    close = Dist.close

    def counting_close(self: Dist) -> None:
        gc.collect()  # what a cycle alone keeps is not counted
        ddp = torch.nn.parallel.DistributedDataParallel
        alive.append(sum(type(o) is ddp for o in gc.get_objects()))
        close(self)

    monkeypatch.setattr(Dist, "close", counting_close)
    threads = torch.get_num_threads()  # a rank sets its share of the cores
    if ends == "failed":

        def failing_fit(self: Trainer) -> None:
            raise SpecError.one("a failure mid-run")

        monkeypatch.setattr(Trainer, "fit", failing_fit)
    try:
        run = PreparedRun(compile_file(write(tmp_path)), tmp_path / "run")
        with pytest.raises(SpecError) if ends == "failed" else contextlib.nullcontext():
            run_mod.train_run(run, TrainOptions(progress=False), lambda line: None)
    finally:
        torch.set_num_threads(threads)
    assert alive == [0]


# --- real workers --------------------------------------------------------------------------


@TWO_CORES
@pytest.mark.slow  # a 2-process run killed, resumed with 2 processes; two in-process runs
def test_two_processes_train_the_weights_of_one_even_killed_and_resumed(
    tmp_path: Path, no_plots: None
) -> None:
    """A 2-process run, SIGKILLed after a checkpoint and resumed with 2 processes streaming
    their shards (cache: none), ends with the weights and scores of an uninterrupted 1-process
    run in memory; resumed with 1 process, it goes on with a note (one launch of each kind
    proves all three: each 2-process launch is three processes that import torch)."""
    spec = write(tmp_path)
    run = tmp_path / "run"
    last = run / "checkpoint" / "last.safetensors"
    cmd = [sys.executable, "-m", "netspec", "train", str(spec), "--out", str(run)]
    cmd += ["--nproc", "2", "--set", "train.epochs=10000", "--no-progress"]
    # The launcher and its workers: the session `spawned` started, all killed at once.
    with spawned(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 120  # reached only on failure
        while not last.is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert last.is_file(), "no epoch was checkpointed"
        os.killpg(proc.pid, signal.SIGKILL)
    assert not (run / "model.safetensors").exists()
    with safe_open(str(last), framework="pt") as f:
        epoch = json.loads(f.metadata()["netspec_state"])["run"]["epoch"]
        assert {"rng/rank0/torch", "rng/rank1/torch", "rng/rank1/augment/generator"} <= set(
            f.keys()
        )

    # Resumed streaming: each process reads only its shard of x, memory-mapped, in a loader
    # worker of its own (the rest of this test then checks streamed shards train as memory does).
    epochs = epoch + 1
    stream = ("--set", "train.data.cache=none", "--set", "train.data.workers=1")
    two = netspec_train(
        spec, "--out", run, "--resume", "--nproc", "2", "--set", f"train.epochs={epochs}", *stream
    )
    assert two.returncode == 0, two.stderr
    assert "x is read memory-mapped from its file, batch by batch" in two.stderr
    assert f"resumed {run} after epoch {epoch}" in two.stderr
    assert "note: the checkpoint" not in two.stderr
    assert two.stderr.count("run saved in") == 1  # rank 0 alone talks
    assert "data-parallel: 2 processes on 1 node" in two.stderr
    assert json.loads(two.stdout)["epochs"] == epochs  # one result, printed once

    one = invoke("train", spec, "--out", tmp_path / "one", "--set", f"train.epochs={epochs}")
    assert one.exit_code == 0, one.output
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys()
    # Gradients summed in another order: equal to float32 rounding (measured 1.5e-8).
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    ha, hb = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "one", run))
    assert len(hb["history"]) == epochs
    for ra, rb in zip(ha["history"], hb["history"], strict=True):
        for k in ("accuracy", "f1", "val_accuracy", "val_f1"):
            assert ra[k] == rb[k], k  # counts over the whole set, not averages of ranks
        for k in ("loss", "val_loss"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-5), k
    assert hb["test"]["accuracy"] == ha["test"]["accuracy"]

    # Another number of processes: the weights and optimizer carry over, rank 1's RNG does not.
    alone = invoke("train", spec, "--out", run, "--resume", "--set", f"train.epochs={epoch + 2}")
    assert alone.exit_code == 0, alone.output
    assert (
        "note: the checkpoint was made by 2 processes; the augmentation and dropout streams "
        "of ranks 1..1 are not continued"
    ) in alone.output
    assert json.loads(alone.stdout)["epochs"] == epoch + 2
