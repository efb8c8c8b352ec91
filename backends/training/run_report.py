"""A training run's end-of-run reports: history.png, predictions.png or completions.png, and a
classification run's report files; each drawn from arrays, the history and names, not the Trainer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from netspec.data.arraydata import ArrayData
from netspec.run_record import RunLayout
from netspec.train_spec import TrainSpec

from .callbacks import monitor_of
from .examples import Examples
from .plots import matplotlib_missing
from .scoring import probabilities
from .state import RunState


@dataclass(frozen=True)
class Pictures:
    """What the pictures of one run show: its name, classes, the bands drawn as RGB."""

    layout: RunLayout
    name: str
    classes: Sequence[str]
    rgb: Sequence[int] | None
    log: Callable[[str], None]


def loss_name(terms: Sequence[str]) -> str:
    """The loss as history.png names it: `binary cross-entropy + dice`."""
    return " + ".join(t.replace("cross_entropy", "cross-entropy").replace("_", " ") for t in terms)


def per_class(table: dict[str, list[float | None]], classes: Sequence[str]) -> dict[str, Any]:
    """IoU and Dice of each class (Metrics.per_class), by class name."""
    return {
        name: {metric: values[i] for metric, values in table.items()}
        for i, name in enumerate(classes)
    }


def write(
    pics: Pictures,
    spec: TrainSpec,
    examples: Examples,
    state: RunState,
    loss: str,
    result: dict[str, Any],
) -> None:
    """history.png and the task's pictures; a classification run's report files (on the test
    split, else the validation split)."""
    data = examples.data
    if spec.log.pictures:
        draw_history(
            pics,
            state.history,
            loss=loss,
            best_epoch=state.best_epoch or None,
            monitor=monitor_of(spec.callbacks),
            test=result.get("test"),
            predictions=examples.predictions if data.task == "segmentation" else None,
            completions=examples.completions if spec.data.complete else None,
        )
    split, held = ("test", data.test) if data.test is not None else ("validation", data.val)
    if data.task in ("multiclass", "binary") and held is not None:
        probs = probabilities(examples.scorer, held)
        class_report(pics, probs, held, split=split, pictures=spec.log.pictures)


def draw_history(
    pics: Pictures,
    history: list[dict[str, float]],
    *,
    loss: str,
    best_epoch: int | None,
    monitor: str,
    test: dict[str, float] | None,
    predictions: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray, str]] | None = None,
    completions: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray, bool]] | None = None,
) -> None:
    """history.png, then predictions.png (segmentation: input, true and predicted masks of a
    few held-out tiles) or completions.png (image halves), when their samples are given."""
    try:
        from .plots import plot_history

        plot_history(
            history,
            pics.layout.history_png,
            title=pics.name,
            loss_name=loss,
            best_epoch=best_epoch,
            monitor=monitor,
            test=test,
        )
        if predictions is not None:
            from .seg_plots import plot_predictions

            x, y, pred, split = predictions()
            plot_predictions(
                x,
                y,
                pred,
                pics.layout.predictions_png,
                classes=list(pics.classes),
                title=f"{pics.name}: {split} tiles",
                rgb=pics.rgb,
            )
        if completions is not None:
            from .completions import plot_completions

            upper, lower, pred, held = completions()
            plot_completions(
                upper,
                lower,
                pred,
                pics.layout.completions_png,
                title=f"{pics.name}: {'held-out' if held else 'training'} images",
            )
    except ModuleNotFoundError as err:  # matplotlib is optional
        if not matplotlib_missing(err):
            raise
        pics.log("note: matplotlib is not installed; history.png was not drawn")


def class_report(
    pics: Pictures,
    probs: np.ndarray,
    data: ArrayData,
    *,
    split: str,
    pictures: bool,
) -> dict[str, Any]:
    """The classification report files of one split (training/classify.py) in the run."""
    from .classify import split_report

    return split_report(
        probs,
        data,
        pics.layout.directory,
        split=split,
        classes=pics.classes,
        name=pics.name,
        pictures=pictures,
        rgb=pics.rgb,
        log=pics.log,
    )
