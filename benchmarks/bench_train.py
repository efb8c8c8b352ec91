"""How fast does `netspec train` train, next to the PyTorch loop people write by hand?

For specs/mnist_cnn.yaml and specs/cifar_cnn.yaml (batch 64, Adam, the spec's own preprocessing
and metrics), on synthetic uint8 images held in memory (no downloads), one epoch per measurement:

  (a) hand      a hand-written nn.Sequential of the same layers and a plain loop: NCHW, x[idx]
                gather, float conversion and scaling, forward, F.cross_entropy, zero_grad,
                backward, step;
  (b) hand+CL   the same loop with the model and each batch in channels-last memory format;
  (c) netspec   `Trainer.train_epoch()` built through the real API (the spec, with its data
                pointed at an .npz of the same arrays) with the default options;
  (d) netspec CL off   the same with `channels_last: off`, like for like with (a);
  (e) with --ablate: netspec's default without its malloc setting (`keep_freed_memory`).

Each contender runs in a process of its own, as a user's script would (so netspec's
process-wide settings cannot help the hand-written loops, and no allocator or cache state is
shared), with the same torch thread count. One coordinator runs them interleaved, one epoch at a
time (a, b, c, d, then b, c, d, a, ...: rotated each round), after an uncounted warm-up epoch
each, on the same data, from the same initial weights; the rounds are spread over several sets
of fresh worker processes (see `interleaved`). An epoch during which other processes
took the cores the contender needed is run again (see `timed`). The tables give medians and the
ratios c/a (target >= 1.2), d/a (>= 0.95) and c/b (>= 0.95); the exit status is 1 if one is
missed.

Augmentation is off in that comparison (the hand-written loop has none). A second table splits
a netspec step into phases, timed inside the real `Trainer.train_epoch()` (CPU ops are
synchronous, so perf_counter around each call is exact): forward and loss, backward, optimizer,
and what is outside them: the batch (gather, normalize, channels-last, augmentation), the
metrics update and the rest of the loop. For both specs as in the first table, and for
cifar_cnn also with its own augmentation (flip: horizontal, shift: 0.1).

    python benchmarks/bench_train.py                # 1,024 samples per epoch, 12 rounds
    python benchmarks/bench_train.py --quick        # 512 samples, 3 rounds, one set of workers
    python benchmarks/bench_train.py --threads 1 --cases mnist_cnn --rounds 21 --ablate
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
BATCH = 64
LR = 1e-3
TARGETS = {"c/a": 1.2, "d/a": 0.95, "c/b": 0.95}
LABELS = {
    "a": "(a) hand-written, NCHW",
    "b": "(b) hand-written, channels-last",
    "c": "(c) netspec default",
    "d": "(d) netspec, channels_last: off",
    "e": "(e) netspec default, malloc untouched",
}


# --- the hand-written models: what a user writes for the same specs ----------------------------


def hand_mnist_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(576, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def hand_cifar_cnn() -> nn.Module:
    def stage(cin: int, c: int, p: float) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, c, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(c),
            nn.Conv2d(c, c, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(c),
            nn.MaxPool2d(2),
            nn.Dropout(p),
        ]

    return nn.Sequential(
        *stage(3, 32, 0.2),
        *stage(32, 64, 0.3),
        *stage(64, 128, 0.4),
        nn.Flatten(),
        nn.Linear(2048, 512),
        nn.ReLU(),
        nn.BatchNorm1d(512),
        nn.Dropout(0.5),
        nn.Linear(512, 10),
    )


CASES: dict[str, tuple[tuple[int, int, int], Callable[[], nn.Module]]] = {
    "mnist_cnn": ((1, 28, 28), hand_mnist_cnn),
    "cifar_cnn": ((3, 32, 32), hand_cifar_cnn),
}


def synthetic(shape: tuple[int, ...], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, C, H, W) with some structure, and labels 0..9 (all ten present)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.int64)
    rng.shuffle(y)
    return x, y


# --- the contenders -----------------------------------------------------------------------------


class HandLoop:
    """The plain loop: gather, float, scale (and normalize like the spec), forward, loss, step."""

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        scale: float,
        mean: torch.Tensor | None,
        std: torch.Tensor | None,
        channels_last: bool,
        seed: int,
    ) -> None:
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.fmt)
        self.x, self.y = x, y
        self.scale, self.mean, self.std = scale, mean, std
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.gen = torch.Generator().manual_seed(seed)

    def epoch(self) -> None:
        model, opt = self.model, self.opt
        model.train()
        n = len(self.y)
        perm = torch.randperm(n, generator=self.gen)
        for s in range(0, n, BATCH):
            idx = perm[s : s + BATCH]
            xb = self.x[idx].float() * self.scale
            if self.mean is not None:
                xb = (xb - self.mean) / self.std
            xb = xb.contiguous(memory_format=self.fmt)
            yb = self.y[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()


def netspec_graph(name: str, npz: Path, overrides: list[str]):
    """specs/<name>.yaml with its data pointed at the arrays in `npz`, batch 64, Adam."""
    from netspec.compiler import compile_source
    from netspec.source import apply_overrides, read

    sets = [
        f"train.data={{source: arrays, path: '{npz}', val: 0.0, test: 0.0}}",
        f"train.batch_size={BATCH}",
        f"train.optimizer={{name: adam, lr: {LR}}}",
        "train.epochs=1000",  # keeps a per-epoch schedule away from lr 0; it is not stepped here
        *overrides,
    ]
    return compile_source(apply_overrides(read(REPO / "specs" / f"{name}.yaml"), sets))


def netspec_trainer(name: str, npz: Path, run_dir: Path, overrides: list[str]):
    """A Trainer for the spec on the arrays in `npz`, through the public API, set up."""
    from netspec.backends.training.loop import Trainer
    from netspec.runs import PreparedRun, TrainOptions

    graph = netspec_graph(name, npz, overrides)
    run, options = PreparedRun(graph, run_dir), TrainOptions("cpu", progress=False)
    t = Trainer(run, options, log=lambda s: None)
    t.setup()
    return t


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """netspec's initial weights into the hand model, tensor by tensor in order (checks shapes)."""
    a, b = list(src.state_dict().values()), list(dst.state_dict().values())
    if [tuple(t.shape) for t in a] != [tuple(t.shape) for t in b]:
        raise SystemExit("the hand-written model does not match the spec's layers")
    with torch.no_grad():
        for s, d in zip(a, b):
            d.copy_(s)


