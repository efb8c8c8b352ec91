"""How fast does netspec train and run sequence models, next to hand-written PyTorch and Keras 3?

Three classifiers of [T=64, F=16] sequences into 10 classes, on synthetic float32 data held in
memory (no downloads), batch 64, Adam lr 0.001, one epoch per measurement:

  lstm         lstm 128 (the last step) -> dense softmax
  gru          gru 128 -> dense softmax
  transformer  dense 64, position_embedding, multi_head_attention (4 heads of 16) + add +
               layernorm, ffn 128 relu -> 64 + add + layernorm, seq_pool mean, dense softmax

and three contenders for each:

  hand     a hand-written module (nn.LSTM / nn.GRU / nn.Linear + a learned position table +
           nn.TransformerEncoderLayer(64, 4, 128, dropout=0, batch_first=True) + mean + nn.Linear)
           and the plain loop: x[idx] gather, forward, F.cross_entropy, zero_grad, backward, step;
  netspec  `Trainer.train_epoch()` built through the real API on the same arrays (an .npz), with
           the default options (it also updates the accuracy metric every step);
  keras    Keras 3 on the torch backend, `model.fit(x, y, batch_size=64, epochs=1)` with
           metrics=["accuracy"], where `import keras` works (the column is skipped otherwise).

Each contender runs in a process of its own with the same torch thread count; the coordinator
runs their epochs interleaved and rotated each round, after an uncounted warm-up epoch, over
several sets of fresh processes, and re-runs an epoch during which other processes took the
cores it needed (bench_train.py's `interleaved` and `timed`). The table gives median samples/s
and the ratios netspec/hand (target >= 1.0) and netspec/keras (>= 1.5).

Inference: the lowered module in eager PyTorch (eval, torch.inference_mode) against onnxruntime
on netspec's export of the same weights, batch 1 and 64, 1 thread, interleaved calls; the
outputs are compared first. Target: onnxruntime/eager >= 1.0 (a speed ratio). For a model with
layernorm, also onnxruntime with its default SkipLayerNormFusion, which netspec's CPU sessions
turn off (backends/predict/session.py; not a target). The exit status is 1 if a target is missed.

    python benchmarks/bench_seq.py             # 1,024 samples per epoch, 12 rounds over 4 sets
    python benchmarks/bench_seq.py --quick     # 512 samples, 3 rounds, one set of workers
    python benchmarks/bench_seq.py --cases lstm --rounds 21 --no-inference
    python benchmarks/bench_seq.py --threads 1 --retries 0   # a machine busy with other jobs

(Over 400 lines: three networks written three ways, the worker protocol and two reports.)
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
from importlib.metadata import version
from pathlib import Path
from typing import Any

import bench_train
import numpy as np
import torch
import torch.nn.functional as F
from bench_train import interleaved, progress
from torch import nn

T, FEATURES, CLASSES = 64, 16, 10
UNITS = 128  # the recurrent layers
D, HEADS, KEY_DIM, FFN = 64, 4, 16, 128  # the transformer encoder
BATCH = 64
LR = 1e-3
INFER_BATCHES = (1, 64)
SKIP_LN = "SkipLayerNormFusion"
WITH_SKIP_LN = f"onnxruntime, {SKIP_LN} on"
TARGETS = {"netspec/hand": 1.0, "netspec/keras": 1.5, "onnxruntime/eager": 1.0}
KINDS = ("hand", "netspec", "keras")
LABELS = {
    "hand": "hand-written PyTorch loop",
    "netspec": "netspec Trainer.train_epoch",
    "keras": "Keras 3, torch backend, fit",
}

# --- the specs: what a netspec user writes -------------------------------------------------------

HEAD = f"""\
input: [{T}, {FEATURES}]
train:
  data: {{source: arrays, path: '{{npz}}', val: 0.0, test: 0.0}}
  batch_size: {BATCH}
  epochs: 1000
  optimizer: {{name: adam, lr: {LR}}}
  seed: 0
