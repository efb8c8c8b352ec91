"""Scoring a module on data without a Trainer: loss and metrics, and class probabilities.

`netspec evaluate` and the end-of-run report use these; the Trainer's own evaluation adds only
what a data-parallel run needs (each rank's share, the sums across ranks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from netspec.data.arraydata import ArrayData
from netspec.data.preprocess import Preprocessing
from netspec.data.stream import is_streamed

from .loader import Feeder, Streamed, batched, batched_pairs
from .metrics import Metrics
from .normalize import Normalizer


def batch_slices(n: int, size: int, fold: int = 2) -> Iterator[slice]:
    """Consecutive batches of `size`; a last batch smaller than `fold` joins the one before (a
    batch of one breaks batchnorm; the Trainer's batches follow the same rule)."""
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] < fold:
        starts.pop()
    for i, s in enumerate(starts):
        yield slice(s, starts[i + 1] if i + 1 < len(starts) else n)


@dataclass
class Scorer:
    """A module in eval mode with the run's preprocessing: how its batches go forward."""

    module: torch.nn.Module
    pre: Preprocessing
    device: torch.device
    logits: bool = False  # score the logits (class losses take them) rather than the output
    channels_last: bool = False
    bf16: bool = False
    feeder: Feeder | None = None  # the run's streamed splits' worker processes (loader.py)

    def __post_init__(self) -> None:
        self.norm = Normalizer(self.pre, self.device)

    def tensors(
        self, data: ArrayData, task: str | None
    ) -> tuple[torch.Tensor | Streamed, torch.Tensor | Streamed]:
        """x on the device as loaded; y as the loss takes it (class indices, or standardized
        regression targets); streamed masks stay on disk, decoded with their batches."""
        x = self.inputs(data)
        if is_streamed(data.y):  # class masks: int64 indices as decoded
            return x, Streamed(data.y, self.device, self.feeder)
        y = torch.from_numpy(np.ascontiguousarray(data.y))
        y = y.long() if task in ("multiclass", "segmentation") else y.float()
        return x, self.norm.targets(y.to(self.device))

    def inputs(self, data: ArrayData) -> torch.Tensor | Streamed:
        """x on the device; a streamed split stays on disk, its batches decoded when indexed."""
        if is_streamed(data.x):
            return Streamed(data.x, self.device, self.feeder)
        return torch.from_numpy(np.ascontiguousarray(data.x)).to(self.device)

    def prep(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor, *, logits: bool | None = None) -> torch.Tensor:
        """The module on raw `x` (preprocessed here), float32 out."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            x = self.prep(x)
            use_logits = self.logits if logits is None else logits
            out = self.module.forward_logits(x) if use_logits else self.module(x)  # type: ignore[operator]
        return out.float()


@torch.inference_mode()
def score(
    scorer: Scorer,
    data: ArrayData,
    task: str,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    metrics: Metrics,
    batch_size: int | None = None,
) -> dict[str, float]:
    """Loss and metrics of `scorer`'s module on `data` (metrics in the data's units)."""
    # Per-pixel outputs are large: a few dozen tiles at a time keep memory flat.
    batch_size = batch_size or (32 if task == "segmentation" else 512)
    x, y = scorer.tensors(data, task)
    scorer.module.eval()
    metrics.reset()
    total = loss_sum(scorer, x, y, loss_fn, metrics, batch_size)
    return {"loss": total / max(len(y), 1), **metrics.compute()}


def loss_sum(
    scorer: Scorer,
    x: torch.Tensor | Streamed,
    y: torch.Tensor | Streamed,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    metrics: Metrics,
    batch_size: int,
) -> float:
    """The loss summed over the samples of raw `x` (each batch's mean times its size), each batch
    added to `metrics` in the data's units (regression targets are learned standardized)."""
    total = 0.0
    parts = list(batch_slices(len(y), batch_size))
    for xb, yb in batched_pairs(x, y, parts):
        out = scorer.forward(xb)
        total += float(loss_fn(out, yb)) * yb.shape[0]
        metrics.update(scorer.norm.units(out), scorer.norm.units(yb))
    return total


@torch.inference_mode()
def probabilities(scorer: Scorer, data: ArrayData) -> np.ndarray:
    """Class probabilities of `data`: (N, K) softmax, or (N,) sigmoid for one output unit."""
    x = scorer.inputs(data)
    scorer.module.eval()
    out = []
    parts = list(batch_slices(len(x), 512))
    for xb in batched(x, parts):
        z = scorer.forward(xb, logits=True)  # (B, K)
        out.append(torch.sigmoid(z[:, 0]) if z.shape[1] == 1 else torch.softmax(z, dim=1))
    return torch.cat(out).cpu().numpy()
