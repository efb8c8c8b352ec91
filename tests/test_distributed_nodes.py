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


@pytest.mark.slow  # two 2-node launchers beside one in-process run
def test_two_nodes_train_the_weights_of_one_process(tmp_path: Path, no_plots: None) -> None:
    # tests/test_distributed.py checks that 2 processes of one launcher train these weights too.
    spec = write(tmp_path)
    port, nodes = free_port(), tmp_path / "nodes"
    with (
        spawned(
            node_cmd(spec, nodes, 0, port), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as first,
        spawned(node_cmd(spec, nodes, 1, port), stderr=subprocess.PIPE) as second,
    ):
        # The 1-process reference trains here while the nodes start (in other processes).
        one = invoke("train", spec, "--out", tmp_path / "one")
        first_out, first_err = (b.decode() for b in first.communicate(timeout=300))
        second_err = second.communicate(timeout=120)[1].decode()
    assert one.exit_code == 0, one.output
    assert first.returncode == 0, first_err
    assert second.returncode == 0, second_err
    assert "data-parallel: 2 processes on 2 nodes" in first_err  # the world, said once
    assert "run saved in" not in second_err  # rank 0 (node 0's process) alone talks
    assert json.loads(first_out)["epochs"] == 2
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("one", "nodes"))
    # The existing tolerance (tests/test_distributed.py): float32 rounding of summed gradients.
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    ha, hb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "nodes"))
    for ra, rb in zip(ha["history"], hb["history"], strict=True):
        assert ra["val_accuracy"] == rb["val_accuracy"]
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5)


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


@pytest.mark.slow  # 2 nodes, node 0 SIGKILLed after a checkpoint, a 1-process resume (~30 s)
def test_a_node_killed_mid_run_ends_the_other_and_the_run_resumes(
    tmp_path: Path, no_plots: None
) -> None:
    killed = 0  # the node that hosts the endpoint: the harder loss (killing 1 was tried too)
    spec = write(tmp_path)
    run, port = tmp_path / "run", free_port()
    last = run / "checkpoint" / "last.safetensors"
    long = ("--set", "train.epochs=10000")
    with (
        spawned(
            node_cmd(spec, run, killed, port, *long),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as doomed,
        spawned(
            node_cmd(spec, run, 1 - killed, port, *long),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        ) as survivor,
    ):
        deadline = time.monotonic() + 180
        while not last.is_file() and time.monotonic() < deadline and survivor.poll() is None:
            time.sleep(0.1)
        assert last.is_file(), "no epoch was checkpointed"
        os.killpg(doomed.pid, signal.SIGKILL)  # the doomed launcher and its worker
        err = survivor.communicate(timeout=120)[1].decode()  # the no-hang check
    assert survivor.returncode == 2, err
    assert "error: lost another process of this data-parallel run" in err
    assert "start it again with --resume" in err
    assert "Traceback" not in err

    # Any N continues it: here one process alone, two more epochs than the checkpoint's.
    with safe_open(str(last), framework="pt") as f:
        epoch = json.loads(f.metadata()["netspec_state"])["run"]["epoch"]
    alone = invoke("train", spec, "--out", run, "--resume", "--set", f"train.epochs={epoch + 2}")
    assert alone.exit_code == 0, alone.output
    assert f"resumed {run} after epoch" in alone.output
    assert json.loads(alone.stdout)["epochs"] == epoch + 2