"""

LAYERS = {
    "lstm": f"""\
layers:
  - lstm: {{units: {UNITS}}}
  - dense: {{units: {CLASSES}, activation: softmax}}
""",
    "gru": f"""\
layers:
  - gru: {{units: {UNITS}}}
  - dense: {{units: {CLASSES}, activation: softmax}}
""",
    "transformer": f"""\
layers:
  - dense: {{units: {D}}}
  - position_embedding: {{max_length: {T}}}
    name: pos
  - multi_head_attention: {{num_heads: {HEADS}, key_dim: {KEY_DIM}}}
    name: mha
  - add: {{}}
    inputs: [pos, mha]
    name: res1
  - layernorm: {{}}
    name: ln1
  - dense: {{units: {FFN}, activation: relu}}
  - dense: {{units: {D}}}
    name: ffn
  - add: {{}}
    inputs: [ln1, ffn]
  - layernorm: {{}}
  - seq_pool: {{op: mean}}
  - dense: {{units: {CLASSES}, activation: softmax}}
""",
}
CASES = tuple(LAYERS)


def spec_text(name: str, npz: Path | str = "unused.npz") -> str:
    return f"name: seq_{name}\n" + HEAD.replace("{npz}", str(npz)) + LAYERS[name]


def netspec_graph(name: str, npz: Path | str = "unused.npz"):
    from netspec.compiler import compile_text

    return compile_text(spec_text(name, npz), f"seq_{name}.yaml")


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 sequences (N, T, F) with a class-dependent offset, and labels 0..9 (all present)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % CLASSES).astype(np.int64)
    rng.shuffle(y)
    x = rng.standard_normal((n, T, FEATURES), dtype=np.float32)
    x[np.arange(n), :, y % FEATURES] += 0.5  # something to learn; it changes no timing
    return x, y


# --- the hand-written models ---------------------------------------------------------------------


class HandRNN(nn.Module):
    """nn.LSTM or nn.GRU (batch first), its last hidden state into nn.Linear."""

    def __init__(self, cell: type[nn.LSTM] | type[nn.GRU]) -> None:
        super().__init__()
        self.rnn = cell(FEATURES, UNITS, batch_first=True)
        self.head = nn.Linear(UNITS, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(x)
        h = h[0] if isinstance(h, tuple) else h  # LSTM: (h, c)
        return self.head(h[-1])


class HandTransformer(nn.Module):
    """nn.Linear, a learned position table, nn.TransformerEncoderLayer (post-norm), mean, nn.Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(FEATURES, D)
        self.pos = nn.Parameter(torch.randn(T, D) * 0.02)
        self.encoder = nn.TransformerEncoderLayer(
            D, HEADS, FFN, dropout=0.0, batch_first=True, layer_norm_eps=1e-3
        )
        self.head = nn.Linear(D, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.proj(x) + self.pos).mean(1))


HAND: dict[str, Callable[[], nn.Module]] = {
    "lstm": lambda: HandRNN(nn.LSTM),
    "gru": lambda: HandRNN(nn.GRU),
    "transformer": HandTransformer,
}


