"""Train-check stage: the `train:` section against the network (loss, augmentation, metrics, layer patterns), before any data is read."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence

from netspec.errors import Problem, SpecError
from netspec.ir import Graph
from netspec.source import Source, SpecPath

SEGMENTATION_METRICS = ("iou", "dice", "pixel_accuracy")
AUGMENTATIONS = ("flip", "dihedral", "rotate", "shift", "zoom")


def check_train(graph: Graph, source: Source) -> Graph:
    """Refuse a `train:` section that cannot fit this network; every problem, located."""
    spec = graph.train
    if spec is None:
        return graph
    problems: list[Problem] = []
    if spec.loss is not None:
        at = _loss_path(source)
        problems += [source.problem(at, m, h) for m, h in loss_problems(spec.loss.terms, graph)]
    on = [k for k in AUGMENTATIONS if getattr(spec.augment, k)]
    if on and len(graph.input_shape) != 3:
        problems.append(
            source.problem(
                ("train", "augment", on[0]),
                "augmentation needs image input [C, H, W]",
                f"the spec's input is {list(graph.input_shape)}",
                key=True,
            )
        )
    problems += _rgb_band_problems(graph, source)
    for i, name in enumerate(spec.metrics or ()):
        message = metric_problem(name, graph.output.shape)
        if message:
            problems.append(source.problem(("train", "metrics", i), message))
    weighted = [n.name for n in graph.nodes if n.weights]
    if spec.init is not None:
        problems += _unmatched(source, ("train", "init", "layers"), spec.init.layers, weighted)
    for r, rule in enumerate(spec.regularize):
        # Regularizers penalize `weight` tensors only (like Keras' kernel_regularizer).
        kernels = [n.name for n in graph.nodes if "weight" in n.weights]
        problems += _unmatched(source, ("train", "regularize", r, "layers"), rule.layers, kernels)
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.col or 0))
        raise SpecError(problems, stage="train")
    return graph


def _rgb_band_problems(graph: Graph, source: Source) -> list[Problem]:
    """`data.rgb_bands` must name bands of an image input [C, H, W]."""
    assert graph.train is not None
    bands = graph.train.data.rgb_bands
    if bands is None:
        return []
    at = ("train", "data", "rgb_bands")
    shape = list(graph.input_shape)
    if len(shape) != 3:
        return [
            source.problem(
                at,
                "rgb_bands needs image input [C, H, W]",
                f"the spec's input is {shape}",
                key=True,
            )
        ]
    return [
        source.problem(
            (*at, i),
            f"rgb_bands: band {b} does not exist; the input has {shape[0]} bands, numbered 1 "
            f"to {shape[0]}",
            f"give 3 band numbers from 1 to {shape[0]}",
        )
        for i, b in enumerate(bands)
        if b > shape[0]
    ]


def loss_problems(terms: Sequence[str], graph: Graph) -> list[tuple[str, str | None]]:
    """(message, hint) for each loss term that cannot train this network's output and head.

    Shared with the trainer, which checks the default loss it picks from the data.
    """
    shape = tuple(graph.output.shape)
    head = graph.head.fn if graph.head is not None else None
    per_pixel = is_map(shape)
    single = shape[0] == 1 if per_pixel else math.prod(shape) == 1
    out: list[tuple[str, str | None]] = []
    if "binary_cross_entropy" in terms and (head == "softmax" or not single):
        # The loss sees the logits before the head; a softmax head would then be trained as if
        # it were a sigmoid (and a softmax over one unit always outputs 1).
        unit = "map" if per_pixel else "unit"
        out.append(
            (
                f"binary_cross_entropy needs a single sigmoid output {unit}, but the network "
                f"ends in {head or 'no activation'} with output {shape}",
                "end the network with a single sigmoid output, or use a softmax over 2 "
                "classes with loss: cross_entropy",
            )
        )
    if "cross_entropy" in terms and single:
        out.append(
            (
                f"cross_entropy needs one output per class, the network's output is {shape}",
                "use binary_cross_entropy with a single sigmoid output",
            )
        )
    elif "cross_entropy" in terms and head == "sigmoid":
        out.append(
            (
                "cross_entropy needs a softmax output, this network ends in sigmoid",
                "end the network in softmax, or use binary_cross_entropy with one sigmoid unit",
            )
        )
    return out


def metric_problem(name: str, shape: Sequence[int]) -> str | None:
    """Why metric `name` cannot score an output of this shape, as far as it is known without data."""
    if name in SEGMENTATION_METRICS and not is_map(shape):
        return (
            f"{name} needs a per-pixel output map [C, H, W], the network's output is {tuple(shape)}"
        )
    if name == "top5_accuracy" and not is_map(shape) and math.prod(shape) < 5:
        return (
            f"top5_accuracy needs at least 5 classes, the network has {math.prod(shape)} "
            f"output{'s' if math.prod(shape) > 1 else ''}"
        )
    return None


def is_map(shape: Sequence[int]) -> bool:
    """A per-pixel output (C, H, W): segmentation."""
    return len(shape) == 3


def _loss_path(source: Source) -> SpecPath:
    train = source.data.get("train") if isinstance(source.data, dict) else None
    loss = train.get("loss") if isinstance(train, dict) else None
    return ("train", "loss", "name") if isinstance(loss, dict) else ("train", "loss")


def _unmatched(
    source: Source, at: SpecPath, patterns: Sequence[str], names: Sequence[str]
) -> list[Problem]:
    problems = []
    for i, pat in enumerate(patterns):
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            problems.append(
                source.problem(
                    (*at, i),
                    f"'{pat}' matches no layer with weights in this network",
                    f"layer names are those of `netspec summary`: {shown or 'none have weights'}",
                )
            )
    return problems
