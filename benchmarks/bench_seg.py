"""U-Net segmentation: netspec's training step against hand-written PyTorch, and ONNX inference."""

# For specs/unet_multiband.yaml (8-band 128x128 tiles, 4 classes, batchnorm, dropout), two parts:
#
# Training throughput, tiles/s: batch 16, Adam lr 1e-3, cross-entropy on the logits, random
# float32 tiles (N, 8, 128, 128) and random int64 masks (N, 128, 128) held in memory. One
# measurement is one pass over the tiles (--tiles / 16 steps) of:
#
#   (a) hand      a hand-written nn.Module U-Net of the same layers (Conv2d(bias=False) +
#                 BatchNorm2d + ReLU double convs, MaxPool2d, ConvTranspose2d(2, stride 2),
#                 torch.cat, Dropout(0.3), 1x1 head), plain torch.optim.Adam, NCHW;
#   (b) hand+CL   the same, model and batches in channels-last memory format;
#   (c) netspec   netspec's own step: build_module, make_optimizer (fused Adam), channels-last
#                 where use_channels_last says so, keep_freed_memory, F.cross_entropy on
#                 forward_logits: the body of Trainer.train_epoch without its loss object,
#                 its batch preparation (normalize, augment) and its metrics update;
#   (d) Trainer   Trainer.train_epoch() through the public API, with the spec's data pointed at
#                 an .npz of the same arrays, no preprocessing or augmentation, loss
#                 cross_entropy; it also updates the spec's metrics every step. Reported as
#                 skipped (with the reason) where this netspec's Trainer cannot train on
#                 (N, H, W) masks from arrays; --no-trainer leaves it out.
#
# The method is bench_train.py's, and so is its code (`interleaved`, `timed`, `copy_weights`):
# every contender in a process of its own, the same initial weights and torch thread count, one
# measurement each round-robin (rotated each round) after an uncounted warm-up, rounds spread
# over sets of fresh processes, a measurement during which other processes took the cores it
# needed run again. Medians, and the ratios of the medians (per-round ratios in brackets).
#
# Inference latency, one 256x256 tile at batch 1 (the spec compiled with input [8, 256, 256],
# random weights and batchnorm statistics): PyTorch eager (eval, inference_mode; NCHW, and
# channels-last) against onnxruntime on netspec's export, --infer-threads threads (1) each,
# every call interleaved (backends/bench/timing.py's `interleave`, as bench_onnx.py), numpy in and out.
#
#   python benchmarks/bench_seg.py            # 64 tiles, 8 rounds over 2 sets, 80 calls: ~5 min
#   python benchmarks/bench_seg.py --quick    # 16 tiles, 3 rounds, 10 calls: under a minute
#   python benchmarks/bench_seg.py --threads 1 --no-trainer --only train

from __future__ import annotations

import argparse
import copy
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

import bench_train
import numpy as np
import torch
import torch.nn.functional as F
from bench_onnx import randomize_batchnorm
from bench_train import copy_weights, interleaved, progress
from torch import nn

from netspec.backends.bench.timing import interleave, ort_call, ort_session, p90, torch_call
from netspec.backends.export.model import export_onnx
from netspec.backends.export.parity import max_abs_diff
from netspec.backends.weights import module_weights
from netspec.compiler import compile_source
from netspec.ir import Graph
from netspec.source import apply_overrides, read

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "unet_multiband.yaml"
BATCH = 16
LR = 1e-3
BANDS, SIZE, CLASSES = 8, 128, 4
INFER_SIZE = 256
LABELS = {
    "a": "(a) hand-written, NCHW",
    "b": "(b) hand-written, channels-last",
    "c": "(c) netspec step",
    "d": "(d) netspec Trainer.train_epoch",
}


# --- the hand-written U-Net: what a user writes for the same spec --------------------------------


def double_conv(cin: int, c: int) -> nn.Sequential:
    # netspec's batchnorm eps is Keras' 1e-3, and the spec's momentum 0.9 is torch's 0.1: the
    # same here, so that both compute the same function (the speed does not depend on them).
    return nn.Sequential(
        nn.Conv2d(cin, c, 3, padding=1, bias=False),
        nn.BatchNorm2d(c, eps=1e-3),
        nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=1, bias=False),
        nn.BatchNorm2d(c, eps=1e-3),
        nn.ReLU(),
    )


