"""The preprocessing record and its steps in numpy: geometry (grayscale, resize, crop), then values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

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
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**fields)


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
    x: np.ndarray, pre: dict[str, Any], input_shape: Sequence[int | None]
) -> np.ndarray:
    """The value steps of a recorded Preprocessing on a batch of raw samples, in numpy.

    x * scale, then per-channel (x - mean) / std or per-sample standardization, then the reshape
    to `input_shape` (skipped when it holds an unknown dimension). The trainer's `Normalizer`
    does the same in torch; export parity and `netspec predict` use this one.
    """
    x = np.asarray(x, dtype=np.float32)
    scale = float(pre.get("scale") or 1.0)
    if scale != 1.0:
        x = x * np.float32(scale)
    view = (1, -1) + (1,) * (x.ndim - 2)
    if pre.get("mean") and pre.get("std"):
        mean = np.asarray(pre["mean"], np.float32).reshape(view)
        x = (x - mean) / np.asarray(pre["std"], np.float32).reshape(view)
    elif pre.get("per_sample"):
        flat = x.reshape(len(x), -1)
        std = flat.std(1, ddof=PER_SAMPLE_DDOF, keepdims=True) if flat.shape[1] > 1 else 0.0
        x = ((flat - flat.mean(1, keepdims=True)) / (std + PER_SAMPLE_EPS)).reshape(x.shape)
    if None not in input_shape:
        x = x.reshape(len(x), *input_shape)  # type: ignore[arg-type]
    return np.ascontiguousarray(x, dtype=np.float32)


# --- the record in words, for apps in other languages (the exported model's sidecar) -----------

PILLOW_BILINEAR = (
    "Pillow Image.resize(size, Image.BILINEAR): a triangle filter whose support grows with the "
    "reduction factor, so downscaling averages every source pixel (antialiased); not OpenCV "
    "INTER_LINEAR, which samples 2x2 pixels and differs by several grey levels"
)


def describe(pre: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps of a recorded Preprocessing, in order, each with its parameters and definition.

    Every step is exactly what `geometry`/`apply_values` (and the folder loader's `fit_image`) do,
    so an app in any language can redo them; steps that do nothing are left out.
    """
    steps: list[dict[str, Any]] = []
    order = pre.get("channel_order")
    steps.append(
        {
            "step": "decode",
            "channel_order": order,
            "raw_shape": pre.get("raw_shape"),
            "definition": "images: decode, turn by the EXIF orientation if any, convert to the "
            "channel order (Pillow convert('RGB') or convert('L')), then channels first "
            "(C, H, W); arrays and tables as they are"
            + (
                "; a 16-bit grayscale image's values v become v * 255 / 65535 (float32), "
                "not clipped to 255"
                if pre.get("image_bits") == 16
                else ""
            ),
        }
    )
    if pre.get("image_size"):
        crop = pre.get("image_crop")
        steps.append(
            {
                "step": "fit_image",
                "size": pre["image_size"],
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
    if pre.get("grayscale"):
        steps.append(
            {
                "step": "grayscale",
                "weights": list(GRAY_WEIGHTS),
                "definition": "3-channel images only: 0.299 R + 0.587 G + 0.114 B, as float32; "
                "uint8 pixels rounded half to even and clipped to 0..255",
            }
        )
    if pre.get("resize"):
        steps.append(
            {
                "step": "resize",
                "size": pre["resize"],
                "method": PILLOW_BILINEAR,
                "definition": "each channel as a 32-bit float image (Pillow mode F) resized to "
                "(h, w); uint8 pixels rounded half to even and clipped to 0..255",
            }
        )
    if pre.get("center_crop"):
        steps.append(
            {
                "step": "center_crop",
                "size": pre["center_crop"],
                "definition": "top = (H - h) // 2, left = (W - w) // 2 (integer division)",
            }
        )
    scale = float(pre.get("scale") or 1.0)
    steps.append({"step": "to_float32", "definition": "values as float32"})
    if scale != 1.0:
        steps.append({"step": "scale", "factor": scale, "definition": "x * factor"})
    if pre.get("mean") and pre.get("std"):
        steps.append(
            {
                "step": "normalize",
                "mean": pre["mean"],
                "std": pre["std"],
                "definition": "(x - mean[c]) / std[c] for each channel c (the first axis)",
            }
        )
    elif pre.get("per_sample"):
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
            "shape": pre.get("input_shape"),
            "definition": "row-major (C order) reshape to the model's input, then a batch axis",
        }
    )
    return steps
