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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netspec.data.pipeline import apply_values
from netspec.data.tiles import grid
from netspec.errors import NetspecError, Problem

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")
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
    raw_shape = tuple(None if d is None else int(d) for d in raw) if raw else input_shape
    fixed = None not in input_shape and None not in raw_shape
    if raw and fixed and math.prod(raw_shape) != math.prod(input_shape):  # type: ignore[arg-type]
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
    x = _decode_image(path, info)
    if not _fits(x.shape, info.raw_shape):
        want = info.raw_shape
        raise _error(
            f"image of {x.shape[2]}x{x.shape[1]} (width x height) after preprocessing; the model "
            f"takes {_size(want[2])}x{_size(want[1])} images and records no resize step",
            path,
            hint=f"resize the image to {_size(want[2])}x{_size(want[1])} first",
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def _decode_image(path: Path, info: ModelInfo, not_images: str | None = None) -> np.ndarray:
    """An image file decoded with Pillow, after the recorded image steps: (C, H, W) uint8."""
    if info.channel_order is None:
        raise _error(
            not_images
            or f"the model takes {_shape(info.raw_shape)} samples, not images; "
            "give a .npy or .csv file",
            path,
        )
    Image = _pillow(path, "reading images")
    try:
        with Image.open(path) as im:
            im.load()
            x = _pillow_pixels(im, info)
    except Exception as exc:  # Pillow raises many types on bad files: all mean "cannot decode"
        names = "/".join(s[1:] for s in IMAGE_SUFFIXES)
        raise _error(
            f"cannot decode the image ({type(exc).__name__}: {_first_line(exc)}); "
            f"expected a readable {names} file",
            path,
        ) from None
    return _pixel_steps(x, info, path)


def _pillow_pixels(im: Any, info: ModelInfo) -> np.ndarray:
    """A Pillow image in the model's channel order (and the folder loader's fit): (C, H, W)."""
    # The training pipeline: RGB then its own luma for `grayscale`, else Pillow's mode.
    im = im.convert("RGB" if info.pre.get("grayscale") else info.channel_order)
    size = info.pre.get("image_size")
    if size:  # decoded from a folder: the loader's own crop and resize, exactly
        from netspec.data.folder import fit_image

        im = fit_image(im, (int(size[0]), int(size[1])), info.pre.get("image_crop"))
    pixels = np.asarray(im)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _pixel_steps(x: np.ndarray, info: ModelInfo, path: Path) -> np.ndarray:
    """grayscale, resize and center crop of (C, H, W), as netspec.data.pipeline._geometry does.

    uint8 pixels are rounded back to uint8 after each step, other values stay float32.
    """
    Image = _pillow(path, "resizing images") if info.pre.get("resize") else None
    pixels = x.dtype == np.uint8
    if info.pre.get("grayscale") and x.shape[0] == 3:
        w = np.asarray(GRAY_WEIGHTS, dtype=np.float32)[:, None, None]
        x = (x.astype(np.float32) * w).sum(0, keepdims=True)
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8) if pixels else x
    resize, crop = info.pre.get("resize"), info.pre.get("center_crop")
    if resize:
        h, w = (int(v) for v in resize)
        out = np.empty((x.shape[0], h, w), dtype=np.float32)
        for c in range(x.shape[0]):
            img = Image.fromarray(x[c].astype(np.float32))  # a float image: mode F
            out[c] = np.asarray(img.resize((w, h), Image.BILINEAR))
        x = np.clip(np.rint(out), 0, 255).astype(np.uint8) if pixels else out
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
    return x


def _size(d: int | None) -> str:
    return "?" if d is None else str(d)


def read_npy(path: Path, info: ModelInfo) -> Iterator[Sample]:
    """A .npy array: one raw sample, or a batch of them with a leading N (never pickled)."""
    array = _load_npy(path)
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


def _load_npy(path: Path) -> np.ndarray:
    """A numeric .npy array (never unpickled), or a clear error."""
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
    return array


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


# --- scenes: inputs of any size for segmentation models ------------------------------------------


def is_scene_model(info: ModelInfo) -> bool:
    """A segmentation model over images (C, H, W): its inputs are scenes of any size, tiled."""
    shape, raw = info.input_shape, info.raw_shape
    return (
        kind_of(info) == "segmentation"
        and len(shape) == 3
        and len(raw) == 3
        and all(a is None or b is None or a == b for a, b in zip(shape, raw))
    )


