"""`netspec predict`: run an exported .onnx file with onnxruntime alone (no torch, no spec).

Everything needed comes from the model file: the input and output of the graph, and the
`netspec.*` metadata written by backends/onnx_export.py (task, class labels, output head and the
preprocessing recorded at training time). The steps are those of netspec/data/pipeline.py:

- images are decoded with Pillow and converted to the model's channel order (RGB or L);
  `grayscale` weighs R, G, B by 0.299, 0.587, 0.114; `resize` is Pillow's bilinear filter on each
  channel as a float image (mode F), rounded back to 0..255; then the center crop;
- every input (image, .npy array, CSV row) then goes through x * scale, (x - mean) / std per
  channel or per-sample standardization, and the reshape to the network's input shape.

A model without netspec metadata still runs: its input shape is used as is, with no value steps.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netspec.data.pipeline import apply_values
from netspec.errors import NetspecError, Problem

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
PROVIDERS = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_HINT = (
    "install the gpu extra: pip install 'netspec[gpu]' && pip uninstall -y onnxruntime "
    "(onnxruntime-gpu provides the same `onnxruntime` module)"
)
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # as in netspec/data/pipeline.py


class PredictError(NetspecError):
    """The model or an input cannot be used for prediction."""


def _error(message: str, file: str | Path | None = None, hint: str | None = None) -> PredictError:
    return PredictError([Problem(message, None if file is None else str(file), hint=hint)])


def _pillow(path: Path, what: str) -> Any:
    """PIL.Image, or a clear error: Pillow comes with the `train` extra, not the base install."""
    try:
        from PIL import Image
    except ImportError:
        raise _error(
            f"{what} needs Pillow, which is not installed", path, hint="pip install pillow"
        ) from None
    return Image


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _shape(dims: Sequence[int | None]) -> str:
    """(1, 8, 8), with ? for a dynamic dimension."""
    body = ", ".join("?" if d is None else str(d) for d in dims)
    return f"({body},)" if len(dims) == 1 else f"({body})"


def _fits(shape: Sequence[int], dims: Sequence[int | None]) -> bool:
    return len(shape) == len(dims) and all(d is None or s == d for s, d in zip(shape, dims))


# --- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """What predict needs to know about a model, from its graph and its metadata."""

    path: Path
    input_name: str
    input_type: str  # onnxruntime's "tensor(float)", "tensor(float16)", ...
    batch: int | None  # a fixed batch size, or None (dynamic)
    input_shape: tuple[int | None, ...]  # per sample; None: a dynamic dimension
    output_name: str
    output_shape: tuple[int | None, ...]
    raw_shape: tuple[int | None, ...]  # a raw sample, before the value steps and the reshape
    task: str | None = None  # multiclass | binary | regression (netspec.task)
    head: str | None = None  # softmax | sigmoid | None
    classes: tuple[str, ...] | None = None
    pre: dict[str, Any] = field(default_factory=dict)  # netspec.preprocessing ({} if absent)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int | None:
        """Numbers in one raw sample (None when a dimension is dynamic)."""
        return None if None in self.raw_shape else math.prod(self.raw_shape)  # type: ignore[arg-type]

    @property
    def channel_order(self) -> str | None:
        """RGB or L when the model takes images."""
        order = self.pre.get("channel_order")
        if order in ("RGB", "L"):
            return order
        if self.pre.get("grayscale"):
            return "L"
        if not self.pre and len(self.raw_shape) == 3:
            return {1: "L", 3: "RGB"}.get(self.raw_shape[0])  # type: ignore[arg-type]
        return None


def _dims(arg: Any) -> list[int | None]:
    return [d if isinstance(d, int) and d > 0 else None for d in (arg.shape or [])]


def _json_meta(meta: dict[str, str], key: str, path: Path) -> Any:
    try:
        return json.loads(meta[key]) if key in meta else None
    except ValueError:
        raise _error(f"metadata {key} is not valid JSON: {meta[key][:60]!r}", path) from None


def model_info(session: Any, path: Path) -> ModelInfo:
    """ModelInfo of an onnxruntime session; the model must have one float input."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise _error(
            f"the model has {len(inputs)} inputs ({names}); predict feeds models with one input",
            path,
        )
    inp, out = inputs[0], outputs[0]
    if inp.type not in ("tensor(float)", "tensor(float16)", "tensor(double)"):
        raise _error(f"input '{inp.name}' is a {inp.type}; predict feeds float tensors", path)
    dims = _dims(inp)
    if not dims:
        raise _error(f"input '{inp.name}' has no batch axis (shape {inp.shape})", path)
    meta = dict(session.get_modelmeta().custom_metadata_map)
    pre = _json_meta(meta, "netspec.preprocessing", path) or {}
    input_shape = tuple(dims[1:])
    raw = pre.get("raw_shape")
    raw_shape = tuple(int(d) for d in raw) if raw else input_shape
    if raw and None not in input_shape and math.prod(raw_shape) != math.prod(input_shape):  # type: ignore[arg-type]
        raise _error(
            f"metadata netspec.preprocessing: raw shape {_shape(raw_shape)} does not fit the "
            f"input {_shape(input_shape)}",
            path,
        )
    classes = _json_meta(meta, "netspec.classes", path)
    head = meta.get("netspec.head")
    return ModelInfo(
        path=path,
        input_name=inp.name,
        input_type=inp.type,
        batch=dims[0],
        input_shape=input_shape,
        output_name=out.name,
        output_shape=tuple(_dims(out)[1:]),
        raw_shape=raw_shape,
        task=meta.get("netspec.task"),
        head=head if head in ("softmax", "sigmoid") else None,
        classes=tuple(str(c) for c in classes) if classes else None,
        pre=pre,
        metadata=meta,
    )


