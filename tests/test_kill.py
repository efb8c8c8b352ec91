"""kill -9 (no handler runs, unlike Ctrl-C) at seeded points of a `netspec train` process, during
checkpoint writes included, then --resume: the run completes bit-identical to an uninterrupted
one, nothing beyond the last finished checkpoint is lost, and no temporary file is ever read.

The processes are forked from one that has imported torch already (tests/warm.py): the five
killed runs do not each pay ~2.5 s of CPU importing it before their first epoch."""

from __future__ import annotations

import json
import os
import random
import signal
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import NO_PICTURES, digits_npz, invoke, tiny_spec
from safetensors import safe_open
from warm import Warm, warm_netspec

from netspec.runs import prepare_run, read_weights

# Wide enough that a checkpoint (weights and Adam's two moments, ~3.6 MB) takes a while to write.
WIDE = ("dense: {units: 512, activation: relu}", "dropout: {rate: 0.25}")
WIDE += ("dense: {units: 512, activation: relu}", "dense: {units: 10, activation: softmax}")
# The digits from an .npz beside the spec (helpers.digits_npz): no process imports scikit-learn.
DATA = "{source: arrays, path: digits.npz, limit: 300, val: 0.2}"
SPEC = tiny_spec(("flatten", *WIDE), name="killed", data=DATA, epochs=5, seed=3, log=NO_PICTURES)

