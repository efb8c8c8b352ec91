"""The model as predict sees it: ModelInfo from the graph and netspec metadata, and OnnxModel (a session with them)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from netspec.data.arraydata import TableColumns
from netspec.data.preprocess import Preprocessing, apply_values, as_record
from netspec.data.token_ids import check_predict_ids
from netspec.data.tokenizer import Tokenizer
from netspec.errors import first_line
from netspec.run_record import check_classes

from ..export.card import IN_GRAPH, Card, session_props
from .errors import error, model_error, shape, size
from .session import open_session

if TYPE_CHECKING:  # imported where a segmenter is made: classifiers never load the tiling code
    from netspec.data.scenes import SceneSegmenter


@dataclass(frozen=True)
class ModelInfo:
    """What predict needs to know about a model, from its graph and its card (export/card.py)."""

    path: Path
    input_name: str
    input_type: str  # onnxruntime's "tensor(float)", "tensor(float16)", ...
    batch: int | None  # a fixed batch size, or None (dynamic)
    input_shape: tuple[int | None, ...]  # per sample; None: a dynamic dimension
    output_name: str
    output_shape: tuple[int | None, ...]
    raw_shape: tuple[int | None, ...]  # a raw sample, before the value steps and the reshape
    task: str | None = None  # multiclass | binary | regression | segmentation
    head: str | None = None  # softmax | sigmoid | None
    classes: tuple[str, ...] | None = None
    # The preprocessing record (None if absent); its JSON form is taken too.
    pre: Preprocessing | None = None
    # A table's feature names and CSV columns: predict reads rows in the training CSV's format.
    features: tuple[str, ...] | None = None
    table: TableColumns | None = None
    # The longest sequence the dynamic time axis takes (a position_embedding's table), if limited.
    max_length: int | None = None
    min_length: int | None = None  # the shortest (its windows must fit), if above 1
    # The card's token_ids ({layer, input_dim}) when an embedding reads the input, else None.
    token_ids: dict[str, Any] | None = None
    # "NHWC": an imported Keras model's arrays are channels-last; the network's are channels-first.
    input_layout: str | None = None
    tokenizer: Tokenizer | None = None  # a text model's: inputs are raw strings
    # An `export --preprocess` model: it takes decoded uint8 images (N, H, W, C) of any size and
    # preprocesses them itself; `pre` is then the record of what its graph does.
    in_graph: bool = False

    def __post_init__(self) -> None:
        if self.pre is not None and not isinstance(self.pre, Preprocessing):
            object.__setattr__(self, "pre", as_record(self.pre))
        if self.table is not None and not isinstance(self.table, TableColumns):
            object.__setattr__(self, "table", TableColumns.from_dict(self.table, str(self.path)))

    @property
    def size(self) -> int | None:
        """Numbers in one raw sample (None when a dimension is dynamic)."""
        return None if None in self.raw_shape else math.prod(self.raw_shape)  # type: ignore[arg-type]

    @property
    def channel_order(self) -> str | None:
        """RGB or L when the model takes images."""
        order = self.pre.channel_order if self.pre is not None else None
        if order in ("RGB", "L"):
            return order
        if self.pre is not None and self.pre.grayscale:
            return "L"
        if self.pre is None and len(self.raw_shape) == 3:
            return {1: "L", 3: "RGB"}.get(self.raw_shape[0])  # type: ignore[arg-type]
        return None


def _dims(arg: Any) -> list[int | None]:
    return [d if isinstance(d, int) and d > 0 else None for d in (arg.shape or [])]


def model_info(session: Any, path: Path) -> ModelInfo:
    """ModelInfo of an onnxruntime session; the model must have one float input, or be an
    `export --preprocess` model (one uint8 image input)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise model_error(
            f"the model has {len(inputs)} inputs ({names}); predict feeds models with one input",
            path,
        )
    inp, out = inputs[0], outputs[0]
    meta = session_props(session, str(path))
    if inp.type == "tensor(uint8)" and meta.get(IN_GRAPH) == "true":
        info = info_of(path, inp.name, inp.type, _dims(inp), out.name, _dims(out), meta)
        if info.pre is None or len(info.pre.raw_shape) != 3 or len(info.input_shape) != 3:
            raise model_error(
                f"metadata {IN_GRAPH} is true but the model's card records no image "
                f"preprocessing (input '{inp.name}' {shape(info.input_shape)})",
                path,
            )
        return replace(info, in_graph=True)
    if inp.type not in ("tensor(float)", "tensor(float16)", "tensor(double)"):
        raise model_error(f"input '{inp.name}' is a {inp.type}; predict feeds float tensors", path)
    dims = _dims(inp)
    if not dims:
        raise model_error(f"input '{inp.name}' has no batch axis (shape {inp.shape})", path)
    return info_of(path, inp.name, inp.type, dims, out.name, _dims(out), meta)


