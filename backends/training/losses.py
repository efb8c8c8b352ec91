"""Training losses: cross-entropy, BCE and soft dice/Jaccard on logits, mse/mae, weighted sums."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from netspec.data.labels import IGNORE
from netspec.data.stream import LABEL_BYTES, chunks, is_streamed, read_chunks
from netspec.train_spec import LOSSES

__all__ = ["LOGIT_TERMS", "LossFn", "balanced_class_weights", "make_loss"]

# Terms that take the network's pre-activation scores (its softmax/sigmoid head is fused into
# the loss); the others compare what the network outputs.
LOGIT_TERMS = ("cross_entropy", "binary_cross_entropy", "dice", "jaccard")
_REGRESSION_TERMS = ("mse", "mae")
# Additive smoothing of the soft dice/Jaccard ratios: keeps a class that is absent from both
# target and prediction at a perfect score (not 0/0) and the gradient bounded on tiny masks.
_EPS = 1.0


@dataclass(frozen=True, eq=False)
class LossFn:
    """A weighted sum of loss terms, called as `loss(out, y)` -> scalar tensor.

    `out` are logits for the LOGIT_TERMS: (N, K) or (N, K, H, W, ...) with K >= 2 for
    cross_entropy, dice and jaccard; a single unit ((N,), (N, 1), (N, 1, H, W)) for dice and
    jaccard, and one unit per target (any shape) for binary_cross_entropy. Class targets are
    int64 indices, (N,) or (N, H, W, ...), with -1 marking pixels that count nowhere. The call
    reads nothing back to the host, so it never stalls a CUDA stream. Equality is identity (it
    holds a tensor).
    """

    terms: tuple[str, ...]
    weights: tuple[float, ...]
    class_weights: Tensor | None = None  # (K,) float32; for a single unit, [w0, w1]
    label_smoothing: float = 0.0

    @property
    def name(self) -> str:
        """The terms as the spec writes them: 'cross_entropy + dice'."""
        return " + ".join(self.terms)

    @property
    def on_logits(self) -> bool:
        """Whether the loss takes pre-activation logits (else the network's outputs)."""
        return self.terms[0] in LOGIT_TERMS  # make_loss forbids mixing the two kinds

    def to(self, device: torch.device | str) -> LossFn:
        """The same loss with its class weights on `device` (saves a copy on every call)."""
        if self.class_weights is None:
            return self
        return dataclasses.replace(self, class_weights=self.class_weights.to(device))

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        # float64 stays float64 (tests, gradchecks); anything narrower is computed in float32,
        # as autocast would for these ops, so bf16/fp16 logits don't lose the small terms.
        out = out.to(torch.float64 if out.dtype == torch.float64 else torch.float32)
        total: Tensor | None = None
        for term, weight in zip(self.terms, self.weights):
            value = _TERMS[term](self, out, y)
            if weight != 1.0:
                value = value * weight
            total = value if total is None else total + value
        assert total is not None  # make_loss rejects an empty sum
        return total

    # --- the terms ----------------------------------------------------------------------------

    def _class_weights(self, out: Tensor, k: int, term: str) -> Tensor | None:
        w = self.class_weights
        if w is None:
            return None
        if w.numel() != k:
            raise ValueError(f"{term}: {w.numel()} class weights for {k} classes")
        return w.to(device=out.device, dtype=out.dtype)

    def _cross_entropy(self, out: Tensor, y: Tensor) -> Tensor:
        if out.dim() < 2 or out.shape[1] < 2:
            raise ValueError(
                f"cross_entropy needs logits (N, K, ...) with K >= 2, got {tuple(out.shape)}"
            )
        target = _class_targets(out, y, "cross_entropy")
        w = self._class_weights(out, out.shape[1], "cross_entropy")
        per = F.cross_entropy(
            out,
            target,
            weight=w,
            ignore_index=IGNORE,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )  # (N, ...), 0 at ignored elements
        # torch's "mean" divides by the summed weight of the non-ignored targets, which is 0/0
        # (NaN) on a batch that is all ignored: divide ourselves, by 1 in that case (sum is 0).
        valid = target != IGNORE
        counted = valid.to(per.dtype) if w is None else w[target.clamp(min=0)] * valid
        denom = counted.sum()
        return per.sum() / torch.where(denom > 0, denom, torch.ones_like(denom))

    def _binary_cross_entropy(self, out: Tensor, y: Tensor) -> Tensor:
        if out.numel() != y.numel():
            raise ValueError(
                f"binary_cross_entropy needs one output unit per target: logits "
                f"{tuple(out.shape)} for targets {tuple(y.shape)}"
            )
        t = y.reshape(out.shape).to(out.dtype)
        valid = t >= 0  # -1 marks ignored pixels; soft labels lie in [0, 1]
        t = t.clamp(min=0)
        s = self.label_smoothing
        if s:
            t = t * (1 - s) + 0.5 * s
        weight = valid.to(out.dtype)
        w = self._class_weights(out, 2, "binary_cross_entropy")
        if w is not None:
            # w_target for 0/1 labels, interpolated for soft ones (smoothing leaves w as is).
            hard = y.reshape(out.shape).to(out.dtype).clamp(min=0)
            weight = weight * (w[0] * (1 - hard) + w[1] * hard)
        loss = F.binary_cross_entropy_with_logits(out, t, weight=weight, reduction="sum")
        count = valid.sum().to(out.dtype)
        return loss / torch.where(count > 0, count, torch.ones_like(count))

    def _overlap(self, out: Tensor, y: Tensor, term: str) -> Tensor:
        """Per-class soft (intersection, sum of probabilities + sum of one-hot targets)."""
        if out.dim() == 1:
            out = out[:, None]  # (N,) single-unit logits
        if out.dim() < 2:
            raise ValueError(f"{term} needs logits (N, K, ...), got {tuple(out.shape)}")
        target = _class_targets(out, y, term)  # (N, ...)
        if out.shape[1] == 1:
            p1 = torch.sigmoid(out)
            prob = torch.cat([1 - p1, p1], 1)  # (N, 2, ...): the sigmoid as 2 classes
        else:
            prob = torch.softmax(out, 1)  # (N, K, ...)
        k = prob.shape[1]
        classes = torch.arange(k, device=out.device).view(1, k, *(1,) * (out.dim() - 2))
        one_hot = (target.unsqueeze(1) == classes).to(prob.dtype)  # -1 matches no class
        valid = (target != IGNORE).unsqueeze(1).to(prob.dtype)  # (N, 1, ...)
        prob = prob * valid
        dims = [0, *range(2, prob.dim())]
        inter = (prob * one_hot).sum(dims)  # (K,)
        return inter, prob.sum(dims) + one_hot.sum(dims)

    def _mean_over_classes(self, score: Tensor, term: str) -> Tensor:
        w = self._class_weights(score, score.shape[0], term)
        if w is None:
            return 1 - score.mean()
        wsum = w.sum()
        return 1 - (w * score).sum() / torch.where(wsum > 0, wsum, torch.ones_like(wsum))

    def _dice(self, out: Tensor, y: Tensor) -> Tensor:
        inter, total = self._overlap(out, y, "dice")
        return self._mean_over_classes((2 * inter + _EPS) / (total + _EPS), "dice")

    def _jaccard(self, out: Tensor, y: Tensor) -> Tensor:
        inter, total = self._overlap(out, y, "jaccard")
        return self._mean_over_classes((inter + _EPS) / (total - inter + _EPS), "jaccard")

    def _mse(self, out: Tensor, y: Tensor) -> Tensor:
        return F.mse_loss(out, y.to(out.dtype).view_as(out))

    def _mae(self, out: Tensor, y: Tensor) -> Tensor:
        return F.l1_loss(out, y.to(out.dtype).view_as(out))


_TERMS = {
    "cross_entropy": LossFn._cross_entropy,
    "binary_cross_entropy": LossFn._binary_cross_entropy,
    "dice": LossFn._dice,
    "jaccard": LossFn._jaccard,
    "mse": LossFn._mse,
    "mae": LossFn._mae,
}


def _class_targets(out: Tensor, y: Tensor, term: str) -> Tensor:
    """Class-index targets shaped (N, ...) to match logits (N, K, ...); (N, 1, ...) is accepted."""
    shape = (out.shape[0], *out.shape[2:])
    if y.numel() != math.prod(shape):
        raise ValueError(
            f"{term}: targets {tuple(y.shape)} do not match logits {tuple(out.shape)} "
            f"(expected {shape} class indices)"
        )
    return y.reshape(shape).long()


def make_loss(
    terms: Sequence[str],
    *,
    weights: Sequence[float] | None = None,
    class_weights: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> LossFn:
    """A loss summing `weights[i] * terms[i]` (weights default to 1).

    `class_weights` (one per class; [w0, w1] for a single sigmoid unit) weight cross-entropy
    (torch's weighted mean over non-ignored elements), binary cross-entropy (per-element
    weight, mean over non-ignored elements) and the mean over classes of dice/Jaccard.
    `label_smoothing` applies to the cross-entropy terms only.
    """
    terms = tuple(t.strip() for t in terms)
    if not terms:
        raise ValueError("a loss needs at least one term")
    for t in terms:
        if t not in LOSSES:
            raise ValueError(f"unknown loss {t!r}: expected one of {', '.join(LOSSES)}")
    if len(set(terms)) != len(terms):
        raise ValueError(f"a loss term is repeated in {' + '.join(terms)!r}")
    regression = [t for t in terms if t in _REGRESSION_TERMS]
    if regression and len(regression) != len(terms):
        raise ValueError(
            f"{' + '.join(terms)} mixes regression losses ({', '.join(regression)}), which "
            f"compare outputs, with class losses, which take logits"
        )
    if "cross_entropy" in terms and "binary_cross_entropy" in terms:
        raise ValueError(
            "cross_entropy needs K >= 2 softmax logits and binary_cross_entropy a single "
            "sigmoid unit: a network cannot end in both"
        )
    if weights is None:
        weights = (1.0,) * len(terms)
    weights = tuple(float(w) for w in weights)
    if len(weights) != len(terms):
        raise ValueError(f"{len(weights)} weights for {len(terms)} loss terms; give one per term")
    if any(not w >= 0 for w in weights):  # also rejects NaN
        raise ValueError(f"loss weights must be >= 0, got {list(weights)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if class_weights is not None:
        if regression:
            raise ValueError(f"class_weights do not apply to {' + '.join(terms)}")
        class_weights = torch.as_tensor(class_weights, dtype=torch.float32).detach()
        if class_weights.dim() != 1 or class_weights.numel() == 0:
            raise ValueError(
                f"class_weights must be a non-empty list, got shape {tuple(class_weights.shape)}"
            )
        if not bool((class_weights >= 0).all()):  # setup time: a host read is fine here
            raise ValueError(f"class_weights must be >= 0, got {class_weights.tolist()}")
    return LossFn(terms, weights, class_weights, float(label_smoothing))


def balanced_class_weights(y: Tensor | np.ndarray | Any, num_classes: int) -> Tensor:
    """Inverse-frequency weights N_valid / (K * count_c), float32 (K,); -1 targets are ignored.

    y may be streamed (a `stream.Lazy` of class masks). A class with no samples gets weight 0
    (it contributes nothing to the loss anyway, and an infinite weight would poison weighted
    means).
    """
    if num_classes < 1:
        raise ValueError(f"balanced class weights need at least 1 class, got {num_classes}")
    if is_streamed(y):  # streamed masks: counted chunk by chunk, where they are decoded
        count = partial(_class_counts, num_classes=num_classes)
        summed = sum(read_chunks(y, chunks(y, LABEL_BYTES), count), np.zeros(num_classes, np.int64))
    else:
        t = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y).reshape(-1)
        if t.is_floating_point() and not bool((t == t.round()).all()):
            raise ValueError("balanced class weights need integer class labels")
        summed = _class_counts(t.long().cpu().numpy(), num_classes)
    counts = torch.from_numpy(summed).double()
    valid = int(summed.sum())
    weights = torch.where(counts > 0, valid / (num_classes * counts.clamp(min=1)), 0.0)
    return weights.float()


def _class_counts(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Samples (pixels) of each class among integer labels (-1 ignored): all of them, or a
    chunk of streamed class masks."""
    kept = y[y != IGNORE]
    if kept.size and (int(kept.min()) < 0 or int(kept.max()) >= num_classes):
        raise ValueError(
            f"class labels must lie in 0..{num_classes - 1} (or be -1, ignored); "
            f"got {int(kept.min())}..{int(kept.max())}"
        )
    return np.bincount(kept, minlength=num_classes).astype(np.int64)