def hand_loop(name: str, npz: Path, channels_last: bool) -> HandLoop:
    """The hand-written contender, with the spec's preprocessing and initial weights."""
    from netspec.backends.lowering import build_module
    from netspec.data.pipeline import SplitOptions, prepare

    graph = netspec_graph(name, npz, ["train.augment={}"])
    spec = graph.train
    pre = prepare(spec, SplitOptions.of(graph)).preprocessing
    torch.manual_seed(spec.seed)  # the Trainer's initial weights
    model = CASES[name][1]()
    copy_weights(build_module(graph), model)
    with np.load(npz) as f:
        x, y = torch.from_numpy(f["x"]), torch.from_numpy(f["y"])
    mean = torch.tensor(pre.mean).view(1, -1, 1, 1) if pre.mean else None
    std = torch.tensor(pre.std).view(1, -1, 1, 1) if pre.std else None
    return HandLoop(
        model, x, y, scale=pre.scale, mean=mean, std=std, channels_last=channels_last, seed=0
    )


class _Timed:
    """Wraps a callable and adds its wall time to `total`."""

    def __init__(self, fn: Callable) -> None:
        self.fn, self.total = fn, 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.total += time.perf_counter() - t0
        return out

    def __get__(self, obj, objtype=None):  # set on a class (Tensor.backward), bind like a method
        return self if obj is None else functools.partial(self, obj)