def info_of(
    path: Path,
    input_name: str,
    input_type: str,
    dims: Sequence[int | None],
    output_name: str,
    output_dims: Sequence[int | None],
    meta: Mapping[str, str],
) -> ModelInfo:
    """ModelInfo of a model's input and output (dims with the batch axis first; None where
    dynamic) and its `metadata_props` (`meta`, as export_onnx writes them: its Card)."""
    card = Card.from_props(meta, str(path))
    pre = card.preprocessing
    input_shape = tuple(dims[1:])
    raw = pre.raw_shape if pre is not None else None
    raw_shape = tuple(None if d is None else int(d) for d in raw) if raw else input_shape
    fixed = None not in input_shape and None not in raw_shape
    if raw and fixed and math.prod(raw_shape) != math.prod(input_shape):  # type: ignore[arg-type]
        raise model_error(
            f"metadata netspec.preprocessing: raw shape {shape(raw_shape)} does not fit the "
            f"input {shape(input_shape)}",
            path,
        )
    classes = card.classes
    # The card must fit the graph: a class the network cannot produce is never reported.
    check_classes(classes, tuple(output_dims[1:]), str(path), whose="the model's metadata")
    return ModelInfo(
        path=path,
        input_name=input_name,
        input_type=input_type,
        batch=dims[0],
        input_shape=input_shape,
        output_name=output_name,
        output_shape=tuple(output_dims[1:]),
        raw_shape=raw_shape,
        task=card.task,
        head=card.head,
        classes=classes or None,
        pre=pre,
        features=card.features,
        table=card.table,
        max_length=card.max_length,
        min_length=card.min_length,
        token_ids=card.token_ids,
        input_layout=card.meta.input_layout,
        tokenizer=card.tokenizer,
    )


def kind_of(info: ModelInfo) -> str:
    """How outputs are read: multiclass, binary, regression or segmentation."""
    shape = info.output_shape
    if len(shape) == 3:
        return "segmentation"
    if len(shape) != 1:
        return "regression"
    k = shape[0]
    task = info.task
    if task is None:  # no netspec metadata: go by the head
        task = (
            "binary"
            if info.head == "sigmoid" and k == 1
            else "multiclass"
            if info.head == "softmax" or info.classes
            else "regression"
        )
    if task == "binary" and k != 1:
        task = "multiclass"
    if task == "multiclass" and k == 1:
        task = "regression"
    return task


def is_scene_model(info: ModelInfo) -> bool:
    """A segmentation model over images (C, H, W): its inputs are scenes of any size, tiled."""
    shape, raw = info.input_shape, info.raw_shape
    return (
        not info.in_graph
        and kind_of(info) == "segmentation"
        and len(shape) == 3
        and len(raw) == 3
        and all(a is None or b is None or a == b for a, b in zip(shape, raw))
    )


def scene_bands(info: ModelInfo) -> int | None:
    """Bands (channels) a scene must have for this model (None: any)."""
    return info.input_shape[0] if info.input_shape[0] is not None else info.raw_shape[0]


class OnnxModel:
    """An onnxruntime session with the model's metadata: raw samples in, outputs out."""

    def __init__(self, model: str | Path, device: str = "auto") -> None:
        self.session = open_session(model, device)
        self.info = model_info(self.session, Path(model))
        self.dtype = {
            "tensor(float16)": np.float16,
            "tensor(double)": np.float64,
            "tensor(uint8)": np.uint8,
        }.get(self.info.input_type, np.float32)

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """Model inputs of a batch of raw samples: the recorded value steps, then the reshape
        (an in-graph-preprocessing model takes its uint8 images as they are)."""
        if self.info.in_graph:
            return raw
        return apply_values(raw, self.info.pre, self.info.input_shape)

    def run(self, raw: np.ndarray) -> np.ndarray:
        """The model's output (float32) for a batch of raw samples (N, *raw_shape)."""
        return self.run_prepared(self.prepare(raw))

    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        """The model's output (float32) for a batch of model inputs (preprocessed already)."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        check_predict_ids(x, self.info.token_ids, str(self.info.path))
        fixed, n = self.info.batch, len(x)
        if fixed is not None and n != fixed:  # a fixed-batch export: pad and run in its size
            outs = []
            for i in range(0, n, fixed):
                part = x[i : i + fixed]
                pad = np.zeros((fixed - len(part), *x.shape[1:]), dtype=x.dtype)
                outs.append(self._run(np.concatenate([part, pad]))[: len(part)])
            return np.concatenate(outs)
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run([self.info.output_name], {self.info.input_name: x})[0]
        except Exception as exc:  # onnxruntime's errors: shape or type mismatches inside the model
            raise model_error(
                f"the model fails on an input of shape {shape(x.shape)}: {first_line(exc)}",
                self.info.path,
            ) from None
        return np.asarray(out, dtype=np.float32)

    def segmenter(
        self, overlap: int | None = None, tta: bool = False, batch: int = 16
    ) -> SceneSegmenter:
        """A SceneSegmenter running this model on its tiles (for segmentation models)."""
        info = self.info
        if not is_scene_model(info):
            raise model_error(
                f"the model is not a segmentation model over images (input "
                f"{shape(info.input_shape)}, output {shape(info.output_shape)})",
                info.path,
            )
        h, w = info.input_shape[1:]
        check_overlap(overlap, (h, w))
        from netspec.data.scenes import SceneSegmenter

        return SceneSegmenter(
            self.run_prepared,
            (h, w),
            overlap=overlap,
            tta=tta,
            batch_size=batch,
            prepare=self.prepare,
            head=info.head,
        )


def check_overlap(overlap: int | None, tile: tuple[int | None, int | None]) -> None:
    """A clear error for an --overlap that tiles of `tile` (height, width) cannot have."""
    if overlap is None:
        return
    if overlap < 0:
        raise error(f"--overlap {overlap}: expected 0 or more pixels")
    h, w = tile
    side = min(d for d in (h, w, overlap + 1) if d is not None)
    if overlap >= side:
        raise error(
            f"--overlap {overlap}: tiles must overlap by less than their side; the model's "
            f"tiles are {size(w)}x{size(h)} (width x height)",
            hint=f"use --overlap {side // 4} (the default) or anything below {side}",
        )