class HandLoop:
    """The plain loop: gather, forward, F.cross_entropy, zero_grad, backward, step."""

    def __init__(self, name: str, x: torch.Tensor, y: torch.Tensor) -> None:
        torch.manual_seed(0)
        self.model = HAND[name]()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.x, self.y = x, y
        self.gen = torch.Generator().manual_seed(0)

    def epoch(self) -> None:
        model, opt = self.model, self.opt
        model.train()
        perm = torch.randperm(len(self.y), generator=self.gen)
        for s in range(0, len(self.y), BATCH):
            idx = perm[s : s + BATCH]
            loss = F.cross_entropy(model(self.x[idx]), self.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


# --- Keras 3 ------------------------------------------------------------------------------------


def keras_model(name: str) -> Any:
    """The same network in Keras 3 (its own defaults), compiled with Adam and accuracy."""
    import keras
    from keras import layers as L

    class PositionAdd(L.Layer):
        """A learned (T, D) table added to the sequence (keras_hub's PositionEmbedding, inlined)."""

        def build(self, shape: tuple) -> None:
            self.table = self.add_weight(shape=tuple(shape[1:]), initializer="glorot_uniform")

        def call(self, x: Any) -> Any:
            return x + self.table

    keras.utils.set_random_seed(0)
    inp = keras.Input((T, FEATURES))
    if name in ("lstm", "gru"):
        h = (L.LSTM if name == "lstm" else L.GRU)(UNITS)(inp)
    else:
        h = PositionAdd()(L.Dense(D)(inp))
        a = L.MultiHeadAttention(HEADS, KEY_DIM)(h, h)
        h = L.LayerNormalization(epsilon=1e-3)(L.Add()([h, a]))
        f = L.Dense(D)(L.Dense(FFN, activation="relu")(h))
        h = L.LayerNormalization(epsilon=1e-3)(L.Add()([h, f]))
        h = L.GlobalAveragePooling1D()(h)
    model = keras.Model(inp, L.Dense(CLASSES, activation="softmax")(h))
    model.compile(
        keras.optimizers.Adam(LR), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def keras_unavailable() -> str | None:
    """Why Keras 3 cannot run here on the torch backend, or None if it can."""
    code = "import keras; assert keras.backend.backend() == 'torch', keras.backend.backend()"
    cmd = [sys.executable, "-c", code]
    done = subprocess.run(cmd, capture_output=True, text=True, env=worker_env())
    lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
    return None if done.returncode == 0 else lines[-1]


def param_counts(name: str) -> str:
    """'netspec / hand' parameters (netspec's LSTM holds one bias per gate where torch has two)."""
    from netspec.backends.lowering import build_module

    ns, hand = build_module(netspec_graph(name)), HAND[name]()
    return " / ".join(f"{sum(p.numel() for p in m.parameters()):,}" for m in (ns, hand))


# --- the worker: one contender in its own process (bench_train.py's protocol) --------------------


def netspec_trainer(name: str, npz: Path, run_dir: Path) -> Any:
    """A Trainer for the spec on the arrays in `npz`, through the public API, set up."""
    from netspec.backends.training.loop import Trainer
    from netspec.runs import PreparedRun, TrainOptions

    graph = netspec_graph(name, npz)
    run, options = PreparedRun(graph, run_dir), TrainOptions("cpu", progress=False)
    t = Trainer(run, options, log=lambda s: None)
    t.setup()
    return t


def contender(kind: str, name: str, npz: Path, run_dir: Path) -> Callable[[], Any]:
    """One epoch of contender `kind` on case `name`, as a function."""
    if kind == "netspec":
        return netspec_trainer(name, npz, run_dir).train_epoch
    with np.load(npz) as f:
        x, y = f["x"], f["y"]
    if kind == "hand":
        return HandLoop(name, torch.from_numpy(x), torch.from_numpy(y)).epoch
    if kind == "keras":
        model = keras_model(name)
        return lambda: model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=True, verbose=0)
    raise SystemExit(f"unknown contender {kind!r}")


def worker(kind: str, name: str, npz: str, threads: int) -> int:
    """Serve `epoch` requests on stdin with a JSON line each: wall and CPU seconds."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as run_dir:
        epoch = contender(kind, name, Path(npz), Path(run_dir))
        epoch()  # warm-up: kernels' first calls, allocator, Keras' tracing of its train step
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


def worker_env() -> dict[str, str]:
    """Keras on the torch backend unless KERAS_BACKEND says else (Keras 3 defaults to TensorFlow)."""
    return {"KERAS_BACKEND": "torch", **os.environ}


class Worker(bench_train.Worker):
    """bench_train's handle on a worker process, started on this script."""

    def __init__(self, kind: str, name: str, npz: Path, threads: int) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, name, str(npz), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=worker_env(),
        )
        ready = self._read()
        if ready.get("ready") != threads:
            raise SystemExit(f"worker {kind} runs {ready.get('ready')} threads, not {threads}")


