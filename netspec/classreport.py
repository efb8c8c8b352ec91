"""Classification reports as data: confusion matrix, per-class precision/recall/F1, ROC and AUC, confident mistakes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "auc",
    "binary_scores",
    "class_report",
    "confident_mistakes",
    "confusion",
    "render_report",
    "roc_curve",
]


def confusion(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 counts: row i, column j = samples of true class i predicted as class j."""
    true, pred = np.asarray(true, dtype=np.int64).ravel(), np.asarray(pred, dtype=np.int64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"true has {true.size} labels but pred has {pred.size}")
    for name, a in (("true", true), ("pred", pred)):
        if a.size and (a.min() < 0 or a.max() >= k):
            raise ValueError(f"{name} holds labels {a.min()}..{a.max()}; expected 0..{k - 1}")
    return np.bincount(true * k + pred, minlength=k * k).reshape(k, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(num.shape, dtype=float), where=den > 0)


def class_report(cm: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, accuracy, macro and weighted averages.

    A class never predicted has precision 0; one never present has recall 0 and support 0
    (scikit-learn's classification_report with zero_division=0).
    """
    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (len(classes), len(classes)):
        raise ValueError(f"a {cm.shape} confusion matrix for {len(classes)} classes")
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    precision = _ratio(tp, cm.sum(axis=0).astype(float))
    recall = _ratio(tp, support.astype(float))
    f1 = _ratio(2 * precision * recall, precision + recall)
    n = int(support.sum())
    per_class = [
        {
            "class": str(name),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    ]
    weights = support / n if n else np.zeros(len(classes))
    averages = {
        label: {
            "precision": float(np.sum(w * precision)),
            "recall": float(np.sum(w * recall)),
            "f1": float(np.sum(w * f1)),
            "support": n,
        }
        for label, w in (("macro", np.full(len(classes), 1 / len(classes))), ("weighted", weights))
    }
    return {
        "samples": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "classes": per_class,
        **averages,
        "confusion": cm.tolist(),
    }


def render_report(report: dict[str, Any]) -> str:
    """The report as a fixed-width table, scikit-learn's classification_report layout."""
    width = max(12, *(len(r["class"]) for r in report["classes"]))
    head = f"{'':>{width}}  precision     recall         f1    support"
    lines = [head, ""]
    for r in report["classes"]:
        lines.append(
            f"{r['class']:>{width}}  {r['precision']:9.4f}  {r['recall']:9.4f}  "
            f"{r['f1']:9.4f}  {r['support']:9d}"
        )
    lines.append("")
    lines.append(
        f"{'accuracy':>{width}}  {'':9}  {'':9}  {report['accuracy']:9.4f}  {report['samples']:9d}"
    )
    for label in ("macro", "weighted"):
        r = report[label]
        lines.append(
            f"{label + ' avg':>{width}}  {r['precision']:9.4f}  {r['recall']:9.4f}  "
            f"{r['f1']:9.4f}  {r['support']:9d}"
        )
    return "\n".join(lines) + "\n"


def binary_scores(probs: np.ndarray) -> np.ndarray:
    """The positive class's probability of each sample: (N,) or (N, 1) sigmoid, or (N, 2) softmax."""
    probs = np.asarray(probs, dtype=float)
    if probs.ndim == 2 and probs.shape[1] == 2:
        return probs[:, 1]
    if probs.ndim == 2 and probs.shape[1] == 1:
        return probs[:, 0]
    if probs.ndim == 1:
        return probs
    raise ValueError(
        f"binary scores: expected (N,), (N, 1) or (N, 2) probabilities, got {probs.shape}"
    )


def roc_curve(true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates, thresholds) of the rule `score >= threshold`.

    One point per distinct score, from the highest threshold down; the first point is (0, 0)
    with threshold +inf (scikit-learn's roc_curve with drop_intermediate=False).
    """
    true = np.asarray(true).ravel().astype(bool)
    scores = np.asarray(scores, dtype=float).ravel()
    if true.shape != scores.shape:
        raise ValueError(f"true has {true.size} labels but scores has {scores.size}")
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], true[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last index of each distinct score
    tps = np.cumsum(t)[last]
    fps = (last + 1) - tps
    pos, neg = max(int(t.sum()), 0), int((~t).sum())
    tpr = np.r_[0.0, tps / pos if pos else np.zeros(tps.shape)]
    fpr = np.r_[0.0, fps / neg if neg else np.zeros(fps.shape)]
    return fpr, tpr, np.r_[np.inf, s[last]]


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the curve by the trapezoidal rule (the curve's x must be non-decreasing)."""
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def confident_mistakes(true: np.ndarray, probs: np.ndarray, n: int) -> np.ndarray:
    """Indices of at most `n` wrong predictions, the most confident first (argmax of `probs`).

    probs: (N, K) class probabilities; ties keep the samples' order.
    """
    probs = np.asarray(probs, dtype=float)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != np.asarray(true).ravel())
    confidence = probs[wrong, pred[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:n]
