"""How precise is torch's CPU batchnorm in channels-last, next to NCHW, in float32?

For the batchnorm inputs of the shipped specs at their training batch sizes (cifar_cnn and
resnet_cifar at 64, unet_isbi's 128x128 tiles at 16), one training forward and backward of
`F.batch_norm` (train mode) on post-ReLU-like inputs (relu of a normal, plus 0.5), against the
same computation in float64: the largest error of the output, of the input gradient and of the
weight gradient (relative to the largest reference value), in NCHW and in channels-last.

    python benchmarks/bn_precision.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SHAPES = {
    "cifar_cnn": [(64, 32, 32, 32), (64, 64, 16, 16), (64, 128, 8, 8)],
    "resnet_cifar": [(64, 16, 32, 32), (64, 32, 16, 16), (64, 64, 8, 8)],
    "unet_isbi": [(16, 16, 128, 128), (16, 32, 64, 64), (16, 64, 32, 32), (16, 128, 16, 16)],
}


def bn_grads(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, g: torch.Tensor):
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y = F.batch_norm(x, None, None, w, b, training=True, momentum=0.0, eps=1e-3)
    y.backward(g)
    return y.detach(), x.grad, w.grad, b.grad


def errors(shape: tuple[int, ...], seed: int = 0) -> dict[str, tuple[float, float, float]]:
    gen = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = torch.randn(shape, generator=gen, dtype=torch.float64).relu() + 0.5
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    w = 1 + 0.1 * torch.randn(c, generator=gen, dtype=torch.float64)
    b = 0.1 * torch.randn(c, generator=gen, dtype=torch.float64)
    ref = bn_grads(x, w, b, g)
    out = {}
    for fmt, mf in (("NCHW", torch.contiguous_format), ("channels-last", torch.channels_last)):
        got = bn_grads(
            x.float().contiguous(memory_format=mf),
            w.float(),
            b.float(),
            g.float().contiguous(memory_format=mf),
        )
        rel = [float((a.double() - r).abs().max() / r.abs().max()) for a, r in zip(got, ref)]
        out[fmt] = (rel[0], rel[1], rel[2])
    return out


def main() -> None:
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, float32 against float64, largest error / largest value\n")
    print("| spec | input (N, C, H, W) | layout | output | input grad | weight grad |")
    print("|---|---|---|---:|---:|---:|")
    for spec, shapes in SHAPES.items():
        for shape in shapes:
            for fmt, (y, gx, gw) in errors(shape).items():
                print(f"| {spec} | {shape} | {fmt} | {y:.1e} | {gx:.1e} | {gw:.1e} |")


if __name__ == "__main__":
    main()