# --- inference: onnxruntime against eager --------------------------------------------------------


def inference(name: str, repeats: int, threads: int) -> dict[tuple[str, int], list[float]]:
    """Seconds per call of eager PyTorch and onnxruntime on netspec's export, per batch size."""
    from netspec.backends.bench.timing import interleave, ort_call, ort_session, torch_call
    from netspec.backends.export.model import export_onnx
    from netspec.backends.export.parity import max_abs_diff
    from netspec.backends.lowering import build_module
    from netspec.backends.weights import module_weights

    torch.set_num_threads(threads)
    graph = netspec_graph(name)
    torch.manual_seed(0)
    module = build_module(graph).eval()
    onnx_bytes = export_onnx(graph, module_weights(module)).SerializeToString()
    session, _ = ort_session(onnx_bytes, threads, "cpu")
    sessions = {"onnxruntime": session}
    if any(n.layer.kind == "layernorm" for n in graph.nodes):
        sessions[WITH_SKIP_LN] = ort_with_skip_layernorm(onnx_bytes, threads)
    calls: dict[tuple[str, int], Callable[[], np.ndarray]] = {}
    for b in INFER_BATCHES:
        x = synthetic(b, seed=1)[0]
        calls["eager", b] = torch_call(module, x)
        for engine, sess in sessions.items():
            calls[engine, b] = ort_call(sess, x)
            diff = max_abs_diff(calls["eager", b](), calls[engine, b]())
            if diff > 1e-4:
                raise SystemExit(f"{name} batch {b}: {engine} differs from eager by {diff:.1e}")
    progress(f"inference {name}: {repeats} interleaved calls of each")
    return interleave(calls, repeats, warmup=3, warmup_s=0.5)  # type: ignore[return-value]


