"""Does netspec learn as well as the loop people write by hand? Test accuracy over seeds.

For specs/cifar_cnn.yaml and specs/mnist_cnn.yaml, on the spec's own data and preprocessing
(its split, `normalize: dataset` on the training split), batch 64, Adam lr 0.001 constant, no
augmentation, no schedule, no early stopping, N epochs, then the test accuracy of the last
weights in eval mode. Contenders, each seed in a process of its own with 1 torch thread:

  netspec      `Trainer.setup()`, `train_epoch()` N times and `evaluate()` on the test split:
               the real API, the spec's defaults (channels-last for 2-d convnets, fused Adam,
               Keras' initialisation: glorot_uniform kernels, zero biases, batchnorm eps 1e-3,
               batchnorm momentum 0.9 = torch's 0.1);
  netspec-m0.99  the same with every batchnorm at Keras' default momentum 0.99 (torch's 0.01),
               netspec's default until this benchmark showed its cost;
  hand-same    a hand-written nn.Sequential of the same layers (torch's BatchNorm defaults, eps
               1e-5) and the plain loop, NCHW, started from netspec's initial weights for the
               seed (copied tensor by tensor), shuffled by the same generator;
  hand-torch   the same loop from torch's default initialisation (kaiming_uniform(a=sqrt(5))
               kernels, uniform biases) under the same seed;
  keras        Keras 3 (any backend) of the same layers, where `import keras` works.

netspec against hand-same isolates what netspec does differently in a step (eps, layout,
fused Adam); hand-same against hand-torch isolates the initialisation. The table gives the mean
± standard deviation of test accuracy over the seeds, the difference of each contender's mean
from netspec's in standard errors of the difference, and the median training samples/s (the
timed part is the N epochs; with --jobs 2 two seeds run at once, so the speeds are lower).

    python benchmarks/bench_accuracy.py                         # both specs, 8 seeds, 12 epochs
    python benchmarks/bench_accuracy.py --cases cifar_cnn --seeds 8 --jobs 2
    python benchmarks/bench_accuracy.py --quick                 # 2 seeds, 2 epochs, 512 samples
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import BATCH, CASES, LR, copy_weights  # one copy of the models

REPO = Path(__file__).resolve().parents[1]
CONTENDERS = ("netspec", "netspec-m0.99", "hand-same", "hand-torch", "keras")
LABELS = {
    "netspec": "netspec `Trainer` (defaults)",
    "netspec-m0.99": "netspec, `batchnorm: {momentum: 0.99}` (Keras' default)",
    "hand-same": "hand-written, netspec's initial weights",
    "hand-torch": "hand-written, torch's default init",
    "keras": "Keras 3",
}


def graph_for(name: str, seed: int, epochs: int, limit: int | None, momentum: float | None = None):
    """The spec with its own data and preprocessing, everything else plain (see the top);
    `momentum`: every batchnorm's, Keras' convention (netspec's default 0.9; Keras' 0.99)."""
    from netspec.compiler import compile_source
    from netspec.source import apply_overrides, parse

    sets = [
        "train.augment={}",
        "train.schedule=null",
        "train.callbacks={}",
        f"train.batch_size={BATCH}",
        f"train.optimizer={{name: adam, lr: {LR}}}",
        f"train.epochs={epochs}",
        f"train.seed={seed}",
    ]
    if limit:
        sets.append(f"train.data.limit={limit}")
    path = REPO / "specs" / f"{name}.yaml"
    text = path.read_text()
    if momentum is not None:
        text = text.replace("- batchnorm\n", f"- batchnorm: {{momentum: {momentum}}}\n")
    return compile_source(apply_overrides(parse(text, str(path)), sets))


def run_netspec(graph, run_dir: Path, epochs: int) -> dict[str, Any]:
    from netspec.backends.training.loop import Trainer
    from netspec.runs import PreparedRun, TrainOptions

    run, options = PreparedRun(graph, run_dir), TrainOptions("cpu", progress=False)
    t = Trainer(run, options, log=lambda s: None)
    t.setup()
    t0 = time.perf_counter()
    for _ in range(epochs):
        t.train_epoch()
    seconds = time.perf_counter() - t0
    assert t.test is not None, "the spec has no test split"
    acc = t.evaluate(*t.test)["accuracy"]
    # The same weights with each batchnorm's running statistics recomputed as the plain mean
    # over one pass of the training data (train mode, no weight update): how much of the
    # accuracy the lag of the running averages costs.
    bns = [m for m in t.module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    t.module.train()
    with torch.no_grad():
        for s in range(0, t.n_train, 256):
            t.module(t._prep(t.x_train[s : s + 256]))
    out = {"accuracy": acc, "seconds": seconds, "samples": epochs * t.n_train}
    if bns:
        out["restats"] = t.evaluate(*t.test)["accuracy"]
    return out


def run_hand(graph, name: str, epochs: int, same_init: bool) -> dict[str, Any]:
    from netspec.backends.lowering import build_module
    from netspec.data.pipeline import SplitOptions, prepare

    spec = graph.train
    data = prepare(spec, SplitOptions.of(graph))
    torch.manual_seed(spec.seed)  # as Trainer.setup: the seed, then the model
    model = CASES[name][1]()
    if same_init:
        torch.manual_seed(spec.seed)
        copy_weights(build_module(graph), model)
    pre = data.preprocessing
    mean = torch.tensor(pre.mean).view(1, -1, 1, 1) if pre.mean else None
    std = torch.tensor(pre.std).view(1, -1, 1, 1) if pre.std else None

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.float() * pre.scale
        return (x - mean) / std if mean is not None else x

    x, y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y).long()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(spec.seed)  # the Trainer's shuffling generator
    n = len(y)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, BATCH):
            idx = perm[s : s + BATCH]
            if len(idx) < 2:  # a batch of one breaks batchnorm (netspec folds it in)
                continue
            loss = F.cross_entropy(model(prep(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    assert data.test is not None, "the spec has no test split"
    model.eval()
    xt, yt = torch.from_numpy(data.test.x), torch.from_numpy(data.test.y).long()
    with torch.inference_mode():
        pred = torch.cat([model(prep(xt[s : s + 512])).argmax(1) for s in range(0, len(yt), 512)])
    acc = float((pred == yt).float().mean())
    return {"accuracy": acc, "seconds": seconds, "samples": epochs * n}


def run_keras(graph, name: str, epochs: int) -> dict[str, Any]:
    """Keras 3 of the same layers (Keras' own defaults are netspec's: glorot, eps 1e-3)."""
    import keras
    from keras import layers as L

    from netspec.data.pipeline import SplitOptions, prepare

    spec = graph.train
    keras.utils.set_random_seed(spec.seed)
    data = prepare(spec, SplitOptions.of(graph))
    pre = data.preprocessing

    def prep(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32) * pre.scale
        if pre.mean:
            m = np.asarray(pre.mean, np.float32).reshape(1, -1, 1, 1)
            x = (x - m) / np.asarray(pre.std, np.float32).reshape(1, -1, 1, 1)
        return x.transpose(0, 2, 3, 1)  # (N, H, W, C)

    if name == "mnist_cnn":
        body = [
            L.Conv2D(32, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu"),
            L.Flatten(),
            L.Dense(64, activation="relu"),
        ]
    else:
        body = []
        for f, p in ((32, 0.2), (64, 0.3), (128, 0.4)):
            body += [
                L.Conv2D(f, 3, padding="same", activation="relu"),
                L.BatchNormalization(),
                L.Conv2D(f, 3, padding="same", activation="relu"),
                L.BatchNormalization(),
                L.MaxPooling2D(2),
                L.Dropout(p),
            ]
        body += [L.Flatten(), L.Dense(512, activation="relu"), L.BatchNormalization()]
        body += [L.Dropout(0.5)]
    shape = graph.input_shape[1:] + graph.input_shape[:1]
    model = keras.Sequential([keras.Input(shape), *body, L.Dense(10, activation="softmax")])
    model.compile(
        keras.optimizers.Adam(LR), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    x, y = prep(data.train.x), data.train.y
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=True, verbose=0)
    seconds = time.perf_counter() - t0
    assert data.test is not None, "the spec has no test split"
    acc = float(model.evaluate(prep(data.test.x), data.test.y, batch_size=512, verbose=0)[1])
    return {"accuracy": acc, "seconds": seconds, "samples": epochs * len(y)}


def worker(kind: str, name: str, seed: int, epochs: int, limit: int | None) -> None:
    torch.set_num_threads(1)
    graph = graph_for(name, seed, epochs, limit, 0.99 if kind == "netspec-m0.99" else None)
    with tempfile.TemporaryDirectory() as tmp:
        if kind.startswith("netspec"):
            out = run_netspec(graph, Path(tmp) / "run", epochs)
        elif kind == "keras":
            out = run_keras(graph, name, epochs)
        else:
            out = run_hand(graph, name, epochs, same_init=kind == "hand-same")
    print(json.dumps(out), flush=True)


def keras_env() -> dict[str, str]:
    """One torch thread per worker; Keras on the torch backend unless KERAS_BACKEND says else."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.setdefault("KERAS_BACKEND", "torch")  # Keras 3 defaults to TensorFlow, absent here
    return env