class PhaseRun:
    """A netspec epoch with its phases timed, for the table of where a step's time goes.

    The real `Trainer.train_epoch()` runs with its phases wrapped in timers: the batch
    (`_batch`: gather, normalize, channels-last, augmentation), forward (`_train_forward`, the
    step's forward, bound at setup to `_forward` or its data-parallel wrapper), loss,
    backward (`Tensor.backward`), optimizer (`opt.zero_grad`, `opt.step`) and metrics
    (`metrics.update`). What no timer covers (the loop, the running loss) is `other`.
    """

    def __init__(self, name: str, npz: Path, run_dir: Path, augment: bool) -> None:
        self.t = netspec_trainer(name, npz, run_dir, [] if augment else ["train.augment={}"])
        if augment and not self.t.augment.enabled:
            raise SystemExit(f"{name} has no augmentation in its spec")

    def epoch(self) -> dict[str, float]:
        """One epoch; seconds spent in each phase, and the number of steps."""
        t, backward = self.t, torch.Tensor.backward
        timers = {
            "batch": _Timed(t._batch),
            "forward": _Timed(t._train_forward),
            "loss": _Timed(t.loss_fn),
            "backward": _Timed(backward),
            "zero_grad": _Timed(t.opt.zero_grad),
            "step": _Timed(t.opt.step),
            "metrics": _Timed(t.metrics.update),
        }
        t._batch, t._train_forward, t.loss_fn = timers["batch"], timers["forward"], timers["loss"]
        t.opt.zero_grad, t.opt.step = timers["zero_grad"], timers["step"]
        t.metrics.update = timers["metrics"]
        torch.Tensor.backward = timers["backward"]
        try:
            t.train_epoch()
        finally:
            torch.Tensor.backward = backward
            t.loss_fn, t._train_forward = timers["loss"].fn, timers["forward"].fn
            del t._batch, t.opt.zero_grad, t.opt.step, t.metrics.update
        out = {k: timers[k].total for k in ("batch", "forward", "loss", "backward", "metrics")}
        out["optimizer"] = timers["zero_grad"].total + timers["step"].total
        out["steps"] = t.steps
        return out


# --- the worker: one contender in its own process ------------------------------------------------


def contender(kind: str, name: str, npz: Path, run_dir: Path) -> Callable[[], dict[str, float]]:
    """One epoch of contender `kind`, as a function returning phase times (or nothing)."""

    def plain(fn: Callable[[], Any]) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            fn()
            return {}

        return run

    no_aug = ["train.augment={}"]
    if kind in ("a", "b"):
        return plain(hand_loop(name, npz, channels_last=kind == "b").epoch)
    if kind == "c":
        return plain(netspec_trainer(name, npz, run_dir, no_aug).train_epoch)
    if kind == "d":
        cl_off = [*no_aug, "train.channels_last=off"]
        return plain(netspec_trainer(name, npz, run_dir, cl_off).train_epoch)
    if kind == "e":
        import netspec.backends.training.loop as loop

        loop.keep_freed_memory = lambda: False  # this process keeps glibc's defaults
        return plain(netspec_trainer(name, npz, run_dir, no_aug).train_epoch)
    if kind in ("phases", "phases+augment"):
        return PhaseRun(name, npz, run_dir, augment=kind == "phases+augment").epoch
    raise SystemExit(f"unknown contender {kind!r}")


