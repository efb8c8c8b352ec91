"""`netspec train --nnodes 2`: two launchers on this host meet at a localhost endpoint and train
as one world; a node that never arrives, or dies mid-run, ends the other with one clear error.

Each launcher is a real `netspec train` subprocess (torchrun inside, gloo), bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import NO_PICTURES, digits_npz, fails, invoke, spawned, tiny_spec, write_spec
from safetensors import safe_open
from safetensors.torch import load_file

from netspec.backends.training.launch import torchrun_args

# No dropout, no augmentation: every world size computes the same thing (as test_distributed.py).
# The digits from an .npz beside the spec (helpers.digits_npz): no process imports scikit-learn.
DATA = "{source: arrays, path: digits.npz, limit: 201, val: 0.2, test: 0.1}"
SPEC = tiny_spec(data=DATA, batch_size=16, seed=4, metrics="[accuracy, f1]", log=NO_PICTURES)


def write(tmp_path: Path) -> Path:
    digits_npz(tmp_path)
    return write_spec(tmp_path, SPEC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def node_cmd(spec: Path, out: Path, rank: int, port: int, *more: str) -> list[str]:
    """One node's `netspec train`: 1 process, node `rank` of 2, meeting at 127.0.0.1:`port`."""
    cmd = [sys.executable, "-m", "netspec", "train", str(spec), "--out", str(out), "--nproc", "1"]
    cmd += ["--nnodes", "2", "--node-rank", str(rank), "--rdzv-endpoint", f"127.0.0.1:{port}"]
    return [*cmd, "--no-progress", *more]


def test_the_rdzv_timeout_reaches_torchrun() -> None:
    args = torchrun_args(["s.yaml"], nproc=1, nnodes=2, node_rank=0, endpoint="h:29500", timeout=7)
    assert args[args.index("--rdzv-conf") + 1] == "timeout=7"
    assert "--rdzv-conf" not in torchrun_args([], nproc=1, nnodes=1, node_rank=0, endpoint=None)


def test_a_rdzv_timeout_below_one_second_is_refused(tmp_path: Path) -> None:
    args = ["--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    fails(
        invoke("train", write(tmp_path), *args, "--rdzv-timeout", "0"),
        "--rdzv-timeout must be 1 second or more, not 0",
    )


@pytest.mark.slow  # each launcher waits --rdzv-timeout 1 s for the other, in vain, side by side
def test_a_node_that_never_arrives_is_a_timeout_error(tmp_path: Path) -> None:
    spec = write(tmp_path)
    # Node 0 (hosting the endpoint) and node 1 (meeting at one nobody hosts), each alone on
    # its own port; the communicate timeout is the no-hang check: each must give up by itself.
    ports = [free_port(), free_port()]
    while ports[1] == ports[0]:  # two ports: the nodes must not meet
        ports[1] = free_port()
    cmds = [
        node_cmd(spec, tmp_path / f"run{r}", r, ports[r], "--rdzv-timeout", "1") for r in (0, 1)
    ]
    with (
        spawned(cmds[0], stderr=subprocess.PIPE) as zero,
        spawned(cmds[1], stderr=subprocess.PIPE) as one,
    ):
        errs = [p.communicate(timeout=120)[1].decode() for p in (zero, one)]
    for rank, proc, err in zip((0, 1), (zero, one), errs, strict=True):
        assert proc.returncode == 2, (rank, err)
        assert (
            f"error: the 2 nodes did not all meet at --rdzv-endpoint 127.0.0.1:{ports[rank]} "
            "within 1 s" in err
        ), (rank, err)
        assert "--rdzv-timeout SECONDS waits longer" in err
        assert "Traceback" not in err and "frame #" not in err


@pytest.mark.slow  # 2 nodes, node 0 SIGKILLed after a checkpoint, a 1-process resume (~10 s)
def test_two_nodes_train_the_weights_of_one_process_even_one_killed_and_resumed(
    tmp_path: Path, no_plots: None
) -> None:
    """Two launchers meet and train as one world; node 0 (hosting the endpoint: the harder
    loss) is SIGKILLed after a checkpoint, which ends node 1 with one clear error; the run,
    resumed by one process, ends with the weights and scores of an uninterrupted 1-process run.
    tests/test_distributed.py checks that 2 processes of one launcher train these weights too.

    One 2-node run serves both checks: each 2-node run is four processes that import torch."""
    spec = write(tmp_path)
    run, port = tmp_path / "run", free_port()
    last = run / "checkpoint" / "last.safetensors"
    long = ("--set", "train.epochs=10000")
    doomed_err = tmp_path / "node0.err"
    with (
        doomed_err.open("wb") as err0,
        spawned(
            node_cmd(spec, run, 0, port, *long), stdout=subprocess.DEVNULL, stderr=err0
        ) as doomed,
        spawned(
            node_cmd(spec, run, 1, port, *long), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as survivor,
    ):
        deadline = time.monotonic() + 180
        while not last.is_file() and time.monotonic() < deadline and survivor.poll() is None:
            time.sleep(0.1)
        assert last.is_file(), "no epoch was checkpointed"
        os.killpg(doomed.pid, signal.SIGKILL)  # the doomed launcher and its worker
        out, err = (b.decode() for b in survivor.communicate(timeout=120))  # the no-hang check
    assert "data-parallel: 2 processes on 2 nodes" in doomed_err.read_text()  # said by rank 0
    assert survivor.returncode == 2, err
    assert "error: lost another process of this data-parallel run" in err
    assert "start it again with --resume" in err
    assert "Traceback" not in err
    assert out == "" and "run saved in" not in err  # rank 0 (node 0's process) alone talks

    # Any N continues it: here one process alone, two more epochs than the checkpoint's.
    with safe_open(str(last), framework="pt") as f:
        epoch = json.loads(f.metadata()["netspec_state"])["run"]["epoch"]
    epochs = ("--set", f"train.epochs={epoch + 2}")
    alone = invoke("train", spec, "--out", run, "--resume", *epochs)
    assert alone.exit_code == 0, alone.output
    assert f"resumed {run} after epoch" in alone.output
    assert json.loads(alone.stdout)["epochs"] == epoch + 2

    one = invoke("train", spec, "--out", tmp_path / "one", *epochs)
    assert one.exit_code == 0, one.output
    a, b = (load_file(str(d / "model.safetensors")) for d in (tmp_path / "one", run))
    # The existing tolerance (tests/test_distributed.py): float32 rounding of summed gradients.
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    ha, hb = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "one", run))
    assert len(hb["history"]) == epoch + 2
    for ra, rb in zip(ha["history"], hb["history"], strict=True):
        assert ra["val_accuracy"] == rb["val_accuracy"]
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5)
