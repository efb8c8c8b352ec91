"""The preprocessing record and its steps in numpy: geometry (grayscale, resize, crop), then values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from netspec.errors import DataError

# numpy is imported inside the functions that compute with it: `netspec summary` imports this
# module (through the run record) and starts without numpy (docs/performance.md).
if TYPE_CHECKING:
    import numpy as np

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma of R, G, B
# Per-sample standardization: (x - mean) / (std + PER_SAMPLE_EPS), std with Bessel's correction.
PER_SAMPLE_DDOF = 1
PER_SAMPLE_EPS = 1e-6


@dataclass(frozen=True)
class Preprocessing:
    """Exactly what is done to a raw sample before the network sees it (saved with the model).

    Raw input: channels-first arrays as the loader gives them (uint8 pixels or float features).
    Steps, in order: grayscale, resize, center_crop (geometry, done once on load), then
    x * scale, then (x - mean) / std per channel (or per sample), then reshape to `input_shape`.

    Regression targets (`target_mean`, `target_std`, one per output, unless the spec turns it
    off): the network learns (y - target_mean) / target_std, so a loss does not depend on the
    targets' units; the exported ONNX graph ends in y * target_std + target_mean, so any app gets
    the original units, and the trainer's metrics are computed in them too.
    """

    input_shape: tuple[int, ...]
    raw_shape: tuple[int, ...]
    channel_order: str | None = None  # "RGB" or "L" for images, None for tables
    # How a folder of images was decoded: netspec.data.folder.fit_image(image, size, crop).
    image_size: tuple[int, int] | None = None
    image_crop: str | None = None
    # The folder's deepest image: 16 means 16-bit values were scaled to 0..255 (v * 255 / 65535).
    image_bits: int | None = None
    grayscale: bool = False
    resize: tuple[int, int] | None = None
    center_crop: tuple[int, int] | None = None
    scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    per_sample: bool = False
    target_mean: tuple[float, ...] | None = None
    target_std: tuple[float, ...] | None = None
    # The training split's smallest and largest raw value (after geometry, before scale).
    raw_range: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, file: str | None = None) -> Preprocessing:
        """The record back from its JSON form (model.json, a weights header, an ONNX card).

        Keys this version does not know (a model card's `layout` and `steps`) are ignored; a
        missing optional field (a record written before it existed, e.g. `raw_range`) is None.
        A malformed record raises DataError naming `file`.
        """
        if not isinstance(d, Mapping):
            raise _malformed(f"is a {type(d).__name__}, not a mapping", file)
        out: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                if f.name in ("input_shape", "raw_shape"):
                    raise _malformed(f"has no {f.name}", file)
                continue
            out[f.name] = _typed(f.name, d[f.name], file)
        return cls(**out)


# The record's fields by the type of their JSON value (see Preprocessing.from_dict).
_INT_TUPLES = frozenset({"input_shape", "raw_shape", "image_size", "resize", "center_crop"})
_FLOAT_TUPLES = frozenset({"mean", "std", "target_mean", "target_std", "raw_range"})
_PAIRS = frozenset({"image_size", "resize", "center_crop", "raw_range"})


def _malformed(what: str, file: str | None) -> DataError:
    return DataError.one(
        f"the preprocessing record {what}",
        file,
        hint="the file was not written by netspec, or was edited: train the run again",
    )


def _typed(name: str, value: Any, file: str | None) -> Any:
    """One field's JSON value as the record holds it; DataError when it has the wrong type."""
    if name in ("input_shape", "raw_shape") or value is not None:
        number = (int,) if name in _INT_TUPLES else (int, float)
        if name in _INT_TUPLES | _FLOAT_TUPLES:
            # A shape may hold null: a dynamic dimension of an exported model's input.
            dynamic = name in ("input_shape", "raw_shape")
            ok = isinstance(value, (list, tuple)) and all(
                (isinstance(v, number) and not isinstance(v, bool)) or (dynamic and v is None)
                for v in value
            )
            if ok and name in _PAIRS:
                ok = len(value) == 2
            if not ok:
                raise _malformed(f"has {name} {value!r}: expected a list of numbers", file)
            return tuple(float(v) for v in value) if name in _FLOAT_TUPLES else tuple(value)
        if name in ("grayscale", "per_sample"):
            if not isinstance(value, bool):
                raise _malformed(f"has {name} {value!r}: expected true or false", file)
        elif name == "image_bits":
            if not isinstance(value, int) or isinstance(value, bool):
                raise _malformed(f"has image_bits {value!r}: expected a whole number", file)
        elif name == "scale":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise _malformed(f"has scale {value!r}: expected a number", file)
            return float(value)
        elif not isinstance(value, str):
            raise _malformed(f"has {name} {value!r}: expected a string", file)
    return value


def as_record(pre: Preprocessing | Mapping[str, Any]) -> Preprocessing:
    """A Preprocessing, from itself or its JSON form (whose shapes may be left out: the steps
    themselves do not read them)."""
    if isinstance(pre, Preprocessing):
        return pre
    return Preprocessing.from_dict({"input_shape": [], "raw_shape": [], **pre})


class CropError(ValueError):
    """A center crop larger than the (resized) image; callers word it for their users."""

    def __init__(self, image: tuple[int, int], crop: tuple[int, int]) -> None:
        self.image, self.crop = image, crop  # both (h, w)
        super().__init__(f"center crop {crop} is larger than the image {image}")


def geometry(
    x: np.ndarray,
    *,
    grayscale: bool = False,
    resize: Sequence[int] | None = None,
    center_crop: Sequence[int] | None = None,
) -> np.ndarray:
    """The geometry steps on images (..., C, H, W): grayscale, resize (h, w), center crop (h, w).

    grayscale weighs R, G, B by GRAY_WEIGHTS (only 3-channel images change); resize is Pillow's
    bilinear filter on each channel as a float image (mode F). uint8 pixels are rounded back to
    uint8 after each step, other values stay float32. Raises CropError for a crop too large.
    """
    import numpy as np

    pixels = x.dtype == np.uint8
    if grayscale and x.shape[-3] == 3:
        w = np.asarray(GRAY_WEIGHTS, dtype=np.float32)[:, None, None]
        x = (x.astype(np.float32) * w).sum(axis=-3, keepdims=True)
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8) if pixels else x
    if resize:
        from PIL import Image  # only resizing needs Pillow

        h, w = (int(v) for v in resize)
        planes = x.reshape(-1, *x.shape[-2:])
        out = np.empty((len(planes), h, w), dtype=np.float32)
        for i, plane in enumerate(planes):  # once per sample at load time, not per batch
            img = Image.fromarray(plane.astype(np.float32))  # a float image: mode F
            out[i] = np.asarray(img.resize((w, h), Image.BILINEAR))
        out = out.reshape(*x.shape[:-2], h, w)
        x = np.clip(np.rint(out), 0, 255).astype(np.uint8) if pixels else out
    if center_crop:
        h, w = (int(v) for v in center_crop)
        H, W = x.shape[-2:]
        if h > H or w > W:
            raise CropError((H, W), (h, w))
        top, left = (H - h) // 2, (W - w) // 2
        x = np.ascontiguousarray(x[..., top : top + h, left : left + w])
    return x


