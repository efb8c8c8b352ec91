"""A classification run's report on one split: predictions to the report files and pictures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from netspec.classreport import (
    auc,
    binary_scores,
    class_report,
    confident_mistakes,
    confusion,
    render_report,
    roc_curve,
)
from netspec.data.arraydata import ArrayData
from netspec.fileio import write_text
from netspec.jsonio import dumps
from netspec.run_record import RunLayout

from .plots import matplotlib_missing

__all__ = ["THRESHOLD", "class_report_of", "split_report"]

# `netspec predict` calls a sigmoid output positive from this probability on (outputs.py).
THRESHOLD = 0.5
# The most confident mistakes shown in mistakes.png.
MISTAKES = 16


def class_report_of(
    true: np.ndarray, probs: np.ndarray, classes: Sequence[str], *, split: str
) -> tuple[dict[str, Any], np.ndarray]:
    """The report of predictions `probs` ((N, K) softmax or (N,) sigmoid) against labels `true`,
    and (N, K) class probabilities (a sigmoid's as [1 - p, p]). Two classes add the ROC curve
    of the positive class (class 1), its AUC and the threshold predictions use."""
    true = np.asarray(true).ravel().astype(np.int64)
    probs = np.asarray(probs, dtype=float)
    if probs.ndim == 1 or probs.shape[1] == 1:
        p = binary_scores(probs)
        probs = np.stack([1 - p, p], axis=1)
        pred = (p >= THRESHOLD).astype(np.int64)
    else:
        pred = probs.argmax(axis=1)
    report = {"split": split, **class_report(confusion(true, pred, len(classes)), classes)}
    if len(classes) == 2:
        fpr, tpr, thresholds = roc_curve(true == 1, probs[:, 1])
        report["roc"] = {
            "auc": auc(fpr, tpr),
            "threshold": THRESHOLD,
            "fpr": fpr.tolist(),
            "tpr": tpr.tolist(),
            # +inf (the first point: nothing positive) is not JSON: null.
            "thresholds": [None if np.isinf(t) else float(t) for t in thresholds],
        }
    return report, probs


def split_report(
    probs: np.ndarray,
    data: ArrayData,
    out_dir: Path,
    *,
    split: str,
    classes: Sequence[str],
    name: str,
    pictures: bool = True,
    rgb: Sequence[int] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """The report of predictions `probs` (scoring.probabilities) on `data`, written into
    `out_dir`; `name` is the network's, for the pictures' titles.

    classification_report.txt and .json always; confusion_matrix.png, mistakes.png (image
    inputs) and roc.png (two classes) when `pictures` and matplotlib is installed. Returns the
    report.
    """
    classes = list(data.classes or classes)
    report, probs = class_report_of(data.y, probs, classes, split=split)
    out_dir = Path(out_dir)
    files = RunLayout(out_dir)
    write_text(files.report_txt, render_report(report))
    write_text(files.report_json, dumps(report))
    title = f"{name}: {split} ({report['samples']} samples)"
    written = [RunLayout.REPORT_TXT, RunLayout.REPORT_JSON]
    if pictures:  # `log: {pictures: false}`: the report's data only
        written += _draw(data, classes, report, probs, out_dir, title=title, rgb=rgb, log=log)
    log(
        f"{split} report: accuracy {report['accuracy']:.4f}, macro F1 {report['macro']['f1']:.4f}"
        f" ({', '.join(written)} in {out_dir})"
    )
    return report


def _draw(
    data: ArrayData,
    classes: list[str],
    report: dict[str, Any],
    probs: np.ndarray,
    out_dir: Path,
    *,
    title: str,
    rgb: Sequence[int] | None,
    log: Callable[[str], None],
) -> list[str]:
    """The report's pictures (names of the files written); none without matplotlib."""
    true = np.asarray(data.y).ravel().astype(np.int64)
    wrong = confident_mistakes(true, probs, MISTAKES)
    try:
        from .report_plots import plot_class_report

        pictures = plot_class_report(
            out_dir,
            report,
            classes=classes,
            title=title,
            images=data.x[wrong] if data.x.ndim == 4 else None,
            mistakes=[(int(true[i]), int(probs[i].argmax()), float(probs[i].max())) for i in wrong],
            rgb=rgb,
        )
    except ModuleNotFoundError as err:  # matplotlib is optional
        if not matplotlib_missing(err):
            raise
        log("note: matplotlib is not installed; the report's pictures were not drawn")
        return []
    return [p.name for p in pictures]