def _session(ort: Any, path: Path, providers: list[str]) -> Any:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: no warnings on the user's terminal
    # onnxruntime prints (to stdout) when it falls back from a failing provider: keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        session = ort.InferenceSession(str(path), opts, providers=providers)
    session.disable_fallback()
    return session


def open_session(path: str | Path, provider: str = "auto") -> Any:
    """An onnxruntime session on `provider`: auto (CUDA when it works, else CPU), cpu or cuda."""
    path = Path(path)
    if provider not in PROVIDERS:
        raise _error(f"--provider {provider}: expected one of {', '.join(PROVIDERS)}")
    if not path.is_file():
        raise _error("no such model file" if not path.exists() else "not a file", path)
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider == "cuda" and CUDA not in available:
        raise _error(
            f"--provider cuda: this onnxruntime has no {CUDA} (it has {', '.join(available)})",
            hint=GPU_HINT,
        )
    if provider in ("auto", "cuda") and CUDA in available:
        try:
            session = _session(ort, path, [CUDA, CPU])
        except Exception as exc:  # onnxruntime raises its own types; the model is checked below
            session, reason = None, _first_line(exc)
        else:
            reason = "onnxruntime fell back to the CPU (no usable CUDA device?)"
        if session is not None and session.get_providers()[0] == CUDA:
            return session
        if provider == "cuda":
            _session_or_error(ort, path)  # a broken model is reported as such
            raise _error(f"--provider cuda: CUDA is not usable: {reason}", hint=GPU_HINT)
    return _session_or_error(ort, path)


def _session_or_error(ort: Any, path: Path) -> Any:
    try:
        return _session(ort, path, [CPU])
    except Exception as exc:  # InvalidProtobuf, Fail, InvalidGraph, ...: all mean a bad model
        raise _error(
            f"cannot load the model ({_first_line(exc)}); expected an ONNX model file", path
        ) from None


# --- inputs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str  # how the input is shown: `digit.png`, `x.npy[3]`, `table.csv:2`
    stem: str  # for file names derived from it (masks)
    x: np.ndarray  # the raw sample, float32, shape = raw_shape (dynamic dims: its own)


def check_inputs(paths: Sequence[Path]) -> None:
    """Every input exists and is of a supported type (before anything runs)."""
    if not paths:
        raise _error("no inputs: give image files, .npy arrays or .csv files")
    for path in paths:
        kind = input_kind(path)
        if not path.exists():
            raise _error(f"no such {kind} file", path)
        if not path.is_file():
            raise _error(
                f"not a file (expected {'an' if kind == 'image' else 'a'} {kind} file)", path
            )