class Up(nn.Module):
    def __init__(self, cin: int, c: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, c, 2, stride=2)
        self.conv = double_conv(2 * c, c)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class HandUNet(nn.Module):
    """The spec's U-Net written out; submodules in the spec's order so weights copy across."""

    def __init__(self, bands: int = BANDS, classes: int = CLASSES) -> None:
        super().__init__()
        self.enc1 = double_conv(bands, 16)
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), double_conv(16, 32))
        self.enc3 = nn.Sequential(nn.MaxPool2d(2), double_conv(32, 64))
        self.bottleneck = nn.Sequential(nn.MaxPool2d(2), double_conv(64, 128))
        self.drop = nn.Dropout(0.3)
        self.dec3 = Up(128, 64)
        self.dec2 = Up(64, 32)
        self.dec1 = Up(32, 16)
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        b = self.drop(self.bottleneck(e3))
        return self.head(self.dec1(self.dec2(self.dec3(b, e3), e2), e1))  # logits


# --- the spec and the data ------------------------------------------------------------------------


def seg_graph(npz: Path | None = None, sets: tuple[str, ...] = ()) -> Graph:
    """The spec with batch 16, Adam lr 1e-3, plain cross-entropy, no augmentation."""
    base = [
        f"train.batch_size={BATCH}",
        f"train.optimizer={{name: adam, lr: {LR}}}",
        "train.loss=cross_entropy",  # like the hand loop (the spec adds dice)
        "train.augment={}",  # the hand loop has none
        "train.epochs=1000",  # keeps a per-epoch schedule away from lr 0; it is not stepped here
    ]
    if npz is not None:
        base += [
            f"train.data={{source: arrays, path: '{npz}', val: 0.0, test: 0.0}}",
            "train.preprocess={}",  # the tiles are already standardized, as for the hand loop
            "train.callbacks={}",  # early stopping on val_iou needs a validation split
        ]
    return compile_source(apply_overrides(read(SPEC), [*base, *sets]))


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal 8-band tiles (N, 8, 128, 128) float32, masks (N, 128, 128) int64."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, BANDS, SIZE, SIZE), dtype=np.float32)
    y = rng.integers(0, CLASSES, size=(n, SIZE, SIZE), dtype=np.int64)
    return x, y


def hand_and_netspec(graph: Graph) -> tuple[nn.Module, nn.Module]:
    """netspec's module with the Trainer's initial weights, and the hand U-Net with the same."""
    from netspec.backends.lowering import build_module

    torch.manual_seed(graph.train.seed)  # as Trainer.setup
    module = build_module(graph)
    hand = HandUNet()
    copy_weights(module, hand)
    return module, hand


def check_same_network(graph: Graph) -> tuple[int, int]:
    """Parameter counts of both (must agree), and the same logits in eval mode."""
    module, hand = hand_and_netspec(graph)
    counts = tuple(sum(p.numel() for p in m.parameters()) for m in (module, hand))
    if counts[0] != counts[1]:
        raise SystemExit(f"parameters: netspec {counts[0]:,}, hand-written {counts[1]:,}")
    gen = torch.Generator().manual_seed(1)
    randomize_batchnorm(module, gen)
    copy_weights(module, hand)
    x = torch.randn(2, BANDS, SIZE, SIZE, generator=gen)
    with torch.inference_mode():
        diff = (module.eval().forward_logits(x) - hand.eval()(x)).abs().max().item()
    if diff > 1e-4:
        raise SystemExit(f"the hand-written U-Net computes something else (max diff {diff:.1e})")
    return counts[0], counts[1]


# --- the contenders ----------------------------------------------------------------------------