def scene_bands(info: ModelInfo) -> int | None:
    """Bands (channels) a scene must have for this model (None: any)."""
    return info.input_shape[0] if info.input_shape[0] is not None else info.raw_shape[0]


def read_scenes(paths: Iterable[Path], info: ModelInfo) -> Iterator[Sample]:
    """Every input as whole scenes (C, H, W) of raw values: images, TIFF scenes, .npy arrays."""
    bands = scene_bands(info)
    for path in paths:
        kind = input_kind(path)
        if kind == "csv":
            raise _error(
                "a segmentation model takes scenes: images, .tif files or .npy arrays "
                "(C, H, W); not CSV rows",
                path,
            )
        if kind == "npy":
            scenes: Iterable[Sample] = read_npy_scenes(path)
        elif path.suffix.lower() in TIFF_SUFFIXES:
            scenes = [Sample(str(path), path.stem, read_tiff(path, info))]
        else:
            not_images = (
                f"the model takes {bands}-band scenes, not 8-bit images; "
                "give a .tif file or a .npy array (C, H, W)"
            )
            x = _decode_image(path, info, not_images)
            scenes = [Sample(str(path), path.stem, np.ascontiguousarray(x, dtype=np.float32))]
        for sample in scenes:
            if bands is not None and sample.x.shape[0] != bands:
                c, h, w = sample.x.shape
                raise _error(
                    f"{sample.name}: a scene of {c} band{'s' if c != 1 else ''} ({w}x{h}, "
                    f"width x height); the model takes {bands}",
                    path,
                    hint="give scenes with the bands (channels) the model was trained on, "
                    "in the same order",
                )
            yield sample


def read_npy_scenes(path: Path) -> Iterator[Sample]:
    """A .npy array as one scene (C, H, W) or several (N, C, H, W)."""
    array = _load_npy(path)
    if array.ndim == 3:
        yield Sample(str(path), path.stem, array.astype(np.float32))
    elif array.ndim == 4:
        for i, x in enumerate(array):
            yield Sample(f"{path}[{i}]", f"{path.stem}_{i}", x.astype(np.float32))
    else:
        raise _error(
            f"array of shape {_shape(array.shape)}; expected a scene (C, H, W) or scenes "
            "(N, C, H, W)",
            path,
        )


