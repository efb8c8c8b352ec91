"""Mask folders: image/mask pairs matched by file stem, decoded (PNG, palette, TIFF) and checked.

Over 400 lines: the in-memory decode and the streamed one (`SceneReader`, `MaskReader`) share
`_read_image`, `_read_mask` and their checks, so they stay in one module.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from netspec.data._common import data_error, did_you_mean, named, plain, unreadable
from netspec.data.arraydata import ArrayData
from netspec.data.folder import listed_file
from netspec.data.masks import (
    MASK_FOLDER_SUFFIXES,
    _few,
    holding_in,
    mask_indices,
    mask_map,
    merge_counts,
    value_counts,
)
from netspec.data.parallel import threaded_map
from netspec.data.stream import LABEL_BYTES, Lazy, chunks, read_chunks
from netspec.data.tiff import TIFF_SUFFIXES, read_tiff_array, read_tiff_bands
from netspec.errors import DataError, Problem

_LAYOUT_HINT = (
    "expected image/mask pairs with the same file stem, e.g. root/images/a.png and root/masks/a.png"
)
_MASK_HINT = "save each mask as a single-channel (grayscale or palette) PNG or TIFF of class values"
_WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_MASK_MODES = frozenset({"L", "P", "1"}) | (_WIDE_MODES - {"F"})


def _natural_key(stem: str) -> tuple[list[object], str]:
    # Digit runs compare as numbers so "2" sorts before "10"; split() alternates text and digits.
    parts = re.split(r"(\d+)", stem)
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)], stem


def _scan(folder: Path) -> tuple[dict[str, Path], list[Path]]:
    """stem -> file for the image files directly in `folder`, and the other files it holds."""
    try:
        entries = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as e:
        raise data_error(f"cannot list folder: {e.strerror or e}", folder) from None
    found: dict[str, Path] = {}
    skipped: list[Path] = []
    for p in entries:
        if p.suffix.lower() not in MASK_FOLDER_SUFFIXES:
            skipped.append(p)
            continue
        if p.stem in found:
            raise data_error(
                f"two files with the stem {p.stem!r}: {found[p.stem].name} and {p.name}; "
                "expected one file per stem, since images and masks pair by stem",
                folder,
            )
        found[p.stem] = p
    return found, skipped


def _decode_error(path: Path, e: Exception, what: str) -> Exception:
    return data_error(
        f"cannot read {what} ({type(e).__name__}: {e}); expected a readable "
        f"{'/'.join(sorted(s.lstrip('.') for s in MASK_FOLDER_SUFFIXES))} file",
        path,
        hint="delete or replace the file",
    )


def _tiff_color(chw: np.ndarray, color: str, path: Path) -> np.ndarray:
    """Apply color (keep, rgb, grayscale) to a TIFF scene (C, H, W); only 8-bit ones convert."""
    bands = chw.shape[0]
    if color == "keep" or (color == "grayscale" and bands == 1) or (color == "rgb" and bands == 3):
        return chw
    if chw.dtype != np.uint8 or bands not in (1, 3, 4):
        raise data_error(
            f"color {color!r} needs an 8-bit image with 1, 3 or 4 bands; found {bands} "
            f"band{'s' if bands > 1 else ''} of {chw.dtype}",
            path,
            hint="use color: keep for multi-band or 16-bit scenes",
        )
    hwc = chw[0] if bands == 1 else chw.transpose(1, 2, 0)
    im = Image.fromarray(np.ascontiguousarray(hwc))
    out = np.asarray(im.convert("RGB" if color == "rgb" else "L"))
    return out.transpose(2, 0, 1) if out.ndim == 3 else out[None]


@contextlib.contextmanager
def _decoded(path: Path, what: str) -> Iterator[Image.Image]:
    """The image file, opened and loaded; any error while it is read is a DataError naming it."""
    try:
        with Image.open(path) as im:
            im.load()
            yield im
    # Pillow's decoders raise many types on bad input: all mean "bad file".
    except Exception as e:
        raise _decode_error(path, e, what) from None


def _read_image(path: Path, color: str) -> tuple[np.ndarray, bool]:
    """One scene as (C, H, W) uint8 or float32, and whether an alpha channel was dropped."""
    dropped_alpha = False
    if path.suffix.lower() in TIFF_SUFFIXES:
        arr = _tiff_color(read_tiff_bands(path, "image"), color, path)
    else:
        with _decoded(path, "image") as im:
            mode = im.mode
            if mode in _WIDE_MODES:
                arr = np.asarray(im)[None]  # 16-bit or float grayscale: one band
            else:
                if color == "keep" and mode not in ("L", "RGB"):
                    has_alpha = "A" in mode or "transparency" in im.info
                    dropped_alpha = has_alpha and mode != "1"
                    im = im.convert("L" if mode in ("1", "LA") else "RGB")
                elif color != "keep":
                    im = im.convert("RGB" if color == "rgb" else "L")
                hwc = np.asarray(im, dtype=np.uint8)
                arr = hwc.transpose(2, 0, 1) if hwc.ndim == 3 else hwc[None]
        if mode in _WIDE_MODES and color == "rgb":
            raise data_error(
                f"color 'rgb' needs an 8-bit image; found a one-band {mode} image",
                path,
                hint="use color: keep or grayscale",
            )
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr), dropped_alpha
    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer) or arr.dtype.kind == "f"):
        raise data_error(f"image has dtype {arr.dtype}; expected integer or float pixels", path)
    out = arr.astype(np.float32)
    bad = int(out.size - np.count_nonzero(np.isfinite(out)))
    if bad:
        raise data_error(
            f"image holds {bad} NaN or infinite values; expected finite numbers",
            path,
            hint="fill no-data pixels with a number, and mark them with the mask's ignore_value",
        )
    return out, dropped_alpha


def _read_mask(path: Path) -> np.ndarray:
    """One mask as an (H, W) integer array (palette PNGs give their indices)."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        arr, _ = read_tiff_array(path, "mask")
        if arr.ndim > 2:
            arr = arr.reshape([d for d in arr.shape if d != 1] or [1])
        if arr.ndim != 2:
            raise data_error(
                f"mask TIFF has shape {tuple(arr.shape)}; expected one band (H, W)",
                path,
                hint=_MASK_HINT,
            )
    else:
        with _decoded(path, "mask") as im:
            mode = im.mode
            if mode in _MASK_MODES:
                # Mode "1" becomes 0/255, like a grayscale {0, 255} mask.
                arr = np.asarray(im.convert("L") if mode == "1" else im)
        if mode not in _MASK_MODES:
            raise data_error(
                f"mask is a {mode} image; expected a single-channel mask "
                "(PNG mode L, P, 1 or I;16)",
                path,
                hint=_MASK_HINT,
            )
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if not np.issubdtype(arr.dtype, np.integer):
        raise data_error(
            f"mask has dtype {arr.dtype}; expected integer class values", path, hint=_MASK_HINT
        )
    return arr