def apply_values(
    x: np.ndarray,
    pre: Preprocessing | Mapping[str, Any] | None,
    input_shape: Sequence[int | None],
) -> np.ndarray:
    """The value steps of a recorded Preprocessing on a batch of raw samples, in numpy.

    x * scale, then per-channel (x - mean) / std or per-sample standardization, then the reshape
    to `input_shape` (skipped when it holds an unknown dimension). The trainer's `Normalizer`
    does the same in torch; export parity and `netspec predict` use this one. No record (a
    model from elsewhere): the reshape alone.
    """
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    if pre is None:
        return _reshaped(x, input_shape)
    pre = as_record(pre)
    if pre.scale != 1.0:
        x = x * np.float32(pre.scale)
    view = (1, -1) + (1,) * (x.ndim - 2)
    if pre.mean and pre.std:
        mean = np.asarray(pre.mean, np.float32).reshape(view)
        x = (x - mean) / np.asarray(pre.std, np.float32).reshape(view)
    elif pre.per_sample:
        flat = x.reshape(len(x), -1)
        std = flat.std(1, ddof=PER_SAMPLE_DDOF, keepdims=True) if flat.shape[1] > 1 else 0.0
        x = ((flat - flat.mean(1, keepdims=True)) / (std + PER_SAMPLE_EPS)).reshape(x.shape)
    return _reshaped(x, input_shape)


def _reshaped(x: np.ndarray, input_shape: Sequence[int | None]) -> np.ndarray:
    import numpy as np

    if None not in input_shape:
        x = x.reshape(len(x), *input_shape)  # type: ignore[arg-type]
    return np.ascontiguousarray(x, dtype=np.float32)


# --- the record in words, for apps in other languages (the exported model's sidecar) -----------

PILLOW_BILINEAR = (
    "Pillow Image.resize(size, Image.BILINEAR): a triangle filter whose support grows with the "
    "reduction factor, so downscaling averages every source pixel (antialiased); not OpenCV "
    "INTER_LINEAR, which samples 2x2 pixels and differs by several grey levels"
)


def describe(pre: Preprocessing | Mapping[str, Any], tiled: bool = False) -> list[dict[str, Any]]:
    """The steps of a recorded Preprocessing, in order, each with its parameters and definition.

    Every step is exactly what `geometry`/`apply_values` (and the folder loader's `fit_image`) do,
    so an app in any language can redo them; steps that do nothing are left out. `tiled`: the
    model takes scenes of any size in tiles (segmentation), so predict resizes no image of
    another size (no `resize_to_input` step).
    """
    pre = as_record(pre)
    # The decode mode: a `grayscale` model decodes to RGB and makes the gray in its own step.
    mode = "RGB" if pre.grayscale else pre.channel_order
    # The steps in the order they run: decoding, the geometry, then the values.
    return [_decode_step(pre, mode), *_geometry_steps(pre, mode, tiled), *_value_steps(pre)]