GARBAGE = ".last.safetensors.garbage.tmp"  # planted before each resume: must never be read
TIMEOUT = 180  # seconds for any one process; a hang fails the test instead of the suite
# One thread everywhere (run_here too): the same arithmetic in every process, and fair to the
# shared cores.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def run_here(spec: Path, out: Path, *extra: str) -> str:
    """`netspec train` to the end in this process (no kill is aimed at it, so it needs none of
    its own), on one thread as the killed processes (ENV); what it logged."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        done = invoke("train", spec, "--out", out, *extra, "--no-progress")
    finally:
        torch.set_num_threads(threads)
    assert done.exit_code == 0, done.output
    return done.output


def temporaries(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def kill_when(warm: Warm, spec: Path, out: Path, point, *extra: str) -> bool:
    """Start training, SIGKILL it once `point(out)(out)` is true; False if it finished first."""
    proc = warm.run(["train", spec, "--out", out, *extra, "--no-progress"])
    ready = point(out)
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None:
        if ready(out):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=TIMEOUT)
            return True
        assert time.monotonic() < deadline, "training did not reach the kill point in time"
        time.sleep(0.0005)
    return False


def writing(name: str):
    """While an atomic write of `name` is under way: a temporary file of it that is new."""
    folder, stem = Path(name).parent, f".{Path(name).name}."

    def temporaries_of(run: Path) -> set[str]:
        try:
            return {
                p for p in os.listdir(run / folder) if p.startswith(stem) and p.endswith(".tmp")
            }
        except FileNotFoundError:
            return set()

    def point(run: Path):
        stale = temporaries_of(run)  # left by an earlier kill (or planted): not a write
        return lambda run: bool(temporaries_of(run) - stale)

    return point


def after(seconds: float):
    """Once `seconds` have passed since the process started."""

    def point(run: Path):
        start = time.monotonic()
        return lambda run: time.monotonic() - start >= seconds

    return point


def finishing(epochs: int):
    """After the last epoch's checkpoint: while the final model is written (or soon after)."""
    model = writing("model.safetensors")

    def point(run: Path):
        writes = model(run)

        def ready(run: Path) -> bool:
            last = run / "checkpoint" / "last.safetensors"
            return writes(run) or (last.is_file() and checkpoint_epoch(last) == epochs)

        return ready

    return point


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch checkpoint/last.safetensors was saved after (None: there is none yet)."""
    if not path.is_file():
        return None
    with safe_open(str(path), framework="numpy") as f:
        return json.loads((f.metadata() or {})["netspec_state"])["run"]["epoch"]


def check_no_file_is_truncated(run: Path) -> None:
    for path in run.rglob("*.safetensors"):
        read_weights(path)  # raises on a truncated or corrupt file


def weights_equal(a: Path, b: Path) -> None:
    got, _ = read_weights(a)
    want, _ = read_weights(b)
    assert got.keys() == want.keys()
    for key in want:
        assert np.array_equal(got[key], want[key]), key


def losses(run: Path) -> list[tuple[float, float]]:
    history = json.loads((run / "metrics.json").read_text())["history"]
    return [(row["loss"], row["val_loss"]) for row in history]


def test_stale_temporaries_are_removed_on_resume_never_read(tmp_path: Path) -> None:
    # What a killed atomic write leaves: a half-written file under a temporary name.
    spec = tmp_path / "killed.yaml"
    spec.write_text(textwrap.dedent(SPEC))
    digits_npz(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "spec.yaml").write_text(textwrap.dedent(SPEC))
    (run / "model.json").write_text('{"name": "killed", "netspec_version": "0.1.0"}')  # the marker
    stale = [run / "checkpoint" / ".last.safetensors.x1y2.tmp", run / ".model.safetensors.z.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 100)
    (run / "notes.tmp").write_text("the user's")  # not a temporary of ours: kept
    prepare_run(spec, [], run, True)
    assert temporaries(run) == [run / "notes.tmp"]


@pytest.mark.slow  # five forked `netspec train` processes killed, two runs in-process
def test_kill_9_then_resume_is_bit_identical(tmp_path: Path, no_plots: None) -> None:
    spec = tmp_path / "killed.yaml"
    spec.write_text(textwrap.dedent(SPEC))
    digits_npz(tmp_path)
    reference = tmp_path / "reference"
    run_here(spec, reference)

    run = tmp_path / "run"
    rng = random.Random(16)
    points = [
        ("the first checkpoint write", writing("checkpoint/best.safetensors")),
        ("a checkpoint write", writing("checkpoint/last.safetensors")),
        # Early enough that a fast machine has epochs left after it: a forked run (tests/warm.py)
        # starts at once and takes 0.2-0.4 s, its first checkpoint at ~0.1 s.
        ("a seeded moment", after(rng.uniform(0.02, 0.15))),
        ("a later checkpoint write", writing("checkpoint/last.safetensors")),
        ("the final model's write", finishing(5)),
    ]
    resume: tuple[str, ...] = ()
    killed, mid_write = [], []
    with warm_netspec(ENV) as warm:
        for what, point in points:
            saved = checkpoint_epoch(run / "checkpoint" / "last.safetensors")
            if kill_when(warm, spec, run, point, *resume):
                killed.append(what)
            elif what != "a seeded moment":
                pytest.fail(f"training ended before {what}")
            if any(p.name != GARBAGE for p in temporaries(run)):
                mid_write.append(what)  # killed between a temporary's creation and its rename
            if run.exists():
                check_no_file_is_truncated(run)
                now = checkpoint_epoch(run / "checkpoint" / "last.safetensors")
                # Never behind the checkpoint the killed process started from.
                assert (now or 0) >= (saved or 0), what
                # A garbage temporary: reading it, rather than the last checkpoint, would fail.
                (run / "checkpoint").mkdir(exist_ok=True)
                (run / "checkpoint" / GARBAGE).write_bytes(b"\0" * 64)
                resume = ("--resume",)
    assert len(killed) >= 4, killed
    assert mid_write, "no kill landed during a write"

    saved = checkpoint_epoch(run / "checkpoint" / "last.safetensors")
    log = run_here(spec, run, "--resume")
    assert f"resumed {run} after epoch {saved}" in log  # nothing before the last checkpoint lost
    assert temporaries(run) == []
    weights_equal(run / "model.safetensors", reference / "model.safetensors")
    weights_equal(
        run / "checkpoint" / "last.safetensors", reference / "checkpoint" / "last.safetensors"
    )
    assert losses(run) == losses(reference)
