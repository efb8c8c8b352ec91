"""`train.log.tensorboard`: each epoch's scalars, the graph, a grid of predictions, the spec, and at the end the test scores and the train section as hparams."""

# Not named tensorboard.py: a module must not shadow the package it uses (house style).

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from netspec.errors import NetspecError, first_line
from netspec.run_record import RunLayout

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SHOWN = 8  # predictions drawn each epoch (segmentation: half, a row of four panels each)


def scalar_tags(row: dict[str, float]) -> dict[str, float]:
    """An epoch's row as TensorBoard tags: `loss/train` beside `loss/val` in one section."""
    tags = {}
    for key, value in row.items():
        if key == "epoch":
            continue
        if key == "lr":
            tags["lr"] = value
        elif key == "time_s":
            tags["time/epoch_s"] = value
        elif key == "samples_per_s":
            tags["time/samples_per_s"] = value
        elif key.startswith("val_"):
            tags[f"{key.removeprefix('val_')}/val"] = value
        else:
            tags[f"{key}/train"] = value
    return tags


def hparam_values(train: Any, prefix: str = "") -> dict[str, bool | int | float | str]:
    """The spec's `train:` section as TensorBoard hparams: nested keys dotted (`optimizer.lr`),
    lists and other values as text, nulls left out (the HParams dashboard takes scalars only)."""
    out: dict[str, bool | int | float | str] = {}
    items = train.items() if isinstance(train, dict) else enumerate(train)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(hparam_values(value, f"{name}."))
        elif value is None:
            continue
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


def spec_markdown(text: str) -> str:
    """The spec as TensorBoard's text plugin shows it verbatim: an indented Markdown code block."""
    return "\n".join("    " + line for line in text.splitlines())


def labels_figure(
    images: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    classes: list[str],
    title: str,
    rgb: Sequence[int] | None = None,
) -> Figure:
    """Classification: one tile per sample, titled `true → predicted` (red when wrong)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plots import display_image

    n = len(images)
    fig = Figure(figsize=(1.6 * n + 0.2, 2.1))  # fixed margins: a constrained layout draws twice
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.78, wspace=0.1)
    fig.suptitle(f"{title} (true → predicted, red: wrong)", fontsize=9)
    axes = fig.subplots(1, n, squeeze=False)[0]

    def name(i: int) -> str:
        return classes[i] if i < len(classes) else str(i)

    for ax, image, t, p in zip(axes, images, true, pred, strict=True):
        shown, cmap = display_image(image, rgb)
        ax.imshow(shown, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(
            f"{name(int(t))} → {name(int(p))}", fontsize=8, color="black" if t == p else "red"
        )
        ax.axis("off")
    return fig


class Board:
    """A SummaryWriter on <run>/tensorboard for one training run (the writing rank only).

    `sample(n)` gives n held-out samples of the current weights (raw x, true y, predicted
    labels, split name), drawn each epoch for image tasks.
    """

    def __init__(
        self,
        layout: RunLayout,
        *,
        epoch: int,
        module: Any,
        input_shape: Sequence[int],
        device: Any,
        spec_file: str | None,
        task: str,
        classes: Sequence[str],
        name: str,
        rgb: Sequence[int] | None,
        sample: Callable[[int], tuple[Any, Any, Any, str]],
        log: Callable[[str], None],
        spec_text: str = "",
    ) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise NetspecError.one(
                "train.log.tensorboard is on, but the tensorboard package is not installed",
                spec_file,
                hint="pip install 'netspec[tensorboard]', or set train.log.tensorboard: false",
                stage="train",
            ) from None
        self.task, self.classes, self.name, self.rgb = task, list(classes), name, rgb
        self.input_shape, self.sample, self.log = tuple(input_shape), sample, log
        self.dir = layout.tensorboard
        # Resuming after epoch k: events of later epochs from the interrupted run are dropped.
        purge = epoch + 1 if epoch else None
        self.writer: Any = SummaryWriter(log_dir=str(self.dir), purge_step=purge)
        self.step = epoch
        if not epoch:
            self._graph(module, device)
            if spec_text:
                self.writer.add_text("spec", spec_markdown(spec_text), 0)

    def _graph(self, module: Any, device: Any) -> None:
        import torch

        x = torch.zeros((1, *self.input_shape), device=device)
        module = getattr(module, "module", module)  # the network inside a DDP wrapper
        was_training = module.training
        module.eval()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer chatter about Python control flow
                self.writer.add_graph(module, x)
        except Exception as exc:  # tracing fails on some models; the scalars still matter
            self.log(
                f"note: TensorBoard graph not written ({type(exc).__name__}: {first_line(exc)})"
            )
        finally:
            module.train(was_training)

    def epoch(self, row: dict[str, float]) -> None:
        step = self.step = int(row["epoch"])
        for tag, value in scalar_tags(row).items():
            self.writer.add_scalar(tag, value, step)
        fig = self._predictions(step)
        if fig is not None:
            self.writer.add_figure("predictions", fig, step)
        self.writer.flush()

    def _predictions(self, step: int) -> Figure | None:
        if self.task == "regression" or len(self.input_shape) != 3:
            return None  # nothing to draw as pictures
        seg = self.task == "segmentation"
        x, y, pred, split = self.sample(SHOWN // 2 if seg else SHOWN)
        title = f"{self.name}: {split} samples, epoch {step}"
        images = x.float().cpu().numpy()
        if seg:
            from .seg_plots import predictions_figure

            return predictions_figure(
                images,
                y.cpu().numpy(),
                pred.cpu().numpy(),
                classes=self.classes,
                title=title,
                rgb=self.rgb,
            )
        return labels_figure(
            images, y.cpu().numpy(), pred.cpu().numpy(), self.classes, title, self.rgb
        )

    def finish(self, test: dict[str, float] | None, train: dict[str, Any]) -> None:
        """The end of a finished run: the test split's scores (`loss/test` beside `loss/val`)
        at the last epoch, and the `train:` section as hparams with those scores as metrics."""
        from torch.utils.tensorboard.summary import hparams

        metrics = {f"{k}/test": float(v) for k, v in (test or {}).items()}
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, self.step)
        # Into this run's own event file (SummaryWriter.add_hparams would open another folder).
        for summary in hparams(hparam_values(train), metrics):
            self.writer.file_writer.add_summary(summary, self.step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
