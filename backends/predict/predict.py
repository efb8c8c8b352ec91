"""The `netspec predict` entry point: inputs in, one result per sample out, in batches or tiles."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from netspec.fileio import check_own_folder

from .ensemble import Ensemble
from .errors import error, shape
from .inputs import Failed, Note, Sample, expand_inputs, read_inputs, read_scenes
from .model import OnnxModel, check_overlap, is_scene_model, kind_of
from .outputs import Interpreter, is_mask_name
from .texts import Text

if TYPE_CHECKING:  # tiling code is imported where a segmentation model needs it
    from netspec.data.scenes import SceneSegmenter


@dataclass(frozen=True)
class PredictOptions:
    """How to predict: the `netspec predict` options, as the CLI and `Predictor.predict` pass them."""

    top_k: int = 5  # classes per result
    batch: int = 64  # samples per onnxruntime call
    out: str | Path | None = None  # the folder for segmentation masks
    overlap: int | None = None  # tiles' overlap in pixels; None: a quarter of the tile side
    tta: bool = False  # average each tile over its symmetries
    keep_going: bool = True  # an input that fails gives its error in its place


def predict(
    model: str | Path | OnnxModel,
    inputs: Sequence[str | Path | np.ndarray | Text],
    options: PredictOptions | None = None,
    *,
    device: str = "auto",
    note: Note = lambda _: None,
    ensemble: Sequence[str | Path] = (),
) -> Iterator[dict[str, Any]]:
    """Results for every sample of `inputs`, in order, computed in batches of `options.batch`.

    `model` is an .onnx file or an OnnxModel opened already (the Python API keeps one open).
    `inputs` are files, folders (their input files), glob patterns (expand_inputs) or arrays of
    raw values (one sample or a batch, named `inputs[k]`, from the Python API). An input
    that cannot be read gives {input, error: NetspecError.to_dict()} in its place and the others
    go on (with `options.keep_going` False its error is raised instead); a problem with the model or an
    option raises. `note` hears what the user should know
    (an image resized to the model's input).

    Each result is {input, predictions: [{label, score}]} (classification),
    {input, values} (regression) or {input, mask, size, pixels, tiles, tta} (segmentation).
    Segmentation models take scenes of any size, predicted tile by tile (tiles overlapping by
    `options.overlap` pixels) and with `options.tta` averaged over the
    symmetries of each tile; their masks have the scene's size. With `ensemble` (further
    models) the outputs are the mean of every model's probabilities (values for regression).
    """
    o = options or PredictOptions()
    if o.batch < 1:
        raise error(f"--batch {o.batch}: expected a positive number")
    check_overlap(o.overlap, (None, None))
    paths = expand_inputs([p if isinstance(p, (np.ndarray, Text)) else Path(p) for p in inputs])
    predictor: OnnxModel | Ensemble
    if ensemble:
        predictor = Ensemble([model, *ensemble], device)
    else:
        predictor = model if isinstance(model, OnnxModel) else OnnxModel(model, device)
    info = predictor.info
    if info.tokenizer is None and any(isinstance(p, Text) for p in paths):
        raise error(
            "--text: the model takes no texts (its metadata records no tokenizer: it was not "
            "trained on a text source)",
            info.path,
            kind="usage",
        )
    interpret = Interpreter(info, o.top_k, None if o.out is None else Path(o.out))
    if o.out is not None and kind_of(info) == "segmentation":
        # A folder named for the masks holds masks only: never a user's files beside them.
        check_own_folder(o.out, is_mask_name, "netspec predict")

    def failed(sample: Failed) -> dict[str, Any]:
        if not o.keep_going:
            raise sample.error
        return {"input": sample.name, "error": sample.error.to_dict()}

    if info.in_graph:
        _check_in_graph(info, o)
        from .pixels import read_pixels

        samples = read_pixels(paths, info, note)
        yield from _batches(predictor, samples, o.batch, interpret, failed)
        return
    if isinstance(predictor, OnnxModel) and is_scene_model(info):
        segmenter = predictor.segmenter(o.overlap, o.tta, o.batch)
        yield from _scenes(segmenter, read_scenes(paths, info), interpret, failed)
        return
    for flag, given in (("--overlap", o.overlap is not None), ("--tta", o.tta)):
        if given:
            raise error(
                f"{flag}: only segmentation models (output (K, H, W) over image inputs) are "
                f"predicted tile by tile; this model's output is {shape(info.output_shape)}",
                info.path,
                kind="usage",
            )
    yield from _batches(predictor, read_inputs(paths, info, note), o.batch, interpret, failed)


Failure = Callable[[Failed], dict[str, Any]]


def _check_in_graph(info: Any, o: PredictOptions) -> None:
    """What predict does not do for an `export --preprocess` model: tiles (its graph resizes a
    scene to one tile), nor test-time augmentation; a usage error naming the option."""
    plain = "predict with the export without --preprocess"
    if kind_of(info) == "segmentation":
        raise error(
            "the model resizes each image to its input inside the graph (export --preprocess): "
            "netspec predict segments scenes tile by tile, at their own size, only with float "
            "tiles",
            info.path,
            hint=plain,
            kind="usage",
        )
    for flag, given in (("--overlap", o.overlap is not None), ("--tta", o.tta)):
        if given:
            raise error(
                f"{flag}: only segmentation models are predicted tile by tile; this model "
                "takes whole images (export --preprocess)",
                info.path,
                kind="usage",
            )


def _scenes(
    segmenter: SceneSegmenter,
    samples: Iterable[Sample | Failed],
    interpret: Interpreter,
    failed: Failure,
) -> Iterator[dict[str, Any]]:
    """Each scene segmented tile by tile, in order; a scene that fails gives its failure."""
    from netspec.data.scenes import SceneError  # segmentation only: tiling code

    for sample in samples:
        if isinstance(sample, Failed):
            yield failed(sample)
            continue
        try:
            seg = segmenter.segment(sample.x)
        except SceneError as exc:
            yield failed(Failed(sample.name, error(str(exc), sample.name)))
            continue
        bad = interpret.failed(sample, seg.probs)
        yield failed(bad) if bad else interpret.scene(sample, seg)


def wrong_length(sample: Sample, info: Any) -> Failed | None:
    """A sequence longer than a dynamic time axis takes (a position_embedding's table), or
    shorter than its windows need, fails here with a message, not in onnxruntime."""
    raw = info.raw_shape
    if raw.count(None) != 1 or sample.x.ndim != len(raw):
        return None
    steps = sample.x.shape[raw.index(None)]
    if info.max_length is not None and steps > info.max_length:
        why = f"at most {info.max_length} (its position_embedding's max_length)"
        hint = f"cut the sequence to its first {info.max_length} steps"
    elif info.min_length is not None and steps < info.min_length:
        why = f"at least {info.min_length} (its convolution and pooling windows must fit)"
        hint = f"pad the sequence to {info.min_length} steps, as the training data was padded"
    else:
        return None
    message = f"sequence of {steps} steps; the model takes {why}"
    return Failed(sample.name, error(message, sample.name, hint=hint))


def _batches(
    predictor: OnnxModel | Ensemble,
    samples: Iterable[Sample | Failed],
    batch: int,
    interpret: Interpreter,
    failed: Failure,
) -> Iterator[dict[str, Any]]:
    """The samples run `batch` at a time, results in order; a failure goes in its place."""
    pending: list[Sample] = []

    def flush() -> Iterator[dict[str, Any]]:
        # Samples of different sizes (a dynamic input, images of an in-graph-preprocessing
        # model) run in one call per size; the results keep the inputs' order.
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, sample in enumerate(pending):
            groups.setdefault(sample.x.shape, []).append(i)
        outputs: dict[int, np.ndarray] = {}
        for group in groups.values():
            ys = predictor.run(np.stack([pending[i].x for i in group]))
            outputs.update(zip(group, ys))
        for i, sample in enumerate(pending):
            bad = interpret.failed(sample, outputs[i])
            yield failed(bad) if bad else interpret(sample, outputs[i])

    for sample in samples:
        if isinstance(sample, Sample):
            sample = wrong_length(sample, predictor.info) or sample
        if isinstance(sample, Failed):  # in its place: the results before it go first
            yield from flush()
            pending = []
            yield failed(sample)
            continue
        pending.append(sample)
        if len(pending) == batch:
            yield from flush()
            pending = []
    if pending:
        yield from flush()
