"""What a run optimizes and reports: the loss and the metrics, from the spec, the network and the data."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from netspec.errors import SpecError
from netspec.ir import Graph
from netspec.train_checks import loss_problems
from netspec.train_spec import TrainSpec

from ..weights import named_parameters
from .losses import LossFn, balanced_class_weights, make_loss
from .metrics import Metrics

REGRESSION_LOSSES = ("mse", "mae")


def _loss_error(message: str, hint: str | None = None) -> SpecError:
    return SpecError.one(f"train.loss: {message}", hint=hint)


def default_loss(task: str, output_shape: tuple[int, ...]) -> str:
    """The loss a task trains with when the spec names none."""
    if task == "segmentation":
        return "binary_cross_entropy" if output_shape[0] == 1 else "cross_entropy"
    return {"multiclass": "cross_entropy", "binary": "binary_cross_entropy"}.get(task, "mse")


def choose_loss(
    spec: TrainSpec,
    task: str,
    classes: Sequence[str] | None,
    graph: Graph,
    train_labels: Callable[[], np.ndarray],
) -> LossFn:
    """The spec's loss (or the task's default), checked against the data's `task`.

    The spec's own loss was checked against the network when it was compiled
    (netspec.train_checks); the default one, known only now, gets the same check here.
    `train_labels` gives the training split's labels, read only for balanced class weights.
    """
    cfg = spec.loss
    terms = cfg.terms if cfg else (default_loss(task, tuple(graph.output.shape)),)
    if task == "regression" and not set(terms) <= set(REGRESSION_LOSSES):
        wrong = next(t for t in terms if t not in REGRESSION_LOSSES)
        raise _loss_error(
            f"{wrong} needs class labels, but the data are regression targets",
            hint="use loss: mse or mae",
        )
    if task != "regression" and set(terms) & set(REGRESSION_LOSSES):
        wrong = next(t for t in terms if t in REGRESSION_LOSSES)
        raise _loss_error(
            f"{wrong} is for regression, but the data have classes",
            hint="use cross_entropy (or binary_cross_entropy), optionally + dice",
        )
    if cfg is None and task != "regression":
        problems = loss_problems(terms, graph)
        if problems:
            message, hint = problems[0]
            raise _loss_error(f"{message} (the default loss for {task} data)", hint)
    k = len(classes) if classes else 0
    class_weights = None
    if cfg is not None and cfg.class_weights is not None:
        if cfg.class_weights == "balanced":
            class_weights = balanced_class_weights(train_labels(), k)
        else:
            if len(cfg.class_weights) != k:
                raise _loss_error(
                    f"{len(cfg.class_weights)} class_weights for {k} classes "
                    f"({', '.join(classes or ())}); give one per class"
                )
            class_weights = torch.tensor(cfg.class_weights, dtype=torch.float32)
    try:
        return make_loss(
            terms,
            weights=cfg.weights if cfg else None,
            class_weights=class_weights,
            label_smoothing=cfg.label_smoothing if cfg else 0.0,
        )
    except ValueError as exc:
        raise _loss_error(str(exc)) from None


def default_metrics(task: str, asked: list[str] | None) -> list[str]:
    """The metrics a run reports: those asked for that fit the task, or the task's defaults."""
    if task == "segmentation":
        return list(asked) if asked else ["iou", "dice", "pixel_accuracy"]
    if task == "regression":
        picked = [m for m in asked or () if m in ("mae", "rmse")]
        return picked or ["mae"]
    return list(asked) if asked else ["accuracy"]


def make_metrics(names: list[str], task: str, classes: tuple[str, ...] | None) -> Metrics:
    """The metrics accumulator; metrics that do not fit the data's task are a SpecError."""
    try:
        return Metrics(names, task=task, num_classes=max(len(classes or ()), 1))  # type: ignore[arg-type]
    except ValueError as exc:
        raise SpecError.one(f"train.metrics: {exc}") from None


def regularizers(
    module: torch.nn.Module, rules: Sequence[Any]
) -> list[tuple[torch.Tensor, float, float]]:
    """(weight, l1, l2) of every trainable weight a `train.regularize` rule names by layer."""
    out = []
    for rule in rules:
        for layer, tensor, p in named_parameters(module):
            if not tensor.endswith("weight") or not p.requires_grad:
                continue  # like Keras' kernel_regularizer (separable: both kernels), not biases
            if any(fnmatch.fnmatchcase(layer, pat) for pat in rule.layers):
                out.append((p, rule.l1, rule.l2))
    return out
