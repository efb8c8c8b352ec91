"""A few samples of a run's data and the model's answers on them: the pictures' and
TensorBoard's examples (predictions.png, completions.png, the prediction grid)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from netspec.data.pipeline import Prepared

from .scoring import Scorer
from .tiles import random_tiles

Pair = tuple[torch.Tensor, torch.Tensor]


def sample(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples spread over the set (consecutive tiles often come from one scene)."""
    pick = torch.linspace(0, len(y) - 1, min(n, len(y))).round().long().to(x.device)
    return x[pick], y[pick]


@torch.inference_mode()
def predicted_labels(scorer: Scorer, x: torch.Tensor) -> torch.Tensor:
    """The class (per sample, or per pixel) the module predicts for raw `x`."""
    scorer.module.eval()
    out = scorer.forward(x, logits=True)
    return out.argmax(1) if out.shape[1] > 1 else (out[:, 0] > 0).long()


@torch.inference_mode()
def completions(
    scorer: Scorer, x: torch.Tensor, y: torch.Tensor, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image completion: n upper halves (scaled as the model sees them), their true and their
    predicted lower halves, in the data's units."""
    xs, ys = sample(x, y, n)
    scorer.module.eval()
    pred = scorer.norm.units(scorer.forward(xs, logits=False))
    return (
        (xs.float() * scorer.pre.scale).cpu().numpy(),
        scorer.norm.units(ys.float()).cpu().numpy(),
        pred.flatten(1).cpu().numpy(),
    )


@dataclass
class Examples:
    """Where a run's examples come from: held-out data first (validation, else test), else a few
    training samples (random tiles of a scene larger than the input), labelled by their split."""

    scorer: Scorer
    data: Prepared
    train: Pair
    val: Pair | None
    test: Pair | None
    crops: torch.Generator  # the tile sampler's stream: the run's own, so pictures stay seeded

    @torch.inference_mode()
    def sample(self, n: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
        """A few samples spread over their split: raw x, true y, predicted labels, split."""
        held = self.val or self.test
        split = "validation" if self.val is not None else "test"
        if held is None:  # no held-out tiles: show training tiles (labelled so in the title)
            x, y = self.train
            idx = torch.arange(min(n, len(y)), device=y.device)
            x, y = (
                random_tiles(x, y, idx, self.data.tile, self.crops)
                if self.data.random_tiles
                else (x[idx], y[idx])
            )
            held, split = (x, y), "training"
        xb, yb = sample(*held, n)
        return xb, yb, predicted_labels(self.scorer, xb), split

    def predictions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """`sample(6)` as arrays, for predictions.png."""
        xb, yb, pred, split = self.sample(6)
        return xb.float().cpu().numpy(), yb.cpu().numpy(), pred.cpu().numpy(), split

    def completions(self, n: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Upper halves, true and predicted lower halves of a few held-out images."""
        held = self.test or self.val
        upper, lower, pred = completions(self.scorer, *(held or self.train), n)
        return upper, lower, pred, held is not None
