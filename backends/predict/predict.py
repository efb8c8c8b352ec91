"""The `netspec predict` entry point: inputs in, one result per sample out, in batches or tiles."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .ensemble import Ensemble
from .errors import error, shape
from .inputs import Failed, Note, Sample, expand_inputs, read_inputs, read_scenes
from .model import Predictor, check_overlap, is_scene_model
from .outputs import Interpreter


def predict(
    model: str | Path | Predictor,
    inputs: Sequence[str | Path | np.ndarray],
    *,
    top_k: int = 5,
    provider: str = "auto",
    batch_size: int = 64,
    out_dir: str | Path | None = None,
    overlap: int | None = None,
    tta: bool = False,
    note: Note = lambda _: None,
    keep_going: bool = True,
    ensemble: Sequence[str | Path] = (),
) -> Iterator[dict[str, Any]]:
    """Results for every sample of `inputs`, in order, computed in batches of `batch_size`.

    `model` is an .onnx file or a Predictor opened already (the Python API keeps one open).
    `inputs` are files, folders (their input files), glob patterns (expand_inputs) or arrays of
    raw values (one sample or a batch, named `inputs[k]`, from the Python API). An input
    that cannot be read gives {input, error: NetspecError.to_dict()} in its place and the others
    go on (with `keep_going=False` its error is raised instead); a problem with the model or an
    option raises. `note` hears what the user should know
    (an image resized to the model's input).

    Each result is {input, predictions: [{label, score}]} (classification),
    {input, values} (regression) or {input, mask, size, pixels, tiles, tta} (segmentation).
    Segmentation models take scenes of any size, predicted tile by tile (tiles overlapping by
    `overlap` pixels, default a quarter of the tile side) and with `tta` averaged over the
    symmetries of each tile; their masks have the scene's size. With `ensemble` (further
    models) the outputs are the mean of every model's probabilities (values for regression).
    """
    if batch_size < 1:
        raise error(f"--batch {batch_size}: expected a positive number")
    check_overlap(overlap, (None, None))
    paths = expand_inputs([p if isinstance(p, np.ndarray) else Path(p) for p in inputs])
    predictor: Predictor | Ensemble
    if ensemble:
        predictor = Ensemble([model, *ensemble], provider)
    else:
        predictor = model if isinstance(model, Predictor) else Predictor(model, provider)
    info = predictor.info
    interpret = Interpreter(info, top_k, None if out_dir is None else Path(out_dir))

    def failed(sample: Failed) -> dict[str, Any]:
        if not keep_going:
            raise sample.error
        return {"input": sample.name, "error": sample.error.to_dict()}

    if isinstance(predictor, Predictor) and is_scene_model(info):
        from netspec.data.scenes import SceneError  # segmentation only: tiling code

        segmenter = predictor.segmenter(overlap, tta, batch_size)
        for sample in read_scenes(paths, info):
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
        return
    for flag, given in (("--overlap", overlap is not None), ("--tta", tta)):
        if given:
            raise error(
                f"{flag}: only segmentation models (output (K, H, W) over image inputs) are "
                f"predicted tile by tile; this model's output is {shape(info.output_shape)}",
                info.path,
                kind="usage",
            )
    batch: list[Sample] = []

    def flush() -> Iterator[dict[str, Any]]:
        shapes = {s.x.shape for s in batch}
        groups = [batch] if len(shapes) == 1 else [[s] for s in batch]  # dynamic sizes: one by one
        for group in groups:
            out = predictor.run(np.stack([s.x for s in group]))
            for sample, y in zip(group, out):
                bad = interpret.failed(sample, y)
                yield failed(bad) if bad else interpret(sample, y)

    for sample in read_inputs(paths, predictor.info, note):
        if isinstance(sample, Failed):  # in its place: the results before it go first
            yield from flush()
            batch = []
            yield failed(sample)
            continue
        batch.append(sample)
        if len(batch) == batch_size:
            yield from flush()
            batch = []
    if batch:
        yield from flush()
