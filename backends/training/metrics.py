"""Training metrics kept as exact sufficient statistics on the device, reduced once per epoch."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from netspec.data.labels import IGNORE, Task
from netspec.train_spec import METRICS

__all__ = ["Metrics", "Task"]

_CLASSIFICATION = ("accuracy", "top5_accuracy", "precision", "recall", "f1")
_REGRESSION = ("mae", "rmse")
_SEGMENTATION = ("iou", "dice", "pixel_accuracy")


class Metrics:
    """Accumulates confusion counts, top-k hits and error sums over batches; `compute` reduces them.

    Segmentation takes logits (N, K, H, W) (or (N, 1, H, W): one sigmoid unit, 2 classes) and
    targets (N, H, W) with -1 marking ignored pixels; its confusion matrix counts pixels.

    `update` does no host synchronization (no .item(), no data-dependent shapes), so it can run
    every step without stalling a CUDA stream; `compute` copies the statistics to the host once.
    Targets must be valid class indices: they are not checked in `update` because that would
    need a sync, and the loss has already rejected bad ones.
    """

    def __init__(self, names: list[str], *, task: Task, num_classes: int) -> None:
        if task not in ("multiclass", "binary", "regression", "segmentation"):
            raise ValueError(
                f"unknown task {task!r}: expected multiclass, binary, regression or segmentation"
            )
        for name in names:
            if name not in METRICS:
                raise ValueError(f"unknown metric {name!r}: expected one of {', '.join(METRICS)}")
            if name == "top5_accuracy" and (task != "multiclass" or num_classes < 5):
                raise ValueError(
                    f"top5_accuracy needs a multiclass task with at least 5 classes "
                    f"(got task {task} with {num_classes} classes)"
                )
            if name in _CLASSIFICATION and task == "regression":
                raise ValueError(f"{name} needs a classification task, not regression")
            if name in _REGRESSION and task != "regression":
                raise ValueError(f"{name} needs a regression task, not {task}")
            if name in _SEGMENTATION and task != "segmentation":
                raise ValueError(f"{name} needs a segmentation task, not {task}")
            if task == "segmentation" and name not in (*_SEGMENTATION, "accuracy"):
                raise ValueError(
                    f"{name} is not a segmentation metric: use iou, dice, pixel_accuracy or "
                    f"accuracy"
                )
        if task == "multiclass" and num_classes < 2:
            raise ValueError(f"a multiclass task needs at least 2 classes, got {num_classes}")
        if task == "binary" and num_classes not in (1, 2):
            raise ValueError(f"a binary task has 1 output (or 2 classes), got {num_classes}")
        if task == "segmentation" and num_classes < 1:
            raise ValueError(f"a segmentation task needs at least 1 output, got {num_classes}")
        self.names: list[str] = list(dict.fromkeys(names))  # keep order, drop repeats
        self.task: Task = task
        # Binary predictions are 0/1, so their confusion matrix is 2x2 whatever num_classes says;
        # likewise a single-unit (sigmoid) segmentation head.
        binary = task == "binary" or (task == "segmentation" and num_classes == 1)
        self.num_classes = 2 if binary else num_classes
        # (K * K + 1,) int64: the row-major (K, K) matrix, rows = target, columns = prediction,
        # then one overflow cell that collects ignored pixels so update needs no boolean mask.
        self._cm: Tensor | None = None
        self._top5: Tensor | None = None  # () int64 hits
        self._abs: Tensor | None = None  # () float64 sum |pred - target|
        self._sq: Tensor | None = None  # () float64 sum (pred - target)^2
        self._count = 0  # number of compared values: a host int, known without a sync
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated (call at the start of each epoch and each evaluation)."""
        # Statistics are created lazily on the device of the first batch.
        self._cm = self._top5 = self._abs = self._sq = None
        self._count = 0

    # --- accumulation -------------------------------------------------------------------------

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Add one batch: logits (N, K) / (N,) / (N, 1) / (N, D) and its targets."""
        logits = logits.detach()
        target = target.detach()
        if self.task == "regression":
            self._update_regression(logits, target)
            return
        if self.task == "segmentation":
            self._update_segmentation(logits, target)
            return
        if self.task == "multiclass":
            if logits.dim() != 2 or logits.shape[1] != self.num_classes:
                raise ValueError(
                    f"multiclass logits must be (N, {self.num_classes}), got {tuple(logits.shape)}"
                )
            pred = logits.argmax(1)  # (N,)
            target = target.reshape(-1).long()  # (N,)
        else:
            if logits.dim() == 2 and logits.shape[1] == 1:
                logits = logits[:, 0]
            if logits.dim() != 1:
                raise ValueError(f"binary logits must be (N,) or (N, 1), got {tuple(logits.shape)}")
            pred = (logits > 0).long()  # (N,) pre-sigmoid score > 0 <=> probability > 0.5
            target = target.reshape(-1).long()  # (N,) 0/1, possibly given as floats
        if target.shape[0] != pred.shape[0]:
            raise ValueError(f"{pred.shape[0]} predictions but {target.shape[0]} targets")
        self._count_cells(target.to(pred.device) * self.num_classes + pred)
        if "top5_accuracy" in self.names:
            top = logits.topk(5, dim=1).indices  # (N, 5)
            hits = (top == target.to(top.device)[:, None]).any(1).sum()
            self._top5 = hits if self._top5 is None else self._top5 + hits

    def _count_cells(self, flat: Tensor) -> None:
        """Add 1 to each confusion cell index in `flat` (K * K for the overflow cell)."""
        k = self.num_classes
        if self._cm is None:
            self._cm = torch.zeros(k * k + 1, dtype=torch.long, device=flat.device)
        # scatter_add_ instead of bincount: CUDA bincount reads max() back to size its output,
        # a host sync on every step; scatter_add_ also has a deterministic CUDA mode.
        self._cm.scatter_add_(0, flat, torch.ones_like(flat))

    def _update_segmentation(self, logits: Tensor, target: Tensor) -> None:
        k = self.num_classes
        if logits.dim() < 3 or logits.shape[1] not in ({1, k} if k == 2 else {k}):
            units = f"{k} or 1" if k == 2 else f"{k}"
            raise ValueError(
                f"segmentation logits must be (N, K, H, W) with K = {units}, "
                f"got {tuple(logits.shape)}"
            )
        # (N, H, W); a single unit is class 1 where its sigmoid > 0.5, i.e. its logit > 0.
        pred = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
        if target.numel() != pred.numel():
            raise ValueError(
                f"segmentation targets {tuple(target.shape)} do not match logits "
                f"{tuple(logits.shape)}: expected {tuple(pred.shape)} class indices"
            )
        target = target.reshape(pred.shape).to(pred.device).long()  # (N, 1, H, W) masks too
        # Ignored pixels go to the overflow cell: a boolean mask would have a data-dependent
        # size, which the device would have to report back to the host.
        valid = target != IGNORE
        self._count_cells(torch.where(valid, target * k + pred, k * k).reshape(-1))

    def _update_regression(self, pred: Tensor, target: Tensor) -> None:
        if pred.dim() == 2 and pred.shape[1] == 1 and target.dim() == 1:
            pred = pred[:, 0]
        elif target.dim() == 2 and target.shape[1] == 1 and pred.dim() == 1:
            target = target[:, 0]
        if pred.shape != target.shape:
            raise ValueError(
                f"regression predictions {tuple(pred.shape)} and targets "
                f"{tuple(target.shape)} have different shapes"
            )
        # float64 sums so long epochs don't lose the small errors to rounding.
        err = pred.double() - target.to(pred.device).double()  # (N, [D])
        abs_sum, sq_sum = err.abs().sum(), err.square().sum()
        self._count += err.numel()
        if self._abs is None or self._sq is None:
            self._abs, self._sq = abs_sum, sq_sum
        else:
            self._abs, self._sq = self._abs + abs_sum, self._sq + sq_sum

    def sum_across(self, all_reduce: Callable[[Tensor], object], device: torch.device) -> None:
        """Add up the statistics of every process (`all_reduce` sums a tensor in place), so
        `compute` gives the metrics of the whole set, not an average of per-process metrics."""
        k2 = self.num_classes * self.num_classes + 1
        # (K*K+1 confusion cells, top-5 hits, compared values, processes that saw data) int64
        counts = torch.zeros(k2 + 3, dtype=torch.long, device=device)
        sums = torch.zeros(2, dtype=torch.float64, device=device)  # |err|, err^2
        if self._cm is not None:
            counts[:k2] = self._cm
        if self._top5 is not None:
            counts[k2] = self._top5
        counts[k2 + 1] = self._count
        counts[k2 + 2] = int(any(t is not None for t in (self._cm, self._abs)))
        if self._abs is not None and self._sq is not None:
            sums[0], sums[1] = self._abs, self._sq
        all_reduce(counts)
        all_reduce(sums)
        if int(counts[k2 + 2]) == 0:  # nobody saw a sample: compute() says NaN
            self.reset()
            return
        if self.task == "regression":
            self._abs, self._sq, self._count = sums[0], sums[1], int(counts[k2 + 1])
        else:
            self._cm, self._top5 = counts[:k2], counts[k2]

    # --- reduction ----------------------------------------------------------------------------

    def compute(self) -> dict[str, float]:
        """The metrics named in the spec; NaN for all of them if nothing was accumulated.

        Precision, recall and F1 are macro averages over the classes that occur in the targets
        or the predictions (scikit-learn's default labels, zero_division=0) for multiclass, and
        those of the positive class for binary. Segmentation IoU and dice are the means of the
        per-class scores over the classes whose union (target or prediction) is not empty; pixel
        accuracy ("accuracy" too) is the fraction of non-ignored pixels predicted right.
        """
        if self.task == "regression":
            return self._compute_regression()
        cm = self._matrix()
        if cm is None:
            return dict.fromkeys(self.names, math.nan)
        total = cm.sum().item()
        if total == 0:  # every pixel ignored
            return dict.fromkeys(self.names, math.nan)
        tp = cm.diagonal()  # (K,)
        predicted = cm.sum(0)  # (K,) tp + fp
        actual = cm.sum(1)  # (K,) tp + fn
        precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), 0.0)
        recall = torch.where(actual > 0, tp / actual.clamp(min=1), 0.0)
        denom = predicted + actual  # F1 = 2tp / (2tp + fp + fn)
        f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), 0.0)
        present = denom > 0  # classes seen as a target or a prediction
        if self.task == "binary":
            pick = {"precision": precision[1], "recall": recall[1], "f1": f1[1]}
        else:
            pick = {
                "precision": precision[present].mean(),
                "recall": recall[present].mean(),
                "f1": f1[present].mean(),
            }
        if self.task == "segmentation":
            # dice = F1 of each class; IoU = tp / (tp + fp + fn), both over present classes.
            pick["dice"] = f1[present].mean()
            pick["iou"] = (tp[present] / (denom - tp)[present]).mean()
        out: dict[str, float] = {}
        for name in self.names:
            if name in ("accuracy", "pixel_accuracy"):
                out[name] = tp.sum().item() / total
            elif name == "top5_accuracy":
                assert self._top5 is not None
                out[name] = self._top5.item() / total
            else:
                out[name] = float(pick[name])
        return out

    def per_class(self) -> dict[str, list[float | None]]:
        """IoU and dice of each class, None where the class is in neither targets nor predictions.

        Defined for every confusion-matrix task: segmentation (pixels), multiclass and binary
        (samples; binary lists class 0 and class 1). All None before any update.
        """
        if self.task == "regression":
            raise ValueError("per-class scores need classes, not a regression task")
        cm = self._matrix()
        if cm is None:
            return {"iou": [None] * self.num_classes, "dice": [None] * self.num_classes}
        tp = cm.diagonal()
        denom = cm.sum(0) + cm.sum(1)  # 2tp + fp + fn
        iou = [None if d == 0 else t / (d - t) for t, d in zip(tp.tolist(), denom.tolist())]
        dice = [None if d == 0 else 2 * t / d for t, d in zip(tp.tolist(), denom.tolist())]
        return {"iou": iou, "dice": dice}

    def _matrix(self) -> Tensor | None:
        """The (K, K) float64 confusion matrix on the host, without the overflow cell."""
        if self._cm is None:
            return None
        k = self.num_classes
        return self._cm[: k * k].view(k, k).double().cpu()  # one device -> host copy per epoch

    def _compute_regression(self) -> dict[str, float]:
        if self._count == 0 or self._abs is None or self._sq is None:
            return dict.fromkeys(self.names, math.nan)
        count = self._count
        values = {"mae": self._abs.item() / count, "rmse": math.sqrt(self._sq.item() / count)}
        return {name: values[name] for name in self.names}
