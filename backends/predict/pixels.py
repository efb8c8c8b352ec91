"""Predict's inputs for an `export --preprocess` model: decoded uint8 images (H, W, C), unresized.

Such a model resizes, converts and scales in its graph, so an input is decoded only as far as
docs/sidecar.md's outside steps go before any geometry: the EXIF orientation, the palette, the
alpha channel dropped, the channel order (or RGB for a `grayscale` model), and a 16-bit image
rounded to 8 bits. Arrays are taken only as such pixels, never as preprocessed values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import NetspecError

from .errors import error, shape
from .inputs import (
    Failed,
    Input,
    Note,
    Sample,
    array_name,
    check_input,
    check_numeric,
    load_npy,
    open_image,
)
from .model import ModelInfo

CHANNELS = (1, 3, 4)  # the graph's raw input: gray, RGB, RGBA (alpha dropped)
PLAIN_HINT = "or predict with the export without --preprocess, which takes preprocessed values"


def read_pixels(paths: Iterable[Input], info: ModelInfo, note: Note) -> Iterator[Sample | Failed]:
    """Every input as decoded images, uint8 (H, W, C) of any size, in order; a Failed for each
    that cannot be read (the others go on)."""
    said: set[str] = set()

    def once(text: str) -> None:
        if text not in said:
            said.add(text)
            note(text)

    for k, path in enumerate(paths):
        name = array_name(k) if isinstance(path, np.ndarray) else str(path)
        try:
            if isinstance(path, np.ndarray):
                yield from pixel_samples(path, name, f"inputs_{k}", name)
                continue
            if not isinstance(path, Path):
                raise error("the model takes images, not texts", info.path, kind="usage")
            kind = check_input(path)
            if kind == "image":
                yield Sample(str(path), path.stem, decode_pixels(path, info, once))
            elif kind == "npy":
                yield from pixel_samples(load_npy(path), str(path), path.stem, path)
            else:
                raise error(
                    "the model takes images (export --preprocess), not CSV rows; give image "
                    "files or .npy arrays of uint8 pixels (H, W, C)",
                    path,
                    hint=PLAIN_HINT,
                )
        except NetspecError as err:
            yield Failed(name, err)


def pixel_samples(array: np.ndarray, name: str, stem: str, where: str | Path) -> Iterator[Sample]:
    """An array of uint8 pixels as one image (H, W, C) or a batch of them (N, H, W, C)."""
    check_numeric(array, where)
    if array.dtype != np.uint8:
        raise error(
            f"array of dtype {array.dtype}; the model (export --preprocess) takes decoded 8-bit "
            "images: uint8 (H, W, C) or (N, H, W, C) pixels, not preprocessed values",
            where,
            hint=f"pass the image's pixels as uint8, {PLAIN_HINT}",
        )
    if array.ndim not in (3, 4) or array.shape[-1] not in CHANNELS or 0 in array.shape:
        raise error(
            f"array of shape {shape(array.shape)}; expected an image (H, W, C) or images "
            f"(N, H, W, C) with C = 1, 3 or 4 (gray, RGB, RGBA)",
            where,
        )
    if array.ndim == 3:
        yield Sample(name, stem, np.ascontiguousarray(array))
        return
    for i, x in enumerate(array):
        yield Sample(f"{name}[{i}]", f"{stem}_{i}", np.ascontiguousarray(x))


def decode_pixels(path: Path, info: ModelInfo, note: Note = lambda _: None) -> np.ndarray:
    """An image file decoded as docs/sidecar.md's step 1 says, unresized: uint8 (H, W, C).

    The channel order as `netspec predict` decodes for the plain export (RGB for a `grayscale`
    model, whose graph makes the gray itself), so the graph's conversions are exactly Pillow's.
    A 16-bit image (values v * 255 / 65535 as floats in the plain export) is rounded half to even
    to 8 bits, since the graph's input is uint8; `note` says so.
    """
    from netspec.data.folder import image_pixels

    pre = info.pre
    mode = "RGB" if pre is not None and pre.grayscale else str(info.channel_order)
    pixels: Any = open_image(path, lambda im: image_pixels(im, mode, None, None))
    if pixels.dtype != np.uint8:
        note(
            "16-bit images are rounded to 8 bits: the model (export --preprocess) takes uint8 "
            "pixels; the export without --preprocess reads them as 16-bit values"
        )
        pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels[..., None] if pixels.ndim == 2 else pixels)