def ort_with_skip_layernorm(model: bytes, threads: int) -> Any:
    """An onnxruntime session as netspec's (open_session's options) but with onnxruntime's
    default fusion of Add and LayerNormalization into com.microsoft.SkipLayerNormalization,
    which made this transformer slower on an AVX-512 CPU (onnxruntime 1.32, 1 thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


# --- the report ----------------------------------------------------------------------------------


def ratio_cell(key: str, num: list[float], den: list[float]) -> tuple[str, bool]:
    """'1.23 (1.20)': the ratio of the medians and the median per-round ratio; and whether missed."""
    ratio = statistics.median(num) / statistics.median(den)
    paired = statistics.median(u / v for u, v in zip(num, den))
    missed = ratio < TARGETS[key]
    return f"{ratio:.2f} ({paired:.2f})" + (" missed" if missed else ""), missed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        kind, name, npz, threads = argv[1:5]
        return worker(kind, name, npz, int(threads))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="512 samples, 3 rounds, 1 generation")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 12)")
    ap.add_argument("--generations", type=int, default=None, help="worker sets (default 4)")
    ap.add_argument("--samples", type=int, default=None, help="samples per epoch (default 1024)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--no-keras", action="store_true", help="leave the Keras column out")
    ap.add_argument("--no-inference", action="store_true", help="skip onnxruntime vs eager")
    ap.add_argument("--repeats", type=int, default=None, help="inference calls (default 200)")
    retries = f"re-runs of a contended epoch (default {bench_train.RETRIES}; 0: always busy)"
    ap.add_argument("--retries", type=int, default=bench_train.RETRIES, help=retries)
    args = ap.parse_args(argv)
    n = args.samples or (512 if args.quick else 1024)
    rounds = args.rounds or (3 if args.quick else 12)
    generations = max(1, min(rounds, args.generations or (1 if args.quick else 4)))
    threads = args.threads or torch.get_num_threads()
    repeats = args.repeats or (30 if args.quick else 200)
    bench_train.RETRIES = max(0, args.retries)
    kinds = list(KINDS)
    why_not = "--no-keras" if args.no_keras else keras_unavailable()
    if why_not is not None:
        kinds.remove("keras")
    print(
        f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} cores, "
        f"{platform.machine()}, python {platform.python_version()}; {n} sequences of "
        f"[{T}, {FEATURES}] per epoch, batch {BATCH}, adam lr {LR}, {rounds} rounds over "
        f"{generations} set(s) of worker processes; load average {os.getloadavg()[0]:.2f} at "
        "the start"
    )
    keras = f"keras {version('keras')} on the torch backend" if why_not is None else None
    print(f"{keras or f'keras: skipped ({why_not})'}\n")
    rates: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as d:
        npz = Path(d) / "seq.npz"
        x, y = synthetic(n, seed=0)
        np.savez(npz, x=x, y=y)
        for name in args.cases:
            spawn = functools.partial(lambda c: [Worker(k, c, npz, threads) for k in kinds], name)
            runs = interleaved(spawn, rounds, generations, threads, name)
            rates[name] = {k: [n / r["wall"] for r in rs] for k, rs in zip(kinds, runs)}
    infer = {} if args.no_inference else {name: inference(name, repeats, 1) for name in args.cases}

    ok = True
    print("Training throughput, samples/s: median of the interleaved rounds (best, worst)\n")
    print("| model | params (netspec / hand) | loop | samples/s | best | worst |")
    print("|---|---|---|---:|---:|---:|")
    for name, by_kind in rates.items():
        counts = param_counts(name)
        for k, v in by_kind.items():
            print(
                f"| {name} | {counts} | {LABELS[k]} | "
                f"{statistics.median(v):,.0f} | {max(v):,.0f} | {min(v):,.0f} |"
            )
    keys = ["netspec/hand"] + (["netspec/keras", "hand/keras"] if "keras" in kinds else [])
    print(
        "\nRatios of the medians (in brackets: the median of the per-round ratios, each from"
        " one round's epochs)\n"
    )
    heads = [f"{k} (>= {TARGETS[k]})" if k in TARGETS else k for k in keys]
    print(f"| model | {' | '.join(heads)} |")
    print("|---|" + "---:|" * len(keys))
    for name, by_kind in rates.items():
        cells = []
        for key in keys:
            num, den = (by_kind[k] for k in key.split("/"))
            if key in TARGETS:
                cell, missed = ratio_cell(key, num, den)
                ok &= not missed
            else:
                cell = f"{statistics.median(num) / statistics.median(den):.2f}"
            cells.append(cell)
        print(f"| {name} | {' | '.join(cells)} |")

    if infer:
        print(
            f"\nInference, ms per call: median of {repeats} interleaved calls, 1 thread; speedup"
            " = eager / onnxruntime (target >= 1.0)\n"
        )
        print(
            f"| model | batch | PyTorch eager | onnxruntime | speedup | {WITH_SKIP_LN} | speedup |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, times in infer.items():
            for b in INFER_BATCHES:
                eager = statistics.median(times["eager", b])
                cells = [f"{1e3 * eager:.3f}"]
                for engine in ("onnxruntime", WITH_SKIP_LN):
                    if (engine, b) not in times:
                        cells += ["", ""]
                        continue
                    ort = statistics.median(times[engine, b])
                    missed = engine == "onnxruntime" and eager / ort < TARGETS["onnxruntime/eager"]
                    ok &= not missed
                    cells += [f"{1e3 * ort:.3f}", f"{eager / ort:.2f}x" + " missed" * missed]
                print(f"| {name} | {b} | {' | '.join(cells)} |")
    print(bench_train.contention_note())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
