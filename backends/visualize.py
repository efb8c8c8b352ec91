"""`netspec visualize`: a trained run's filters, feature maps and saliency (Grad-CAM), as data, then PNGs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from netspec.errors import NetspecError, few
from netspec.fileio import save_figure
from netspec.ir import Graph, Node
from netspec.runs import LoadedRun

from .lowering import NetModule
from .weights import load_module

CONVS = ("conv1d", "conv2d", "conv_transpose2d")
CLASSIFICATION = ("multiclass", "binary")
GRID_COLS = 8  # channels / filters per row
MAX_MAPS = 32  # feature maps drawn per layer


def conv_names(graph: Graph) -> list[str]:
    return [n.name for n in graph.nodes if n.kind in CONVS]


def feature_convs(graph: Graph) -> list[str]:
    """The 2-D convolutions: the default layers for feature maps, the last one for Grad-CAM."""
    return [n.name for n in graph.nodes if n.kind in CONVS and len(n.shape) == 3]


def spatial_names(graph: Graph) -> list[str]:
    """Layers whose output is (C, H, W): the ones with feature maps to draw."""
    return [n.name for n in graph.nodes if len(n.shape) == 3]


def _layer(graph: Graph, name: str, valid: list[str], what: str) -> Node:
    if name not in valid:
        known = name in {n.name for n in graph.nodes}
        raise NetspecError.one(
            f"layer '{name}' {'is not ' + what if known else 'is not in the network'}",
            graph.file,
            hint=f"choose one of: {few(valid, 12)}" if valid else f"no layer is {what}",
        )
    return graph.node(name)


# --- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """A conv layer's kernels as images: (N, kh, kw, 3) colour or (N, kh, kw) grey, each in [0, 1]."""

    layer: str
    tiles: np.ndarray
    colour: bool
    note: str  # what a tile shows


def filters(graph: Graph, weights: dict[str, np.ndarray], layer: str) -> Filters:
    """Each output filter of `layer` as one small image, normalized per filter.

    A convolution reading RGB images shows its kernels in colour; any other shows the mean over
    its input channels, in grey.
    """
    node = _layer(graph, layer, conv_names(graph), "a convolution")
    w = np.asarray(weights[f"{layer}.weight"], dtype=np.float32)
    if node.kind.startswith("conv_transpose"):
        w = w.swapaxes(0, 1)  # torch keeps (in, out, ...): make it (out, in, ...)
    if w.ndim == 3:  # conv1d: (out, in, k) as 1 x k strips
        w = w[:, :, None, :]
    colour = w.shape[1] == 3 and node.inputs == ("input",)
    tiles = w.transpose(0, 2, 3, 1) if colour else w.mean(axis=1)  # (N, kh, kw[, 3])
    flat = tiles.reshape(len(tiles), -1)
    lo, hi = flat.min(1), flat.max(1)
    span = np.where(hi > lo, hi - lo, 1.0)
    view = (-1,) + (1,) * (tiles.ndim - 1)
    tiles = (tiles - lo.reshape(view)) / span.reshape(view)
    c_in = w.shape[1]
    note = "RGB kernels" if colour else f"mean over {c_in} input channel{'s' * (c_in != 1)}"
    return Filters(layer, tiles, colour, note)