def read_tiff(path: Path, info: ModelInfo) -> np.ndarray:
    """A TIFF scene of any bands and bit depth as raw values (C, H, W) float32.

    8-bit scenes of 1, 3 or 4 bands for a model of images (L or RGB) take the image steps of
    any image file; other scenes are values as stored (uint16 stays 0..65535).
    """
    try:
        import tifffile  # a dependency, but only `predict` on TIFF scenes needs it
    except ImportError:
        raise _error(
            "reading TIFF scenes needs tifffile, which is not installed",
            path,
            hint="pip install tifffile",
        ) from None
    try:
        array = np.asarray(tifffile.imread(path))
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, KeyError...: unreadable
        raise _error(
            f"cannot read the TIFF ({type(exc).__name__}: {_first_line(exc)}); "
            "expected a readable .tif file",
            path,
        ) from None
    if array.dtype.kind not in "biuf":
        raise _error(f"TIFF of {array.dtype} values; expected numbers", path)
    if array.ndim == 2:
        x = array[None]
    elif array.ndim == 3:
        # Bands first (planar) when that axis is the smallest, else interleaved (H, W, bands).
        x = array if array.shape[0] < min(array.shape[1:]) else array.transpose(2, 0, 1)
    else:
        raise _error(
            f"TIFF of shape {_shape(array.shape)}; expected a scene (H, W), (bands, H, W) or "
            "(H, W, bands)",
            path,
        )
    if x.dtype == np.uint8 and info.channel_order and x.shape[0] in (1, 3, 4):
        Image = _pillow(path, "reading 8-bit scenes")
        hwc = x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0)
        im = Image.fromarray(np.ascontiguousarray(hwc))  # L, RGB or RGBA by the shape
        x = _pillow_pixels(im, info)
    else:
        x = x.astype(np.float32)
    return np.ascontiguousarray(_pixel_steps(x, info, path), dtype=np.float32)


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
        return self.run_prepared(prepare(raw, self.info))

    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        """The model's output (float32) for a batch of model inputs (preprocessed already)."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
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

    def segmenter(
        self, overlap: int | None = None, tta: bool = False, batch_size: int = 16
    ) -> SceneSegmenter:
        """A SceneSegmenter running this model on its tiles (for segmentation models)."""
        info = self.info
        if not is_scene_model(info):
            raise _error(
                f"the model is not a segmentation model over images (input "
                f"{_shape(info.input_shape)}, output {_shape(info.output_shape)})",
                info.path,
            )
        h, w = info.input_shape[1:]
        check_overlap(overlap, (h, w))
        return SceneSegmenter(
            self.run_prepared,
            (h, w),
            overlap=overlap,
            tta=tta,
            batch_size=batch_size,
            prepare=lambda raw: prepare(raw, info),
            head=info.head,
        )


def check_overlap(overlap: int | None, tile: tuple[int | None, int | None]) -> None:
    """A clear error for an --overlap that tiles of `tile` (height, width) cannot have."""
    if overlap is None:
        return
    if overlap < 0:
        raise _error(f"--overlap {overlap}: expected 0 or more pixels")
    h, w = tile
    side = min(d for d in (h, w, overlap + 1) if d is not None)
    if overlap >= side:
        raise _error(
            f"--overlap {overlap}: tiles must overlap by less than their side; the model's "
            f"tiles are {_size(w)}x{_size(h)} (width x height)",
            hint=f"use --overlap {side // 4} (the default) or anything below {side}",
        )


# --- segmentation of scenes of any size: tiles, stitching, test-time augmentation ----------------
# Engine-agnostic (numpy and a `run` callable): training validates on the same grid.

Run = Callable[[np.ndarray], np.ndarray]
Variant = tuple[int, bool]  # (quarter turns counterclockwise, mirrored left-right first)


class SceneError(ValueError):
    """A scene or a model output that tiled segmentation cannot handle."""


def tta_variants(tile: tuple[int, int], tta: bool = True) -> tuple[Variant, ...]:
    """The symmetries each tile is run under: the 8 of a square, the 4 keeping a rectangle's shape
    (identity, left-right and up-down mirrors, half turn), or the identity alone without TTA."""
    if not tta:
        return ((0, False),)
    if tile[0] == tile[1]:
        return tuple((k, m) for m in (False, True) for k in range(4))
    return ((0, False), (0, True), (2, True), (2, False))  # (2, True): the up-down mirror


def transform(x: np.ndarray, variant: Variant) -> np.ndarray:
    """One symmetry of images (..., H, W)."""
    k, mirror = variant
    return np.rot90(x[..., ::-1] if mirror else x, k, axes=(-2, -1))


def untransform(y: np.ndarray, variant: Variant) -> np.ndarray:
    """The inverse of transform(., variant): back to the original orientation."""
    k, mirror = variant
    y = np.rot90(y, -k, axes=(-2, -1))
    return y[..., ::-1] if mirror else y


def probabilities(outputs: np.ndarray, head: str | None = None) -> np.ndarray:
    """Class probabilities of outputs (N, K, ...): as they are when the model ends in a softmax or
    sigmoid (`head`), else a softmax over K (a sigmoid for a single unit)."""
    y = np.asarray(outputs, dtype=np.float32)
    if head in ("softmax", "sigmoid"):
        return y
    if y.shape[1] == 1:
        return 0.5 * (1.0 + np.tanh(0.5 * y))  # the sigmoid, without overflow for large |y|
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def blend_window(tile: tuple[int, int], overlap: int) -> np.ndarray:
    """Stitching weights (h, w): 1 in the middle, falling linearly over `overlap` pixels towards
    the tile's edges but never to 0, so a pixel only one tile covers keeps that tile's value."""

    def ramp(n: int) -> np.ndarray:
        d = np.arange(n, dtype=np.float32)
        return np.minimum(1.0, np.minimum(d + 1, n - d) / (overlap + 1))

    return np.outer(ramp(tile[0]), ramp(tile[1])).astype(np.float32)


def mask_of(probs: np.ndarray) -> np.ndarray:
    """Class ids (H, W) of probabilities (K, H, W): the argmax, or p >= 0.5 for a single unit."""
    if probs.shape[0] == 1:
        return (probs[0] >= 0.5).astype(np.uint8)
    return probs.argmax(axis=0)


@dataclass(frozen=True)
class Segmentation:
    """A scene's class probabilities (K, H, W), from how many tiles and TTA variants per tile."""

    probs: np.ndarray
    tiles: int
    tta: int

    @property
    def mask(self) -> np.ndarray:
        return mask_of(self.probs)


