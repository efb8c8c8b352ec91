"""Image folders: one subfolder per class, decoded and optionally resized with Pillow."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from netspec.data._common import data_error, did_you_mean, named, plain, unreadable
from netspec.data.arraydata import ArrayData
from netspec.errors import DataError, Problem

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}
)
_MODES = {"rgb": ("RGB", 3), "grayscale": ("L", 1)}
_LAYOUT_HINT = "expected one subfolder per class, e.g. root/cat/001.jpg, root/dog/002.jpg"


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def folder_with_classes(root: Path, depth: int = 3) -> Path | None:
    """The first folder below root (breadth first) holding at least 2 subfolders: the classes."""
    level = _subdirs(root)
    for _ in range(depth):
        for folder in level:
            if len(_subdirs(folder)) >= 2:
                return folder
        level = [sub for folder in level for sub in _subdirs(folder)]
    return None


def _class_dirs(root: Path, classes: list[str] | None) -> list[tuple[str, Path]]:
    if not root.is_dir():
        raise data_error("image folder not found", root, hint=_LAYOUT_HINT)
    try:
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        raise data_error(f"cannot list image folder: {e.strerror or e}", root) from None
    if not found:
        raise data_error("image folder has no class subfolders", root, hint=_LAYOUT_HINT)
    if classes is None:
        return [(name, root / name) for name in found]
    if len(set(classes)) != len(classes) or not classes:
        raise data_error(f"classes must be a non-empty list of distinct names, got {classes}")
    for name in classes:
        if name not in found:
            raise data_error(
                f"class folder {name!r} not found{did_you_mean(name, found)}; "
                f"available: {plain(found)}",
                root,
            )
    return [(name, root / name) for name in classes]


def _center_crop_box(w: int, h: int, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """The largest centred box with the target aspect ratio out_w/out_h."""
    if w * out_h > h * out_w:  # too wide: trim left and right
        new_w = max(1, round(h * out_w / out_h))
        left = (w - new_w) // 2
        return (left, 0, left + new_w, h)
    new_h = max(1, round(w * out_h / out_w))
    top = (h - new_h) // 2
    return (0, top, w, top + new_h)


def fit_image(im: Image.Image, size: tuple[int, int], crop: str | None) -> Image.Image:
    """The loader's resize: optionally center-crop to the target aspect, then bilinear to (h, w).

    `netspec predict` applies the same function to new images (recorded as `image_size`).
    """
    out_h, out_w = size
    if crop == "center":
        im = im.crop(_center_crop_box(im.width, im.height, out_h, out_w))
    if im.size != (out_w, out_h):
        im = im.resize((out_w, out_h), Image.Resampling.BILINEAR)
    return im


def _decode(path: Path, mode: str, size: tuple[int, int] | None, crop: str | None) -> np.ndarray:
    """One image as an (H, W, C) or (H, W) uint8 array; DataError naming the file if unreadable."""
    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert(mode)
            if size is not None:
                im = fit_image(im, size, crop)
            return np.asarray(im, dtype=np.uint8)
    # Pillow's decoders raise many types on bad input (UnidentifiedImageError/OSError,
    # SyntaxError, struct.error, ValueError, DecompressionBombError, ...): all mean "bad file".
    except Exception as e:
        raise data_error(
            f"cannot decode image ({type(e).__name__}: {e}); expected a readable "
            f"{'/'.join(sorted(s.lstrip('.') for s in IMAGE_SUFFIXES))} file",
            path,
            hint="delete or replace the file",
        ) from None


def load_image_folder(
    root: str | Path,
    *,
    size: tuple[int, int] | None = None,
    color: Literal["rgb", "grayscale"] = "rgb",
    classes: list[str] | None = None,
    crop: Literal["center"] | None = None,
) -> ArrayData:
    """Images under root/<class>/..., classes sorted by folder name unless `classes` is given.

    size is (height, width); with crop="center" each image is first cropped to that aspect
    ratio so nothing is stretched. Without size all images must already share one size.
    x: (N, C, H, W) uint8 with C = 3 (rgb) or 1 (grayscale); y: (N,) int64.
    """
    root = Path(root)
    if color not in _MODES:
        raise data_error(f"unknown color {color!r}; expected 'rgb' or 'grayscale'")
    if crop not in (None, "center"):
        raise data_error(f"unknown crop {crop!r}; expected 'center' or none")
    if size is not None:
        if not (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
            and min(size) > 0
        ):
            raise data_error(f"size must be (height, width) positive integers, got {size!r}")
        size = (int(size[0]), int(size[1]))
    elif crop is not None:
        raise data_error("crop='center' needs a size (height, width) to crop to")
    mode, channels = _MODES[color]

    class_dirs = _class_dirs(root, classes)
    files: list[Path] = []
    labels: list[int] = []
    skipped: list[Path] = []
    for index, (name, folder) in enumerate(class_dirs):
        # Hidden entries (.DS_Store, .ipynb_checkpoints/) are tool litter, not samples.
        entries = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )
        images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [p for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES]
        if not images:
            raise data_error(
                f"class folder {name!r} holds no image files "
                f"(expected {', '.join(sorted(IMAGE_SUFFIXES))})",
                folder,
            )
        files += images
        labels += [index] * len(images)

    # Every file is decoded before any is refused, so one run lists all the corrupt ones.
    decoded: list[np.ndarray] = []
    bad: list[Problem] = []
    for path in files:
        try:
            decoded.append(_decode(path, mode, size, crop))
        except DataError as e:
            bad += e.problems
    if bad:
        raise unreadable(bad)
    # The first image fixes (H, W) when no size was asked for.
    first = decoded[0]
    x = np.empty((len(files), channels, first.shape[0], first.shape[1]), dtype=np.uint8)
    for i, (path, arr) in enumerate(zip(files, decoded)):
        if arr.shape[:2] != x.shape[2:]:
            raise data_error(
                f"image is {arr.shape[1]}x{arr.shape[0]} (width x height) but "
                f"{files[0].relative_to(root)} is {x.shape[3]}x{x.shape[2]}; "
                "all images must have the same size",
                path,
                hint="give a size (height, width) to resize every image",
            )
        # (H, W, C) -> (C, H, W); grayscale arrays come back as (H, W).
        x[i] = arr.transpose(2, 0, 1) if arr.ndim == 3 else arr[None]
    names = [name for name, _ in class_dirs]
    notes = (f"skipped {len(skipped)} non-image files: {named(skipped, root)}",) if skipped else ()
    return ArrayData(
        x=x,
        y=np.asarray(labels, dtype=np.int64),
        classes=tuple(names),
        source=f"image folder {root} ({len(names)} class{'es' if len(names) != 1 else ''}"
        + (f", resized to {size[0]}x{size[1]}" if size else "")
        + ")",
        notes=notes,
    )