def activations(module: NetModule, x: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
    """The feature maps (C, H, W) each of `layers` produces for one model input `x`."""
    graph = module.graph
    valid = spatial_names(graph)
    for name in layers:
        _layer(graph, name, valid, "a layer with feature maps (C, H, W)")
    maps: dict[str, np.ndarray] = {}
    hooks = [
        module.layer(name).register_forward_hook(
            lambda _m, _i, out, name=name: maps.__setitem__(name, out[0].detach().cpu().numpy())
        )
        for name in layers
    ]
    try:
        with torch.no_grad():
            module(torch.as_tensor(x[None]))
    finally:
        for h in hooks:
            h.remove()
    return {name: maps[name] for name in layers}


@dataclass(frozen=True)
class Saliency:
    """Where the network looks for its top class: gradient and Grad-CAM maps (H, W) in [0, 1]."""

    label: int
    score: float  # the model's output for `label` (a probability when the model ends in one)
    gradient: np.ndarray  # d logit / d input, signed, (C, H, W)
    gradcam: np.ndarray  # (H, W) in [0, 1], upsampled from `layer`
    layer: str


def saliency(
    module: NetModule, x: np.ndarray, task: str | None, layer: str | None = None
) -> Saliency:
    """Plain gradient of the top class's logit, and Grad-CAM on the last convolution (or `layer`).

    Grad-CAM (Selvaraju et al. 2017): weights α_c = mean over (h, w) of d logit / d A_c, map =
    relu(Σ_c α_c A_c), bilinearly upsampled to the input and scaled to [0, 1].
    """
    graph = module.graph
    if task not in CLASSIFICATION or len(graph.output.shape) != 1:
        raise NetspecError.one(
            f"saliency needs a classification model (one score per class); this run's task "
            f"is {task or 'unknown'} with output {graph.output.shape}",
            graph.file,
            hint="use --activations to look inside other models",
        )
    convs = feature_convs(graph)
    if layer is None:
        if not convs:
            raise NetspecError.one(
                "Grad-CAM needs a 2-D convolution; this network has none", graph.file
            )
        layer = convs[-1]
    _layer(graph, layer, spatial_names(graph), "a layer with feature maps (C, H, W)")
    kept: dict[str, torch.Tensor] = {}

    def keep(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> None:
        out.retain_grad()
        kept["a"] = out

    hook = module.layer(layer).register_forward_hook(keep)
    xt = torch.as_tensor(x[None]).clone().requires_grad_(True)
    try:
        logits = module.forward_logits(xt)[0]  # (K,)
    finally:
        hook.remove()
    label = int(logits.argmax()) if len(logits) > 1 else int(logits[0] > 0)
    logit = logits[label] if len(logits) > 1 else logits[0] * (1 if label else -1)
    logit.backward()
    with torch.no_grad():
        probs = module.forward(torch.as_tensor(x[None]))[0]
    a, g = kept["a"][0], kept["a"].grad[0]  # (C, h, w)
    cam = torch.relu((g.mean(dim=(1, 2))[:, None, None] * a.detach()).sum(0))
    cam = torch.nn.functional.interpolate(
        cam[None, None], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False
    )[0, 0]
    top = float(cam.max())
    cam = cam / top if top > 0 else cam
    # One sigmoid output scores class 1: class 0's score is its complement.
    score = float(probs[label]) if len(probs) > 1 else float(probs[0] if label else 1 - probs[0])
    return Saliency(label, score, xt.grad[0].numpy(), cam.detach().numpy(), layer)


def load(run: LoadedRun) -> NetModule:
    """The run's torch module with its weights, in eval mode, on the CPU."""
    return load_module(run.graph, run.weights)


def read_input(run: LoadedRun, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(raw sample, model input) of an image, .npy or .csv file, read and preprocessed exactly as
    `netspec predict` does with the run's recorded preprocessing (its first sample)."""
    from netspec.data.preprocess import apply_values

    from .export.model import metadata
    from .predict.inputs import Failed, read_inputs
    from .predict.model import info_of

    # The model as its export would record it: the same metadata predict reads.
    graph = run.graph
    info = info_of(
        run.directory,
        "input",
        "tensor(float)",
        (None, *graph.input_shape),
        graph.output.name,
        (None, *graph.output.shape),
        metadata(graph, run.meta),
    )
    sample = next(iter(read_inputs([path], info, note=lambda _: None)))
    if isinstance(sample, Failed):
        raise sample.error
    return sample.x, apply_values(sample.x[None], info.pre, info.input_shape)[0]


# --- pictures -----------------------------------------------------------------------------------


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=100)


def grid_shape(n: int, cols: int = GRID_COLS) -> tuple[int, int]:
    """(rows, columns) of a grid of n tiles."""
    c = min(n, cols)
    return math.ceil(n / c), c


def plot_filters(f: Filters, path: Path, title: str) -> tuple[int, int]:
    """One tile per filter, numbered; returns the (rows, columns) of the grid."""
    rows, cols = grid_shape(len(f.tiles))
    height = 1.0 * rows + 0.8  # inches: a tile per filter, then the two-line title
    plt, fig = _figure(1.0 * cols + 0.2, height)
    fig.suptitle(f"{title}\n{f.layer}: {len(f.tiles)} filters, {f.note}", fontsize=9)
    fig.subplots_adjust(top=1 - 0.72 / height, bottom=0.02, left=0.02, right=0.98, hspace=0.3)
    for i, tile in enumerate(f.tiles):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(tile, cmap=None if f.colour else "gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(str(i), fontsize=7, pad=2)
        ax.axis("off")
    save_figure(fig, path)
    plt.close(fig)
    return rows, cols


def plot_activations(maps: dict[str, np.ndarray], path: Path, title: str) -> list[tuple[int, int]]:
    """A titled grid of channels per layer (up to MAX_MAPS each); returns each grid's (rows, columns)."""
    grids = [grid_shape(min(len(m), MAX_MAPS)) for m in maps.values()]
    heights = [1.1 * r + 0.4 for r, _ in grids]  # inches: the tiles, then the layer's title
    plt, fig = _figure(1.1 * GRID_COLS, sum(heights) + 0.5)
    head, *subs = fig.subfigures(len(maps) + 1, 1, height_ratios=[0.5, *heights])
    head.suptitle(title, fontsize=11, y=0.7)
    for sub, h, (name, m), (rows, _) in zip(subs, heights, maps.items(), grids, strict=True):
        shown = min(len(m), MAX_MAPS)
        more = f", first {shown} shown" if shown < len(m) else ""
        sub.suptitle(f"{name}: {len(m)} channels of {m.shape[1]}×{m.shape[2]}{more}", fontsize=9)
        sub.subplots_adjust(top=1 - 0.4 / h, bottom=0.02, left=0.02, right=0.98, hspace=0.25)
        for i in range(shown):
            ax = sub.add_subplot(rows, GRID_COLS, i + 1)
            ax.imshow(m[i], cmap="viridis", interpolation="nearest")
            ax.set_title(str(i), fontsize=6, pad=1)
            ax.axis("off")
    save_figure(fig, path)
    plt.close(fig)
    return grids


def display_image(raw: np.ndarray) -> tuple[np.ndarray, str | None]:
    """A raw sample (C, H, W) as something imshow draws: RGB in [0, 1], or one grey plane."""
    x = raw.astype(np.float32)
    x = (x - x.min()) / (x.max() - x.min() or 1.0)
    if x.shape[0] == 3:
        return x.transpose(1, 2, 0), None
    return x.mean(0), "gray"


def plot_saliency(raw: np.ndarray, s: Saliency, path: Path, title: str) -> None:
    """The input, |gradient| and Grad-CAM, each over the input; the predicted class in the title."""
    image, cmap = display_image(raw)
    grad = np.abs(s.gradient).max(0)
    grad = grad / (grad.max() or 1.0)
    plt, fig = _figure(9.6, 3.6)
    fig.suptitle(title, fontsize=10)
    panels = [
        ("input", None),
        ("gradient |d logit / d x|", grad),
        (f"Grad-CAM on {s.layer}", s.gradcam),
    ]
    for i, (name, overlay) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.imshow(image, cmap=cmap, interpolation="nearest")
        if overlay is not None:
            ax.imshow(overlay, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    save_figure(fig, path)
    plt.close(fig)


# --- the command ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """A view drawn: the PNG written and a line saying what it shows."""

    path: Path
    detail: str


def visualize(
    run_dir: Path,
    *,
    filters: str | None = None,
    activations: Path | None = None,
    layers: Sequence[str] | None = None,
    saliency: Path | None = None,
    out: Path | None = None,
) -> View:
    """One view of a trained run drawn to a PNG (`out`, default: in the run, named after the
    view): a convolution's `filters`, the feature maps an input makes (`activations`, of
    `layers`, default the first 8 2-D convolutions) or an input's `saliency` (Grad-CAM)."""
    from netspec.runs import read_run

    run = read_run(run_dir)
    if filters is not None:
        return _filters_view(run, filters, out)
    if activations is not None:
        return _activations_view(run, activations, layers, out)
    if saliency is not None:
        return _saliency_view(run, saliency, out)
    raise ValueError("visualize: no view given")


def _filters_view(run: LoadedRun, layer: str, out: Path | None) -> View:
    f = filters(run.graph, run.weights, layer)
    path = out or run.directory / f"filters-{layer.replace('/', '_')}.png"
    rows, cols = plot_filters(f, path, f"{run.graph.name}: filters")
    return View(path, f"{len(f.tiles)} filters, {rows}x{cols} grid")


def _activations_view(
    run: LoadedRun, source: Path, layers: Sequence[str] | None, out: Path | None
) -> View:
    _, x = read_input(run, source)
    maps = activations(load(run), x, list(layers or feature_convs(run.graph)[:8]))
    path = out or run.directory / f"activations-{source.stem}.png"
    plot_activations(maps, path, f"{run.graph.name}: feature maps of {source.name}")
    return View(path, ", ".join(f"{k} ({len(v)} maps)" for k, v in maps.items()))


def _saliency_view(run: LoadedRun, source: Path, out: Path | None) -> View:
    raw, x = read_input(run, source)
    meta = run.meta
    s = saliency(load(run), x, meta.task if meta else None)
    classes = (meta.classes if meta else None) or ()
    label = classes[s.label] if s.label < len(classes) else str(s.label)
    path = out or run.directory / f"saliency-{source.stem}.png"
    title = f"{run.graph.name}: {source.name} predicted '{label}' ({s.score:.2f})"
    plot_saliency(raw, s, path, title)
    return View(path, f"predicted '{label}' ({s.score:.2f}), Grad-CAM on {s.layer}")