def _decode_step(pre: Preprocessing, mode: str | None) -> dict[str, Any]:
    """The first step: a file's samples decoded (an image to its channel order) as raw arrays."""
    if mode == "RGB":
        convert = (
            "convert to RGB (Pillow convert('RGB'): a palette looked up, alpha dropped, gray "
            "repeated as R, G, B)"
            + ("; the grayscale step below makes the gray" if pre.grayscale else "")
        )
    else:
        convert = (
            "convert to L (Pillow convert('L'): a palette looked up, alpha dropped, RGB to "
            "(19595 R + 38470 G + 7471 B + 32768) >> 16)"
        )
    return {
        "step": "decode",
        "channel_order": pre.channel_order,
        "raw_shape": _listed(pre.raw_shape),
        "definition": (
            f"images: decode, turn by the EXIF orientation if any, {convert}, then channels "
            "first (C, H, W); arrays as they are"
            if mode in ("RGB", "L")
            else "arrays and tables as they are"
        )
        + (
            "; a 16-bit grayscale image's values v become v * 255 / 65535 (float32), "
            "not clipped to 255"
            if pre.image_bits == 16
            else ""
        ),
    }


def _geometry_steps(pre: Preprocessing, mode: str | None, tiled: bool) -> list[dict[str, Any]]:
    """The steps that change a sample's size or channels, in the order `geometry` runs them."""
    steps: list[dict[str, Any]] = []
    if pre.image_size:
        crop = pre.image_crop
        steps.append(
            {
                "step": "fit_image",
                "size": list(pre.image_size),
                "crop": crop,
                "method": PILLOW_BILINEAR,
                "definition": (
                    "on the 8-bit image: "
                    + (
                        "crop the largest centred box with the target aspect ratio (h, w), then "
                        if crop == "center"
                        else ""
                    )
                    + "resize to (h, w) unless it already has that size; 8-bit results"
                ),
            }
        )
    if pre.grayscale:
        steps.append(
            {
                "step": "grayscale",
                "weights": list(GRAY_WEIGHTS),
                "definition": "3-channel images only: 0.299 R + 0.587 G + 0.114 B, as float32; "
                "uint8 pixels rounded half to even and clipped to 0..255",
            }
        )
    if pre.resize:
        steps.append(
            {
                "step": "resize",
                "size": list(pre.resize),
                "method": PILLOW_BILINEAR,
                "definition": "each channel as a 32-bit float image (Pillow mode F) resized to "
                "(h, w); uint8 pixels rounded half to even and clipped to 0..255",
            }
        )
    if pre.center_crop:
        steps.append(
            {
                "step": "center_crop",
                "size": list(pre.center_crop),
                "definition": "top = (H - h) // 2, left = (W - w) // 2 (integer division)",
            }
        )
    raw = pre.raw_shape
    other_size = mode in ("RGB", "L") and len(raw) == 3 and None not in raw and not tiled
    if other_size and not (pre.image_size or pre.resize or pre.center_crop):
        steps.append(
            {
                "step": "resize_to_input",
                "size": list(raw[1:]),
                "method": PILLOW_BILINEAR,
                "definition": "only an image that is not (h, w) (training saw none: netspec "
                "predict does it and says so on stderr): each channel as a 32-bit float image "
                "resized to (h, w), rounded half to even and clipped to 0..255, as `resize`",
            }
        )
    return steps


def _value_steps(pre: Preprocessing) -> list[dict[str, Any]]:
    """The steps on the values (`apply_values`): float32, scale, normalization, the reshape."""
    steps: list[dict[str, Any]] = []
    scale = pre.scale
    steps.append({"step": "to_float32", "definition": "values as float32"})
    if scale != 1.0:
        steps.append({"step": "scale", "factor": scale, "definition": "x * factor"})
    if pre.mean and pre.std:
        steps.append(
            {
                "step": "normalize",
                "mean": list(pre.mean),
                "std": list(pre.std),
                "definition": "(x - mean[c]) / std[c] for each channel c (the first axis)",
            }
        )
    elif pre.per_sample:
        steps.append(
            {
                "step": "standardize_per_sample",
                "ddof": PER_SAMPLE_DDOF,
                "eps": PER_SAMPLE_EPS,
                "definition": "over all values of one sample: (x - mean(x)) / (std(x) + eps), "
                "std with ddof=1 (divide by n - 1; 0 for a single value)",
            }
        )
    steps.append(
        {
            "step": "reshape",
            "shape": list(pre.input_shape),
            "definition": "row-major (C order) reshape to the model's input, then a batch axis",
        }
    )
    return steps


def _listed(shape: Sequence[int] | None) -> list[int] | None:
    return None if shape is None else list(shape)