def input_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in (".npy", ".csv"):
        return suffix[1:]
    kinds = ", ".join(IMAGE_SUFFIXES)
    raise _error(
        f"unsupported input file type '{path.suffix or path.name}'; expected an image "
        f"({kinds}), a .npy array or a .csv file",
        path,
    )


def read_inputs(paths: Iterable[Path], info: ModelInfo) -> Iterator[Sample]:
    """The raw samples of every input file, in order."""
    for path in paths:
        kind = input_kind(path)
        if kind == "image":
            yield Sample(str(path), path.stem, read_image(path, info))
        elif kind == "npy":
            yield from read_npy(path, info)
        else:
            yield from read_csv(path, info)


def read_image(path: Path, info: ModelInfo) -> np.ndarray:
    """An image file as a raw sample (C, H, W): channel order, grayscale, resize, center crop."""
    order = info.channel_order
    if order is None:
        raise _error(
            f"the model takes {_shape(info.raw_shape)} samples, not images; give a .npy or .csv file",
            path,
        )
    Image = _pillow(path, "reading images")
    gray = bool(info.pre.get("grayscale"))
    try:
        with Image.open(path) as im:
            im.load()
            # The training pipeline: RGB then its own luma for `grayscale`, else Pillow's mode.
            im = im.convert("RGB" if gray else order)
            size = info.pre.get("image_size")
            if size:  # decoded from a folder: the loader's own crop and resize, exactly
                from netspec.data.folder import fit_image

                im = fit_image(im, (int(size[0]), int(size[1])), info.pre.get("image_crop"))
            pixels = np.asarray(im)
    except Exception as exc:  # Pillow raises many types on bad files: all mean "cannot decode"
        names = "/".join(s[1:] for s in IMAGE_SUFFIXES)
        raise _error(
            f"cannot decode the image ({type(exc).__name__}: {_first_line(exc)}); "
            f"expected a readable {names} file",
            path,
        ) from None
    x = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # (C, H, W) uint8
    if gray:
        w = np.asarray(GRAY_WEIGHTS, dtype=np.float32)[:, None, None]
        x = np.clip(np.rint((x.astype(np.float32) * w).sum(0, keepdims=True)), 0, 255)
        x = x.astype(np.uint8)
    resize, crop = info.pre.get("resize"), info.pre.get("center_crop")
    if resize:
        h, w = (int(v) for v in resize)
        out = np.empty((x.shape[0], h, w), dtype=np.float32)
        for c in range(x.shape[0]):
            img = Image.fromarray(x[c].astype(np.float32))  # a float image: mode F
            out[c] = np.asarray(img.resize((w, h), Image.BILINEAR))
        x = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if crop:
        h, w = (int(v) for v in crop)
        if h > x.shape[1] or w > x.shape[2]:
            raise _error(
                f"image of {x.shape[2]}x{x.shape[1]} (width x height) is smaller than the "
                f"model's center crop {w}x{h}",
                path,
            )
        top, left = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
        x = x[:, top : top + h, left : left + w]
    if not _fits(x.shape, info.raw_shape):
        want = info.raw_shape
        raise _error(
            f"image of {x.shape[2]}x{x.shape[1]} (width x height) after preprocessing; the model "
            f"takes {_size(want[2])}x{_size(want[1])} images and records no resize step",
            path,
            hint=f"resize the image to {_size(want[2])}x{_size(want[1])} first",
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def _size(d: int | None) -> str:
    return "?" if d is None else str(d)


def read_npy(path: Path, info: ModelInfo) -> Iterator[Sample]:
    """A .npy array: one raw sample, or a batch of them with a leading N (never pickled)."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        why = (
            "it holds Python objects, which are never unpickled"
            if "allow_pickle" in str(exc)
            else _first_line(exc)
        )
        raise _error(f"cannot read the array: {why}; expected a numeric .npy file", path) from None
    except OSError as exc:
        raise _error(
            f"cannot read the array ({_first_line(exc)}); expected a .npy file", path
        ) from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise _error(f"array of dtype {array.dtype}; expected numbers", path)
    raw = info.raw_shape
    if _fits(array.shape, raw):
        yield Sample(str(path), path.stem, array.astype(np.float32))
        return
    if not (array.ndim == len(raw) + 1 and _fits(array.shape[1:], raw)):
        raise _error(
            f"array of shape {_shape(array.shape)}; expected {_shape(raw)} or {_shape(('N', *raw))}",
            path,
        )
    for i, x in enumerate(array.astype(np.float32)):
        yield Sample(f"{path}[{i}]", f"{path.stem}_{i}", x)


def read_csv(path: Path, info: ModelInfo) -> Iterator[Sample]:
    """A CSV file: one sample per row of numbers (a first row of names is a header)."""
    size = info.size
    if size is None:
        raise _error(
            f"the model's input {_shape(info.raw_shape)} is not fixed: use a .npy file", path
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(f"cannot read the CSV file ({_first_line(exc)})", path) from None
    count = 0
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        values = _numbers(cells)
        if values is None:
            if count == 0 and line == _first_row(text):
                _check_header(cells, size, info, path)
                continue
            bad = next(c for c in cells if _number(c) is None)
            raise _error(f"row {line}: {bad!r} is not a number", path)
        if len(values) != size:
            raise _error(
                f"row {line} has {len(values)} values; expected {size} "
                f"(the model's input {_shape(info.raw_shape)})",
                path,
            )
        count += 1
        x = np.asarray(values, dtype=np.float32).reshape(info.raw_shape)  # type: ignore[arg-type]
        yield Sample(f"{path}:{line}", f"{path.stem}_{line}", x)
    if count == 0:
        raise _error(f"no rows of numbers; expected rows of {size} values", path)


def _first_row(text: str) -> int:
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if any(c.strip() for c in row):
            return line
    return 0


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _numbers(cells: list[str]) -> list[float] | None:
    values = [_number(c) for c in cells]
    return None if any(v is None for v in values) else values  # type: ignore[return-value]


def _check_header(cells: list[str], size: int, info: ModelInfo, path: Path) -> None:
    features = _json_meta(info.metadata, "netspec.features", path)
    if features is not None and cells != [str(f) for f in features]:
        raise _error(
            f"header {', '.join(cells[:4])}...: expected the model's features "
            f"{', '.join(map(str, features[:4]))}...",
            path,
        )
    if len(cells) != size:
        raise _error(f"header of {len(cells)} names; expected {size} columns", path)


# --- preprocessing values and running ------------------------------------------------------------


def prepare(x: np.ndarray, info: ModelInfo) -> np.ndarray:
    """The value steps on a batch of raw samples: scale, mean/std or per-sample, reshape."""
    return apply_values(x, info.pre, info.input_shape)


class Predictor:
    """An onnxruntime session with the model's metadata: raw samples in, outputs out."""

    def __init__(self, model: str | Path, provider: str = "auto") -> None:
        self.session = open_session(model, provider)
        self.info = model_info(self.session, Path(model))
        self.dtype = {"tensor(float16)": np.float16, "tensor(double)": np.float64}.get(
            self.info.input_type, np.float32
        )

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def run(self, raw: np.ndarray) -> np.ndarray:
        """The model's output (float32) for a batch of raw samples (N, *raw_shape)."""
        x = prepare(raw, self.info).astype(self.dtype, copy=False)
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
            raise _error(
                f"the model fails on an input of shape {_shape(x.shape)}: {_first_line(exc)}",
                self.info.path,
            ) from None
        return np.asarray(out, dtype=np.float32)


# --- outputs -------------------------------------------------------------------------------------


# The PASCAL VOC colour map: class 0 black, then distinct colours (bits of the class index).
def palette() -> list[int]:
    colours = []
    for k in range(256):
        r = g = b = 0
        c = k
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours += [r, g, b]
    return colours


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


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


class Interpreter:
    """Turns output rows into result dicts (and mask files for segmentation)."""

    def __init__(self, info: ModelInfo, top_k: int = 5, out_dir: Path | None = None) -> None:
        if top_k < 1:
            raise _error(f"--top-k {top_k}: expected a positive number")
        self.info = info
        self.kind = kind_of(info)
        self.top_k = top_k
        self.out_dir = Path(out_dir) if out_dir is not None else Path()
        self.written: set[str] = set()

    def label(self, i: int) -> str:
        classes = self.info.classes
        return classes[i] if classes is not None and i < len(classes) else str(i)

    def __call__(self, sample: Sample, y: np.ndarray) -> dict[str, Any]:
        if self.kind == "multiclass":
            p = y if self.info.head == "softmax" else _softmax(y)
            order = np.argsort(-p, kind="stable")[: self.top_k]
            preds = [{"label": self.label(int(i)), "score": float(p[i])} for i in order]
            return {"input": sample.name, "predictions": preds}
        if self.kind == "binary":
            p = float(y[0] if self.info.head == "sigmoid" else _sigmoid(y[0]))
            pred = (
                {"label": self.label(1), "score": p}
                if p >= 0.5
                else {
                    "label": self.label(0),
                    "score": 1.0 - p,
                }
            )
            return {"input": sample.name, "predictions": [pred]}
        if self.kind == "segmentation":
            return self.mask(sample, y)
        return {"input": sample.name, "values": y.tolist()}

    def mask(self, sample: Sample, y: np.ndarray) -> dict[str, Any]:
        """Argmax over the classes (K, H, W) -> a palette PNG `<stem>_mask.png` in out_dir."""
        Image = _pillow(self.info.path, "writing segmentation masks")
        k = y.shape[0]
        if k == 1:
            cut = 0.5 if self.info.head == "sigmoid" else 0.0
            classes = (y[0] >= cut).astype(np.uint8)
        else:
            classes = y.argmax(axis=0)
        if k > 256:
            raise _error(f"{k} classes: a palette mask holds at most 256", self.info.path)
        name = f"{sample.stem}_mask.png"
        n = 1
        while name in self.written:
            name = f"{sample.stem}_{n}_mask.png"
            n += 1
        self.written.add(name)
        path = self.out_dir / name
        h, w = classes.shape
        img = Image.frombytes("P", (w, h), np.ascontiguousarray(classes, dtype=np.uint8).tobytes())
        img.putpalette(palette())
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            img.save(path)
        except OSError as exc:
            raise _error(f"cannot write the mask: {exc.strerror or exc}", path) from None
        ids, counts = np.unique(classes, return_counts=True)
        return {
            "input": sample.name,
            "mask": str(path),
            "size": [int(classes.shape[0]), int(classes.shape[1])],
            "pixels": {self.label(int(i)): int(c) for i, c in zip(ids, counts)},
        }


def text_lines(result: dict[str, Any]) -> list[str]:
    """One result as label_image.py prints it: the input, then `label (score = 0.98659)` lines."""
    lines = [result["input"]]
    if "predictions" in result:
        lines += [f"{p['label']} (score = {p['score']:.5f})" for p in result["predictions"]]
    elif "mask" in result:
        lines.append(result["mask"])
    else:
        flat = np.asarray(result["values"], dtype=np.float64).ravel()
        lines.append(" ".join(f"{v:.6g}" for v in flat))
    return lines


def predict(
    model: str | Path,
    inputs: Sequence[str | Path],
    *,
    top_k: int = 5,
    provider: str = "auto",
    batch_size: int = 64,
    out_dir: str | Path | None = None,
) -> Iterator[dict[str, Any]]:
    """Results for every sample of `inputs`, in order, computed in batches of `batch_size`.

    Each result is {input, predictions: [{label, score}]} (classification),
    {input, values} (regression) or {input, mask, size, pixels} (segmentation).
    """
    if batch_size < 1:
        raise _error(f"--batch-size {batch_size}: expected a positive number")
    paths = [Path(p) for p in inputs]
    predictor = Predictor(model, provider)
    interpret = Interpreter(predictor.info, top_k, None if out_dir is None else Path(out_dir))
    check_inputs(paths)
    batch: list[Sample] = []

    def flush() -> Iterator[dict[str, Any]]:
        shapes = {s.x.shape for s in batch}
        groups = [batch] if len(shapes) == 1 else [[s] for s in batch]  # dynamic sizes: one by one
        for group in groups:
            out = predictor.run(np.stack([s.x for s in group]))
            for sample, y in zip(group, out):
                yield interpret(sample, y)

    for sample in read_inputs(paths, predictor.info):
        batch.append(sample)
        if len(batch) == batch_size:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


__all__ = [
    "ModelInfo",
    "PredictError",
    "Predictor",
    "model_info",
    "open_session",
    "predict",
    "prepare",
    "text_lines",
]
