"""How fast is netspec's ONNX export under onnxruntime? Prints one markdown table.

For mnist_cnn and cifar_cnn (random weights, seed 0), at batch 1 and 64, in ONE interleaved run
(every call round-robin, order rotated each round, after a warm-up; numpy in, numpy out):

  (a) PyTorch eager on netspec's module (eval, torch.inference_mode), NCHW,
  (l) the same in channels-last (module and each input converted; what netspec trains with),
  (b) onnxruntime on netspec's export (written from the IR),
  (c) onnxruntime on `torch.onnx.export(..., dynamo=False)` of an equivalent hand-written
      nn.Sequential with the same weights copied in,
  and torch.mm of two 1024x1024 float32 matrices, for this machine's matmul rate (GFLOP/s).

Both engines use --threads intra-op threads; onnxruntime with every graph optimization on and
its threads not spinning (see backends/bench/timing.py). Targets: b/a >= 2x at batch 1 for both specs;
b at least as fast as c within 5%. The last line gives cifar_cnn's batch-64 rate (FLOPs = 2 x
the summary's MACs) as a fraction of the matmul rate.

    python benchmarks/bench_onnx.py [--repeats 100] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import io
import platform
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import netspec
from netspec.backends.bench.timing import interleave, ort_call, ort_session, p90, torch_call
from netspec.backends.export.model import export_onnx
from netspec.backends.export.parity import max_abs_diff
from netspec.backends.lowering import build_module
from netspec.backends.weights import module_weights

REPO = Path(__file__).resolve().parents[1]
SPECS = ("mnist_cnn", "cifar_cnn")
BATCHES = (1, 64)
MM = 1024


def hand_written(name: str) -> nn.Sequential:
    """The spec written by hand as a plain nn.Sequential (layer for layer, same order)."""
    if name == "mnist_cnn":
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
            nn.Softmax(dim=1),
        )
    layers: list[nn.Module] = []
    c = 3
    for f, rate in ((32, 0.2), (64, 0.3), (128, 0.4)):
        layers += [
            nn.Conv2d(c, f, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(f),
            nn.Conv2d(f, f, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(f),
            nn.MaxPool2d(2),
            nn.Dropout(rate),
        ]
        c = f
    layers += [
        nn.Flatten(),
        nn.Linear(2048, 512),
        nn.ReLU(),
        nn.BatchNorm1d(512),
        nn.Dropout(0.5),
        nn.Linear(512, 10),
        nn.Softmax(dim=1),
    ]
    return nn.Sequential(*layers)


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy src's state_dict into dst's, tensor by tensor in order (shapes must agree)."""
    a, b = list(src.state_dict().values()), dst.state_dict()
    if len(a) != len(b):
        raise SystemExit(f"hand-written module has {len(b)} tensors, netspec's {len(a)}")
    new = {}
    for (key, t), s in zip(b.items(), a):
        if t.shape != s.shape:
            raise SystemExit(f"{key}: {tuple(t.shape)} != {tuple(s.shape)}")
        new[key] = s.clone()
    dst.load_state_dict(new)


def randomize_batchnorm(module: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial running statistics and affine terms, so batchnorm really computes something."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def torch_onnx(module: nn.Module, shape: tuple[int, ...]) -> bytes:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1, *shape),),
            f,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    return f.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100, help="timed calls of each (100)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, both engines")
    parser.add_argument("--quick", action="store_true", help="15 repeats: a smoke run")
    args = parser.parse_args()
    repeats = 15 if args.quick else args.repeats
    torch.set_num_threads(args.threads)

    calls = {}
    macs = {}
    gen = torch.Generator().manual_seed(0)
    for name in SPECS:
        graph = netspec.compile_file(REPO / "specs" / f"{name}.yaml")
        macs[name] = sum(n.macs for n in graph.nodes)
        torch.manual_seed(0)
        module = build_module(graph).eval()
        randomize_batchnorm(module, gen)
        module_cl = copy.deepcopy(module).to(memory_format=torch.channels_last)
        hand = hand_written(name)
        copy_weights(module, hand)
        hand.eval()
        shape = tuple(graph.input_shape)
        ours, _ = ort_session(
            export_onnx(graph, module_weights(module)).SerializeToString(), args.threads
        )
        theirs, _ = ort_session(torch_onnx(hand, shape), args.threads)
        for b in BATCHES:
            x = np.random.default_rng(b).standard_normal((b, *shape)).astype(np.float32)
            engines = {
                "a": torch_call(module, x),
                "l": torch_call(module_cl, x, channels_last=True),
                "b": ort_call(ours, x),
                "c": ort_call(theirs, x),
            }
            with torch.inference_mode():
                ref = hand(torch.from_numpy(x)).numpy()
            for key, fn in engines.items():
                diff = max_abs_diff(ref, fn())
                if diff > 1e-3:
                    raise SystemExit(f"{name} batch {b} engine {key}: differs by {diff:.1e}")
            for key, fn in engines.items():
                calls[(name, b, key)] = fn
    ma, mb = torch.randn(MM, MM), torch.randn(MM, MM)
    calls[("mm", MM, "mm")] = lambda: torch.mm(ma, mb)

    times = interleave(calls, repeats, warmup=3, warmup_s=1.0)
    med = {k: statistics.median(v) for k, v in times.items()}
    gflops = 2 * MM**3 / med[("mm", MM, "mm")] / 1e9

    print(
        f"torch {torch.__version__}, onnxruntime {ort_version()}, {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s), {repeats} interleaved calls each; median ms (p90)\n"
    )
    print(
        "| spec | batch | (a) PyTorch eager | (l) eager channels-last | (b) ORT netspec export "
        "| (c) ORT torch.onnx.export | b/a speedup | b/l speedup | c/b (b vs c) | (b) samples/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in SPECS:
        for b in BATCHES:
            t = {k: times[(name, b, k)] for k in "albc"}
            m = {k: med[(name, b, k)] for k in "albc"}
            cells = " | ".join(f"{m[k] * 1e3:.3f} ({p90(t[k]) * 1e3:.3f})" for k in "albc")
            print(
                f"| {name} | {b} | {cells} | {m['a'] / m['b']:.2f}x | {m['l'] / m['b']:.2f}x "
                f"| {m['c'] / m['b']:.3f} "
                f"| {b / m['b']:,.0f} |"
            )
    print(
        f"\nmatmul {MM}x{MM} fp32 (torch.mm): {med[('mm', MM, 'mm')] * 1e3:.3f} ms, "
        f"{gflops:.1f} GFLOP/s"
    )
    flops = 2 * macs["cifar_cnn"]
    for k, label in (("b", "ORT netspec export"), ("a", "PyTorch eager")):
        rate = 64 / med[("cifar_cnn", 64, k)] * flops / 1e9
        print(
            f"cifar_cnn batch 64, {label}: {rate:.1f} GFLOP/s "
            f"({flops / 1e6:.1f} MFLOP/sample) = {rate / gflops:.0%} of the matmul rate"
        )


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    sys.exit(main())