class HandLoop:
    """The plain loop: gather, (channels-last), forward, F.cross_entropy, zero_grad, step."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, channels_last: bool) -> None:
        _, hand = hand_and_netspec(seg_graph())
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = hand.to(memory_format=self.fmt)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.x, self.y = x, y
        self.gen = torch.Generator().manual_seed(0)

    def epoch(self) -> None:
        model, opt = self.model, self.opt
        model.train()
        perm = torch.randperm(len(self.y), generator=self.gen)
        for s in range(0, len(self.y), BATCH):
            idx = perm[s : s + BATCH]
            xb = self.x[idx].contiguous(memory_format=self.fmt)
            loss = F.cross_entropy(model(xb), self.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


class NetspecStep:
    """netspec's training step as Trainer.setup and Trainer.train_epoch build it, no metrics."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        from netspec.backends.training.device import keep_freed_memory, use_channels_last
        from netspec.backends.training.optim import make_optimizer

        graph = seg_graph()
        self.spec = graph.train
        self.module, _ = hand_and_netspec(graph)
        keep_freed_memory()  # what Trainer.setup does for CPU training
        self.channels_last = use_channels_last(graph, self.spec)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.opt = make_optimizer(
            self.spec, [p for p in self.module.parameters() if p.requires_grad]
        )
        self.x, self.y = x, y
        self.gen = torch.Generator().manual_seed(0)

    def epoch(self) -> None:
        m, opt = self.module, self.opt
        m.train()
        perm = torch.randperm(len(self.y), generator=self.gen)
        for s in range(0, len(self.y), BATCH):
            idx = perm[s : s + BATCH]
            xb = self.x[idx]
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(m.forward_logits(xb), self.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def netspec_trainer(npz: Path, run_dir: Path) -> Any:
    """--trainer: the real Trainer on the arrays in `npz`, through the public API, set up."""
    from netspec.backends.training.loop import Trainer
    from netspec.runs import PreparedRun, TrainOptions

    graph = seg_graph(npz)
    run, options = PreparedRun(graph, run_dir), TrainOptions("cpu", progress=False)
    t = Trainer(run, options, log=lambda s: None)
    t.setup()
    return t


def trainer_unavailable() -> str | None:
    """Why the Trainer cannot train on (N, H, W) masks from arrays yet, or None if it can."""
    with tempfile.TemporaryDirectory() as d:
        x, y = synthetic(2, seed=1)
        np.savez(Path(d) / "tiny.npz", x=x, y=y)
        try:
            netspec_trainer(Path(d) / "tiny.npz", Path(d) / "run").train_epoch()
        except Exception as exc:  # any failure means: not there yet; say what it was
            first = (str(exc).strip().splitlines() or [""])[0]
            return f"{type(exc).__name__}: {first}"
    return None


def contender(kind: str, npz: Path, run_dir: Path) -> Callable[[], Any]:
    if kind == "d":
        return netspec_trainer(npz, run_dir).train_epoch
    with np.load(npz) as f:
        x, y = torch.from_numpy(f["x"]), torch.from_numpy(f["y"])
    if kind in ("a", "b"):
        return HandLoop(x, y, channels_last=kind == "b").epoch
    if kind == "c":
        return NetspecStep(x, y).epoch
    raise SystemExit(f"unknown contender {kind!r}")


# --- the worker: one contender in its own process (bench_train.py's protocol) --------------------


def worker(kind: str, npz: str, threads: int) -> int:
    """Serve `epoch` requests on stdin with a JSON line each: wall and CPU seconds."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as run_dir:
        epoch = contender(kind, Path(npz), Path(run_dir))
        epoch()  # warm-up: oneDNN primitive caches, allocator, first-call paths
        print(json.dumps({"ready": torch.get_num_threads()}), flush=True)
        for line in sys.stdin:
            if line.strip() != "epoch":
                break
            c0, w0 = os.times(), time.perf_counter()
            epoch()
            wall, c1 = time.perf_counter() - w0, os.times()
            cpu = c1.user + c1.system - c0.user - c0.system
            print(json.dumps({"wall": wall, "cpu": cpu, "phases": {}}), flush=True)
    return 0


class Worker(bench_train.Worker):
    """bench_train's handle on a worker process, started on this script."""

    def __init__(self, kind: str, npz: Path, threads: int) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, str(npz), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._read()
        if ready.get("ready") != threads:
            raise SystemExit(f"worker {kind} runs {ready.get('ready')} threads, not {threads}")


# --- inference: ONNX against eager, one 256x256 tile ---------------------------------------------


def inference(repeats: int, threads: int) -> dict[str, list[float]]:
    """Seconds per call of eager (NCHW, channels-last) and onnxruntime on one 256x256 tile."""
    from netspec.backends.lowering import build_module

    torch.set_num_threads(threads)
    graph = compile_source(
        apply_overrides(read(SPEC), [f"input=[{BANDS}, {INFER_SIZE}, {INFER_SIZE}]"])
    )
    torch.manual_seed(0)
    module = build_module(graph).eval()
    randomize_batchnorm(module, torch.Generator().manual_seed(0))
    session, _ = ort_session(
        export_onnx(graph, module_weights(module)).SerializeToString(), threads
    )
    x = np.random.default_rng(0).standard_normal((1, *graph.input_shape)).astype(np.float32)
    cl = copy.deepcopy(module).to(memory_format=torch.channels_last)
    xt = torch.from_numpy(x)

    def eager_cl() -> np.ndarray:
        with torch.inference_mode():  # the layout change is part of the call, as in real use
            return cl(xt.contiguous(memory_format=torch.channels_last)).numpy()

    calls = {"eager": torch_call(module, x), "eager_cl": eager_cl, "ort": ort_call(session, x)}
    ref = calls["eager"]()
    for key, fn in calls.items():
        diff = max_abs_diff(ref, fn())
        if diff > 1e-4:
            raise SystemExit(f"inference {key}: differs from eager by {diff:.1e}")
    progress(f"inference: {repeats} interleaved calls of each")
    return interleave(calls, repeats, warmup=3, warmup_s=1.0)  # type: ignore[return-value]


# --- the report ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        kind, npz, threads = argv[1:4]
        return worker(kind, npz, int(threads))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16 tiles, 3 rounds, 10 calls")
    ap.add_argument("--tiles", type=int, default=None, help="tiles per measurement (64)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (8)")
    ap.add_argument("--generations", type=int, default=None, help="sets of processes (2)")
    ap.add_argument("--threads", type=int, default=None, help="training threads (torch's)")
    ap.add_argument("--infer-threads", type=int, default=1, help="inference threads (1)")
    ap.add_argument("--repeats", type=int, default=None, help="inference calls of each (80)")
    ap.add_argument(
        "--trainer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="(d): the real Trainer.train_epoch (default: on)",
    )
    ap.add_argument("--only", choices=("train", "infer"), help="run one part")
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a contended measurement (1)")
    args = ap.parse_args(argv)
    tiles = args.tiles or (16 if args.quick else 64)
    rounds = args.rounds or (3 if args.quick else 8)
    generations = max(1, min(rounds, args.generations or (1 if args.quick else 2)))
    # One retry, not bench_train's two: a measurement here takes seconds, and on a machine kept
    # busy by others two retries of every one tripled the run (26 minutes) without clearing it.
    bench_train.RETRIES = args.retries  # read by bench_train.timed at each call
    threads = args.threads or torch.get_num_threads()
    repeats = args.repeats or (10 if args.quick else 80)
    print(
        f"torch {torch.__version__}, onnxruntime {ort_version()}, {os.cpu_count()} cores, "
        f"{platform.machine()}, python {platform.python_version()}; load average "
        f"{os.getloadavg()[0]:.2f} at the start\n"
    )

    if args.only != "infer":
        graph = seg_graph()
        ours, theirs = check_same_network(graph)
        print(f"parameters: netspec {ours:,}, hand-written {theirs:,} (same logits in eval mode)")
        kinds = ["a", "b", "c"]
        if args.trainer:
            why = trainer_unavailable()
            if why is None:
                kinds.append("d")
            else:
                print(f"(d) skipped: the Trainer cannot train on these arrays yet ({why})")
        with tempfile.TemporaryDirectory() as d:
            npz = Path(d) / "tiles.npz"
            x, y = synthetic(tiles)
            np.savez(npz, x=x, y=y)
            del x, y
            runs = interleaved(
                lambda: [Worker(k, npz, threads) for k in kinds],
                rounds,
                generations,
                threads,
                "training",
            )
        rates = {k: [tiles / r["wall"] for r in rs] for k, rs in zip(kinds, runs)}
        print(
            f"\nTraining, tiles/s: {tiles} tiles of {BANDS}x{SIZE}x{SIZE} per measurement, batch "
            f"{BATCH}, Adam lr {LR}, {threads} thread(s), {rounds} rounds over {generations} "
            f"set(s) of processes; median (best, worst)\n"
        )
        print("| loop | tiles/s | best | worst |")
        print("|---|---:|---:|---:|")
        for k, v in rates.items():
            print(f"| {LABELS[k]} | {statistics.median(v):.2f} | {max(v):.2f} | {min(v):.2f} |")
        ratios = ["c/a", "c/b", "b/a"] + (["d/a", "d/c"] if "d" in rates else [])
        print("\nRatios of the medians (in brackets: the median of the per-round ratios)\n")
        print(f"| {' | '.join(ratios)} |")
        print("|" + "---:|" * len(ratios))
        cells = []
        for key in ratios:
            num, den = (rates[k] for k in key.split("/"))
            paired = statistics.median(u / v for u, v in zip(num, den))
            cells.append(f"{statistics.median(num) / statistics.median(den):.2f} ({paired:.2f})")
        print(f"| {' | '.join(cells)} |")
        c = bench_train.contended
        print(
            f"\n{c['runs']} timed measurements; {c['retried']} re-run because other processes "
            f"were busy on the cores they needed, {c['kept']} kept contended after "
            f"{bench_train.RETRIES} retries\n"
        )

    if args.only != "train":
        times = inference(repeats, args.infer_threads)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(
            f"Inference, one {BANDS}x{INFER_SIZE}x{INFER_SIZE} tile at batch 1, "
            f"{args.infer_threads} thread(s), {repeats} interleaved calls each; median ms (p90)\n"
        )
        print(
            "| PyTorch eager | PyTorch eager, channels-last | onnxruntime (netspec export) "
            "| eager / onnxruntime | eager CL / onnxruntime |"
        )
        print("|---:|---:|---:|---:|---:|")
        cells = [f"{med[k] * 1e3:.1f} ({p90(times[k]) * 1e3:.1f})" for k in times]
        print(
            f"| {' | '.join(cells)} | {med['eager'] / med['ort']:.2f}x "
            f"| {med['eager_cl'] / med['ort']:.2f}x |"
        )
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    sys.exit(main())