def worker(kind: str, name: str, npz: str, threads: int) -> int:
    """Serve `epoch` requests on stdin with a JSON line each: wall and CPU seconds, phases."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as run_dir:
        epoch = contender(kind, name, Path(npz), Path(run_dir))
        epoch()  # warm-up: oneDNN primitive caches, allocator, first-call paths
        print(json.dumps({"ready": torch.get_num_threads()}), flush=True)
        for line in sys.stdin:
            if line.strip() != "epoch":
                break
            c0, w0 = os.times(), time.perf_counter()
            phases = epoch()
            wall, c1 = time.perf_counter() - w0, os.times()
            cpu = c1.user + c1.system - c0.user - c0.system
            print(json.dumps({"wall": wall, "cpu": cpu, "phases": phases}), flush=True)
    return 0


class Worker:
    """The coordinator's handle on a worker process."""

    def __init__(self, kind: str, name: str, npz: Path, threads: int) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, name, str(npz), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._read()
        if ready.get("ready") != threads:
            raise SystemExit(f"worker {kind} runs {ready.get('ready')} threads, not {threads}")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker {self.kind} ended (exit status {self.proc.wait()})")
        return json.loads(line)

    def epoch(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("epoch\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


# --- other processes ----------------------------------------------------------------------------
# On a shared machine another process's burst can stall a multi-threaded step many times over
# (each parallel region waits for its slowest thread, and a thread may wait for a core). An
# epoch during which other processes kept busy more than the cores the contender leaves free
# (cores - torch threads), plus OTHERS_MAX of the machine, is run again, up to RETRIES times;
# the output says how many were re-run and how many were kept contended. Needs /proc/stat.

OTHERS_MAX = 0.10
RETRIES = 2
contended = {"runs": 0, "retried": 0, "kept": 0}


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy, or None without /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def timed(w: Worker, threads: int) -> dict[str, Any]:
    """One epoch of worker w, re-run while other processes were busy on the cores it needs."""
    cores = os.cpu_count() or 1
    for attempt in range(RETRIES + 1):
        before, own = _busy_seconds(), os.times()
        result = w.epoch()
        after, own2 = _busy_seconds(), os.times()
        contended["runs"] += 1
        if before is None or after is None:
            return result
        mine = result["cpu"] + (own2.user + own2.system - own.user - own.system)
        others = max(0.0, after - before - mine) / result["wall"]  # in cores
        if others <= max(0, cores - threads) + OTHERS_MAX * cores:
            return result
        if attempt < RETRIES:
            contended["retried"] += 1
    contended["kept"] += 1
    return result


def interleaved(
    spawn: Callable[[], list[Worker]], rounds: int, generations: int, threads: int, what: str
) -> list[list[dict]]:
    """Each contender's epochs, run round-robin (rotated by one each round).

    The rounds are split over `generations` sets of fresh worker processes: a process's luck
    (where its buffers land, which kernels its first calls pick) holds for all its epochs, and
    shows as a difference of up to ~10% between two processes running the same thing.
    """
    results: list[list[dict]] = []
    r = 0
    for g in range(generations):
        workers = spawn()
        results = results or [[] for _ in workers]
        order = list(range(len(workers)))
        try:
            for _ in range(rounds * (g + 1) // generations - rounds * g // generations):
                for i in order[r % len(order) :] + order[: r % len(order)]:
                    results[i].append(timed(workers[i], threads))
                r += 1
                progress(f"{what}: round {r}/{rounds}")
        finally:
            for w in workers:
                w.close()
    return results


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


# --- the report ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        kind, name, npz, threads = argv[1:5]
        return worker(kind, name, npz, int(threads))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="512 samples, 3 rounds, 1 generation")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 12)")
    ap.add_argument(
        "--generations", type=int, default=None, help="fresh worker processes (default 4)"
    )
    ap.add_argument("--samples", type=int, default=None, help="samples per epoch (default 1024)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--ablate", action="store_true", help="add (e): no malloc setting")
    ap.add_argument("--no-phases", action="store_true", help="skip the table of phases")
    args = ap.parse_args(argv)
    n = args.samples or (512 if args.quick else 1024)
    rounds = args.rounds or (3 if args.quick else 12)
    generations = max(1, min(rounds, args.generations or (1 if args.quick else 4)))
    threads = args.threads or torch.get_num_threads()
    kinds = ["a", "b", "c", "d"] + (["e"] if args.ablate else [])
    print(
        f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} cores, "
        f"{platform.machine()}, python {platform.python_version()}; {n} samples per epoch, "
        f"batch {BATCH}, adam lr {LR}, {rounds} rounds over {generations} set(s) of worker "
        f"processes; load average "
        f"{os.getloadavg()[0]:.2f} at the start\n"
    )
    rates: dict[str, dict[str, list[float]]] = {}
    phases: list[tuple[str, str, list[dict]]] = []
    with tempfile.TemporaryDirectory() as d:
        npz = {}
        for name in args.cases:
            x, y = synthetic(CASES[name][0], n, seed=0)
            npz[name] = Path(d) / f"{name}.npz"
            np.savez(npz[name], x=x, y=y)
        for name in args.cases:
            runs = interleaved(
                lambda name=name: [Worker(k, name, npz[name], threads) for k in kinds],
                rounds,
                generations,
                threads,
                name,
            )
            rates[name] = {k: [n / r["wall"] for r in rs] for k, rs in zip(kinds, runs)}
        if not args.no_phases:
            cases = [(name, "phases") for name in args.cases]
            if "cifar_cnn" in args.cases:
                cases.append(("cifar_cnn", "phases+augment"))
            runs = interleaved(
                lambda: [Worker(kind, name, npz[name], threads) for name, kind in cases],
                rounds,
                generations,
                threads,
                "phases",
            )
            phases = [(name, kind, rs) for (name, kind), rs in zip(cases, runs)]

    print("Throughput, samples/s: median of the interleaved rounds (best, worst)\n")
    print("| spec | loop | samples/s | best | worst |")
    print("|---|---|---:|---:|---:|")
    for name, by_kind in rates.items():
        for k, v in by_kind.items():
            print(
                f"| {name} | {LABELS[k]} | {statistics.median(v):,.0f} | {max(v):,.0f} | "
                f"{min(v):,.0f} |"
            )
    ratios = ["c/a", "d/a", "c/b", "b/a"] + (["c/e"] if args.ablate else [])
    print(
        "\nRatios of the medians (in brackets: the median of the per-round ratios, each from"
        " one round's epochs)\n"
    )
    heads = [f"{r} (>= {TARGETS[r]})" if r in TARGETS else r for r in ratios]
    print(f"| spec | {' | '.join(heads)} |")
    print("|---|" + "---:|" * len(ratios))
    ok = True
    for name, by_kind in rates.items():
        cells = []
        for key in ratios:
            num, den = (by_kind[k] for k in key.split("/"))
            ratio = statistics.median(num) / statistics.median(den)
            paired = statistics.median(u / v for u, v in zip(num, den))
            missed = key in TARGETS and ratio < TARGETS[key]
            ok &= not missed
            cells.append(f"{ratio:.2f} ({paired:.2f})" + (" missed" if missed else ""))
        print(f"| {name} | {' | '.join(cells)} |")

    if phases:
        print(
            "\nA netspec step by phase, ms (median of rounds); outside = the share of the step"
            " not in forward, loss, backward or the optimizer\n"
        )
        print(
            "| spec | augmentation | step | forward+loss | backward | optimizer | batch "
            "| metrics | other | outside |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, kind, rs in phases:
            rows = []
            for r in rs:
                p = dict(r["phases"])
                steps = p.pop("steps")
                ms = {k: 1e3 * v / steps for k, v in p.items()}
                ms["total"] = 1e3 * r["wall"] / steps
                inside = ms["forward"] + ms["loss"] + ms["backward"] + ms["optimizer"]
                ms["other"] = ms["total"] - inside - ms["batch"] - ms["metrics"]
                ms["outside"] = 100 * (1 - inside / ms["total"])
                rows.append(ms)
            m = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
            print(
                f"| {name} | {'flip + shift' if kind == 'phases+augment' else 'none'} | "
                f"{m['total']:.2f} | {m['forward'] + m['loss']:.2f} | {m['backward']:.2f} | "
                f"{m['optimizer']:.2f} | {m['batch']:.2f} | {m['metrics']:.2f} | "
                f"{m['other']:.2f} | {m['outside']:.1f}% |"
            )
    print(contention_note())
    return 0 if ok else 1


def contention_note() -> str:
    """How many timed epochs ran while other processes took the cores (the report's last line)."""
    c = contended
    return (
        f"\n{c['runs']} timed epochs; {c['retried']} re-run because other processes were busy "
        f"on the cores they needed, {c['kept']} kept contended after {RETRIES} retries; "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )


if __name__ == "__main__":
    sys.exit(main())