def keras_available() -> bool:
    code = "import keras"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=keras_env())
    return done.returncode == 0


def spawn(kind: str, name: str, seed: int, epochs: int, limit: int | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", kind, name, str(seed), str(epochs)]
    cmd += [str(limit or 0)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=keras_env())
    if done.returncode != 0:
        raise SystemExit(f"{kind} {name} seed {seed} failed:\n{done.stderr[-3000:]}")
    return {"kind": kind, "name": name, "seed": seed, **json.loads(done.stdout.splitlines()[-1])}


def table(name: str, results: list[dict[str, Any]], kinds: list[str]) -> list[str]:
    accs = {k: [r["accuracy"] for r in results if r["kind"] == k] for k in kinds}
    speed = {
        k: statistics.median(r["samples"] / r["seconds"] for r in results if r["kind"] == k)
        for k in kinds
    }
    base = accs.get("netspec")
    lines = [
        f"| {name}: contender | seeds | test accuracy, mean ± std | min-max | vs netspec "
        "| samples/s (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k in kinds:
        a = accs[k]
        sd = statistics.stdev(a) if len(a) > 1 else 0.0
        vs = ""
        if base is not None and k != "netspec" and len(a) > 1 and len(base) > 1:
            se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(base) / len(base))
            d = statistics.mean(a) - statistics.mean(base)
            vs = f"{d:+.3f} ({d / se:+.1f} SE)" if se > 0 else f"{d:+.3f}"
        lines.append(
            f"| {LABELS[k]} | {len(a)} | {statistics.mean(a):.3f} ± {sd:.3f} "
            f"| {min(a):.3f}-{max(a):.3f} | {vs} | {speed[k]:,.0f} |"
        )
    for k in kinds:
        re = [r["restats"] for r in results if r["kind"] == k and "restats" in r]
        if re:
            gain = [r["restats"] - r["accuracy"] for r in results if r["kind"] == k]
            lines.append(
                f"| {LABELS[k]}, batchnorm statistics recomputed on the training data "
                f"| {len(re)} | {statistics.mean(re):.3f} ± {statistics.stdev(re):.3f} "
                f"| {min(re):.3f}-{max(re):.3f} | paired gain {statistics.mean(gain):+.3f} | |"
            )
    lines.append("")
    lines.append(
        "per seed: " + "; ".join(f"{k} " + " ".join(f"{v:.3f}" for v in accs[k]) for k in kinds)
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["mnist_cnn", "cifar_cnn"], choices=list(CASES))
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    p.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1 per contender (8)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--limit", type=int, default=0, help="samples per split (0: all)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes at once (1)")
    p.add_argument("--quick", action="store_true", help="2 seeds, 2 epochs, 512 samples")
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        kind, name, seed, epochs, limit = args.worker
        worker(kind, name, int(seed), int(epochs), int(limit) or None)
        return 0
    if args.quick:
        args.seeds, args.epochs, args.limit = 2, 2, 512
    kinds = list(args.contenders)
    if "keras" in kinds and not keras_available():
        print("keras: skipped (`import keras` fails here; pip install keras to add it)\n")
        kinds.remove("keras")
    print(
        f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"1 torch thread per process, {args.jobs} at once; {args.seeds} seeds, "
        f"{args.epochs} epochs, batch {BATCH}, Adam lr {LR}"
        + (f", {args.limit} samples per split" if args.limit else "")
        + "\n"
    )
    t0 = time.perf_counter()
    for name in args.cases:
        # Seeds outermost and contenders rotated, so that load on the machine hits all alike.
        jobs = [
            (kinds[(i + s) % len(kinds)], name, s)
            for s in range(args.seeds)
            for i in range(len(kinds))
        ]
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(spawn, k, n, s, args.epochs, args.limit) for k, n, s in jobs]
            results = [f.result() for f in futures]
        results.sort(key=lambda r: r["seed"])
        print("\n".join(table(name, results, kinds)) + "\n", flush=True)
    print(f"{time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