@dataclass(frozen=True)
class SceneSegmenter:
    """Segments scenes (C, H, W) of any size with a model of fixed tile size, tile by tile.

    Tiles are placed by netspec.data.tiles.grid; a scene smaller than a tile is reflect-padded
    and its output cropped back. Each tile's raw values go through `prepare` (the model's value
    steps), then through every TTA variant; `run` maps a batch of model inputs (N, C, h, w)
    float32 to outputs (N, K, h, w). Probabilities (see `probabilities`) are averaged over the
    variants, blended across tiles with `blend_window` and normalized by the summed weights.
    """

    run: Run
    tile: tuple[int | None, int | None] = (None, None)  # the model's input (h, w); None: any
    overlap: int | None = None  # pixels; default: a quarter of the smaller tile side
    tta: bool = False
    batch_size: int = 16  # model inputs per call of `run` (tiles x variants)
    prepare: Callable[[np.ndarray], np.ndarray] | None = None  # raw tiles -> model inputs
    head: str | None = None  # softmax | sigmoid: the outputs are probabilities already

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SceneError(f"batch size {self.batch_size}: expected a positive number")
        sides = [d for d in self.tile if d is not None]
        if any(d < 1 for d in sides):
            raise SceneError(f"tile {self.tile}: expected positive sides")
        side = min(sides, default=None)
        if self.overlap is not None and (self.overlap < 0 or (side and self.overlap >= side)):
            raise SceneError(
                f"overlap {self.overlap}: expected 0 <= overlap < the tile side {side}"
            )

    def tile_for(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The tile (h, w) for a scene of `shape` (H, W): the model's, or the scene's if dynamic."""
        return (self.tile[0] or shape[0], self.tile[1] or shape[1])

    def overlap_for(self, tile: tuple[int, int]) -> int:
        overlap = min(tile) // 4 if self.overlap is None else self.overlap
        return min(overlap, min(tile) - 1)  # a dynamic side (one tile of the scene) may be short

    def segment(self, scene: np.ndarray) -> Segmentation:
        """Class probabilities (K, H, W) of one scene of raw values (C, H, W)."""
        scene = np.asarray(scene, dtype=np.float32)
        if scene.ndim != 3:
            raise SceneError(f"scene of shape {scene.shape}; expected (C, H, W)")
        H, W = scene.shape[1:]
        h, w = tile = self.tile_for((H, W))
        top, left = max(0, h - H) // 2, max(0, w - W) // 2
        if h > H or w > W:  # smaller than a tile: reflect the scene's own values around it
            pad = ((0, 0), (top, max(0, h - H) - top), (left, max(0, w - W) - left))
            scene = np.pad(scene, pad, mode="reflect")
        overlap = self.overlap_for(tile)
        starts = grid(scene.shape[1:], tile, overlap)
        variants = tta_variants(tile, self.tta)
        window = blend_window(tile, overlap)
        total = weight = None
        per_call = max(1, self.batch_size // len(variants))
        for i in range(0, len(starts), per_call):
            group = starts[i : i + per_call]
            raw = np.stack([scene[:, t : t + h, s : s + w] for t, s in group])
            probs = self._tile_probs(raw, variants)
            if probs.shape[2:] != tile:
                if len(starts) == 1 and tile == (H, W):  # the whole scene: take it as it comes
                    return Segmentation(probs[0], 1, len(variants))
                raise SceneError(
                    f"outputs of {probs.shape[3]}x{probs.shape[2]} for tiles of {w}x{h} (width x "
                    "height): tiles are stitched only when the output has the input's size"
                )
            if total is None:
                total = np.zeros((probs.shape[1], *scene.shape[1:]), dtype=np.float32)
                weight = np.zeros(scene.shape[1:], dtype=np.float32)
            for (t, s), p in zip(group, probs):
                total[:, t : t + h, s : s + w] += p * window
                weight[t : t + h, s : s + w] += window
        assert total is not None and weight is not None  # grid() gives at least one tile
        probs = (total / weight)[:, top : top + H, left : left + W]
        return Segmentation(np.ascontiguousarray(probs), len(starts), len(variants))

    __call__ = segment

    def _tile_probs(self, raw: np.ndarray, variants: Sequence[Variant]) -> np.ndarray:
        """Probabilities (n, K, h, w) of n raw tiles, averaged over the TTA variants."""
        x = self.prepare(raw) if self.prepare is not None else raw
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise SceneError(f"prepared tiles of shape {x.shape}; expected (N, C, h, w)")
        inputs = np.concatenate([transform(x, v) for v in variants])  # variant-major
        outs = []
        for i in range(0, len(inputs), self.batch_size):
            out = np.asarray(self.run(np.ascontiguousarray(inputs[i : i + self.batch_size])))
            if out.ndim != 4 or len(out) != min(self.batch_size, len(inputs) - i):
                raise SceneError(
                    f"outputs of shape {out.shape} for {min(self.batch_size, len(inputs) - i)} "
                    "tiles; expected (N, K, h, w)"
                )
            outs.append(probabilities(out, self.head))
        probs = np.concatenate(outs).reshape(len(variants), len(x), *outs[0].shape[1:])
        return sum(untransform(p, v) for p, v in zip(probs, variants)) / len(variants)


def segment_scene(
    run: Run,
    scene: np.ndarray,
    tile: tuple[int | None, int | None] = (None, None),
    *,
    overlap: int | None = None,
    tta: bool = False,
    batch_size: int = 16,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    head: str | None = None,
) -> np.ndarray:
    """Class probabilities (K, H, W) of a scene (C, H, W), tiled: see SceneSegmenter."""
    segmenter = SceneSegmenter(run, tile, overlap, tta, batch_size, prepare, head)
    return segmenter.segment(scene).probs


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
        k = y.shape[0]
        if k == 1:
            cut = 0.5 if self.info.head == "sigmoid" else 0.0
            classes = (y[0] >= cut).astype(np.uint8)
        else:
            classes = y.argmax(axis=0)
        return self.write_mask(sample, classes, k)

    def scene(self, sample: Sample, seg: Segmentation) -> dict[str, Any]:
        """A segmented scene -> its mask file, and how many tiles and TTA variants made it."""
        result = self.write_mask(sample, seg.mask, seg.probs.shape[0])
        return {**result, "tiles": seg.tiles, "tta": seg.tta}

    def write_mask(self, sample: Sample, classes: np.ndarray, k: int) -> dict[str, Any]:
        """Class ids (H, W) of K classes -> a palette PNG `<stem>_mask.png` in out_dir."""
        Image = _pillow(self.info.path, "writing segmentation masks")
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
    overlap: int | None = None,
    tta: bool = False,
) -> Iterator[dict[str, Any]]:
    """Results for every sample of `inputs`, in order, computed in batches of `batch_size`.

    Each result is {input, predictions: [{label, score}]} (classification),
    {input, values} (regression) or {input, mask, size, pixels, tiles, tta} (segmentation).
    Segmentation models take scenes of any size, predicted tile by tile (tiles overlapping by
    `overlap` pixels, default a quarter of the tile side) and with `tta` averaged over the
    symmetries of each tile; their masks have the scene's size.
    """
    if batch_size < 1:
        raise _error(f"--batch-size {batch_size}: expected a positive number")
    check_overlap(overlap, (None, None))
    paths = [Path(p) for p in inputs]
    predictor = Predictor(model, provider)
    info = predictor.info
    interpret = Interpreter(info, top_k, None if out_dir is None else Path(out_dir))
    if is_scene_model(info):
        segmenter = predictor.segmenter(overlap, tta, batch_size)
        check_inputs(paths)
        for sample in read_scenes(paths, info):
            try:
                seg = segmenter.segment(sample.x)
            except SceneError as exc:
                raise _error(f"{sample.name}: {exc}", info.path) from None
            yield interpret.scene(sample, seg)
        return
    for flag, given in (("--overlap", overlap is not None), ("--tta", tta)):
        if given:
            raise _error(
                f"{flag}: only segmentation models (output (K, H, W) over image inputs) are "
                f"predicted tile by tile; this model's output is {_shape(info.output_shape)}",
                info.path,
            )
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
    "SceneError",
    "SceneSegmenter",
    "Segmentation",
    "blend_window",
    "mask_of",
    "model_info",
    "open_session",
    "predict",
    "prepare",
    "probabilities",
    "read_scenes",
    "read_tiff",
    "segment_scene",
    "text_lines",
    "transform",
    "tta_variants",
    "untransform",
]