def _read_pair(
    pair: tuple[Path, Path], color: str
) -> tuple[np.ndarray, bool, np.ndarray] | DataError:
    """The image, whether its alpha was dropped, the mask; or the error, so all are listed."""
    try:
        image, dropped_alpha = _read_image(pair[0], color)
        return image, dropped_alpha, _read_mask(pair[1])
    except DataError as e:
        return e


def _size(a: np.ndarray) -> str:
    return f"{a.shape[-1]}x{a.shape[-2]}"


def _check_layout(root: Path, images: str, masks: str, color: str) -> None:
    """The options and the folder layout: root/<images>/ and root/<masks>/ exist."""
    if color not in ("keep", "rgb", "grayscale"):
        raise data_error(f"unknown color {color!r}; expected 'keep', 'rgb' or 'grayscale'")
    if not root.is_dir():
        raise data_error("mask folder not found", root, hint=_LAYOUT_HINT)
    if images == masks:
        raise data_error(f"images and masks both name the subfolder {images!r}", root)
    try:
        subdirs = sorted(
            p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
    except OSError as e:
        raise data_error(f"cannot list mask folder: {e.strerror or e}", root) from None
    for sub in (images, masks):
        if not (root / sub).is_dir():
            raise data_error(
                f"no {sub!r} subfolder{did_you_mean(sub, subdirs)}; "
                f"found {('subfolders ' + plain(subdirs)) if subdirs else 'no subfolders'}",
                root,
                hint=_LAYOUT_HINT,
            )


def _pairs(
    root: Path, images: str, masks: str
) -> tuple[dict[str, Path], dict[str, Path], list[Path]]:
    """Image and mask files by stem (every image with its mask), and the files skipped."""
    image_files, skipped_images = _scan(root / images)
    mask_files, skipped_masks = _scan(root / masks)
    if not image_files:
        raise data_error(
            f"no image files in {images}/ (expected {', '.join(sorted(MASK_FOLDER_SUFFIXES))})",
            root / images,
        )
    for have, other, kind, other_dir in (
        (image_files, mask_files, "image", masks),
        (mask_files, image_files, "mask", images),
    ):
        alone = sorted(set(have) - set(other), key=_natural_key)
        if alone:
            names = [have[s].name for s in alone]
            partner = "a mask" if kind == "image" else "an image"
            raise data_error(
                f"{len(alone)} {kind}{'s' if len(alone) > 1 else ''} without {partner} "
                f"in {other_dir}/: {_few(names)}",
                root,
                hint=_LAYOUT_HINT,
            )
    return image_files, mask_files, skipped_images + skipped_masks


def _check_scene(
    x: np.ndarray,
    arr: np.ndarray,
    mask: np.ndarray,
    pair: tuple[Path, Path],
    names: tuple[str, str],
) -> None:
    """A scene of the first scene's size, bands and dtype; its mask of the scene's size.
    names: the images subfolder and the first scene's name there."""
    (img_path, mask_path), (images, first) = pair, names
    if arr.shape[1:] != x.shape[2:]:
        raise data_error(
            f"scene {images}/{img_path.name} is {_size(arr)} but {first} is "
            f"{_size(x)} (width x height); expected every scene to have one size",
            img_path,
            hint="crop or resize them to one size first",
        )
    if arr.shape[0] != x.shape[1] or arr.dtype != x.dtype:
        raise data_error(
            f"scene {images}/{img_path.name} has {arr.shape[0]} {arr.dtype} band(s) "
            f"but {first} has {x.shape[1]} {x.dtype}; expected the same bands "
            "and bit depth in every scene",
            img_path,
            hint="8-bit images stay uint8, others become float32: convert them to one",
        )
    if mask.shape != arr.shape[1:]:
        raise data_error(
            f"mask is {_size(mask)} but its image {images}/{img_path.name} is "
            f"{_size(arr)} (width x height); expected a mask the size of its image",
            mask_path,
        )


def _decode_pairs(
    pairs: list[tuple[Path, Path]], color: str, images: str
) -> tuple[np.ndarray, list[np.ndarray], int]:
    """x (N, C, H, W), the raw masks, and how many images lost an alpha channel; every
    unreadable file is listed in one error."""
    x: np.ndarray | None = None
    raw_masks: list[np.ndarray] = []
    bad: list[Problem] = []
    alpha = 0
    first = f"{images}/{pairs[0][0].name}"
    # Pillow and zlib release the GIL while decoding, so threads overlap the decoding.
    decoded = threaded_map(partial(_read_pair, color=color), pairs)
    try:
        for i, (pair, read) in enumerate(zip(pairs, decoded)):
            if isinstance(read, DataError):
                bad += read.problems
                continue
            arr, dropped, mask = read
            alpha += dropped
            if bad:  # an earlier file failed: only look for more unreadable ones
                continue
            if x is None:
                x = np.empty((len(pairs), *arr.shape), dtype=arr.dtype)
            _check_scene(x, arr, mask, pair, (images, first))
            x[i] = arr
            raw_masks.append(mask)
    finally:
        decoded.close()  # an error: no more pairs are started
    if bad:
        raise unreadable(bad)
    assert x is not None  # pairs is non-empty
    return x, raw_masks, alpha


def load_mask_folder(
    path: str | Path,
    *,
    images: str = "images",
    masks: str = "masks",
    color: Literal["keep", "rgb", "grayscale"] = "keep",
    classes: Sequence[str] | None = None,
    mask_values: Sequence[int] | None = None,
    ignore_value: int | None = None,
    stream: bool = False,
) -> ArrayData:
    """Image/mask pairs `path/<images>/<stem>.*` + `path/<masks>/<stem>.*`, sorted by stem.

    stream: one pass over the masks learns their values (the classes); x and y are
    `stream.Lazy`s whose `SceneReader` and `MaskReader` decode each scene and mask when read
    (the masks class-mapped then), with the in-memory path's `_read_image` and `_read_mask`.

    Images: 8-bit PNG/JPEG/BMP (color keep/rgb/grayscale) or TIFF with any number of bands
    (uint8 stays uint8, other types become float32 with values unchanged). Masks: one channel,
    mapped to classes by `mask_indices`. x: (N, C, H, W); y: (N, H, W) int64, -1 ignored.
    """
    root = Path(path)
    _check_layout(root, images, masks, color)
    image_files, mask_files, skipped = _pairs(root, images, masks)
    stems = sorted(image_files, key=_natural_key)
    pairs = [(image_files[s], mask_files[s]) for s in stems]
    files = [mask_files[s] for s in stems]
    options = {"classes": classes, "mask_values": mask_values, "ignore_value": ignore_value}
    if stream:
        y, names, mask_notes = _stream_masks(pairs, images, options, root / masks)
        hw = y.sample_shape
        x, alpha = Lazy(SceneReader(tuple(p[0] for p in pairs), color, hw, images)), 0
    else:
        x, raw_masks, alpha = _decode_pairs(pairs, color, images)
        y, names, mask_notes = mask_indices(
            np.stack(raw_masks),
            hw=(x.shape[2], x.shape[3]),
            **options,  # type: ignore[arg-type]
            where=root / masks,
            files=files,
        )
    notes = list(mask_notes)
    if alpha:
        notes.append(f"dropped the alpha channel of {alpha} image{'s' if alpha > 1 else ''}")
    if any(mask_files[s].suffix.lower() in (".jpg", ".jpeg") for s in stems):
        notes.append("some masks are JPEG, whose lossy compression changes values near edges")
    if skipped:
        notes.append(f"skipped {len(skipped)} files that are not images: {named(skipped, root)}")
    return ArrayData(x=x, y=y, classes=names, source=f"mask_folder {root}", notes=tuple(notes))


def _stream_masks(
    pairs: list[tuple[Path, Path]], images: str, options: dict[str, Any], where: Path
) -> tuple[Lazy, tuple[str, ...], tuple[str, ...]]:
    """A streamed folder's masks: one pass (in worker processes) learns their values and pixel
    counts, which give the classes (`mask_map`, mask_indices' own rules); then y is a Lazy whose
    masks are decoded and class-mapped when read. No mask is held whole."""
    hw = tuple(_read_mask(pairs[0][1]).shape)
    reader = MaskReader(tuple(p[1] for p in pairs), hw, images, pairs[0][0].name)
    raw = Lazy(reader)
    counts = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    for part in read_chunks(raw, chunks(raw, LABEL_BYTES), value_counts):
        counts = merge_counts(counts, part)

    def holding(values: Sequence[int]) -> np.ndarray:  # read again only to name a file
        return holding_in(map(reader.read, range(len(reader))), values)

    plan = mask_map(counts, holding, **options, where=where, files=reader.files)
    return raw.mapped(plan), plan.names, plan.notes


@dataclass(frozen=True)
class MaskReader:
    """A mask folder's masks decoded one at a time by `_read_mask` (raw values as int64), each
    checked to have the first mask's size `hw`; `first` names the first scene, for that message."""

    files: tuple[Path, ...]
    hw: tuple[int, ...]
    images: str
    first: str

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> np.ndarray:
        path = listed_file(self.files, i)
        mask, hw = _read_mask(path), self.hw
        if mask.shape != hw:
            raise data_error(
                f"mask is {_size(mask)} but the mask of {self.images}/{self.first} is "
                f"{hw[1]}x{hw[0]} (width x height); expected every scene to have one size",
                path,
                hint="crop or resize them to one size first",
            )
        return mask.astype(np.int64)


@dataclass(frozen=True)
class SceneReader:
    """A mask folder's images decoded one at a time (a streamed source's reader), by the
    in-memory loader's `_read_image`; each checked against its mask's size (`hw`)."""

    files: tuple[Path, ...]
    color: str
    hw: tuple[int, ...]
    images: str

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> np.ndarray:
        path = listed_file(self.files, i)
        arr, _ = _read_image(path, self.color)
        if arr.shape[1:] != self.hw:
            raise data_error(
                f"scene {self.images}/{path.name} is {_size(arr)} but its mask is "
                f"{self.hw[1]}x{self.hw[0]} (width x height); expected a mask the size "
                "of its image",
                path,
            )
        return arr
