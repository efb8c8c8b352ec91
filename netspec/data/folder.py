"""Image folders: one subfolder per class, decoded and optionally resized with Pillow."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps

from netspec.data._common import data_error, did_you_mean, named, plain, unreadable
from netspec.data.arraydata import ArrayData
from netspec.data.parallel import threaded_map
from netspec.errors import DataError, Problem

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}
)
# Images a thread decodes at a time (tens of ms of work: a small tail when the last ones
# finish), and the fewest worth starting threads for.
DECODE_CHUNK = 16
POOL_MIN = 64
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


# Pillow's 16-bit grayscale modes (PNG and TIFF); a 16-bit PNG may also open as 32-bit "I".
_SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_ORIENTATION = 0x0112  # the EXIF tag of how the stored pixels are to be turned for display
SIXTEEN_TO_8 = 255 / 65535  # a 16-bit value v is v * 255 / 65535: the scale of 8-bit pixels


def bit_depth(im: Image.Image) -> int:
    """8 or 16: the bits per value of an image Pillow opened; ValueError for 32-bit images."""
    if im.mode in _SIXTEEN_BIT or (im.mode == "I" and im.format == "PNG"):
        return 16
    if im.mode in ("I", "F"):
        kind = "integer" if im.mode == "I" else "float"
        raise ValueError(
            f"a 32-bit {kind} image; netspec reads 8- and 16-bit images (save it as a 16-bit "
            "PNG or TIFF, or its values as a .npz array)"
        )
    return 8


def image_pixels(
    im: Image.Image, mode: str, size: tuple[int, int] | None, crop: str | None
) -> np.ndarray:
    """An opened image as (H, W, C) or (H, W) pixels in `mode` (RGB or L), fitted to size.

    8-bit images give uint8. 16-bit grayscale images (microscopy, scans) keep their range:
    float32 scaled by the bit depth to the 8-bit scale (v * 255 / 65535), where Pillow's
    convert("L") would clip every value above 255. An EXIF orientation (phone photos stored
    sideways) is applied first, as every image viewer does. `netspec predict` decodes with this too.
    """
    if im.getexif().get(_ORIENTATION, 1) != 1:
        im = ImageOps.exif_transpose(im)
    if bit_depth(im) == 8:
        im = im.convert(mode)
        if size is not None:
            im = fit_image(im, size, crop)
        return np.asarray(im, dtype=np.uint8)
    plane = Image.fromarray(np.asarray(im, dtype=np.float32) * np.float32(SIXTEEN_TO_8))
    if size is not None:
        plane = fit_image(plane, size, crop)  # mode F: resized as floats
    values = np.asarray(plane, dtype=np.float32)
    return np.repeat(values[..., None], 3, axis=2) if mode == "RGB" else values


def _decode(
    path: Path, mode: str, size: tuple[int, int] | None, crop: str | None
) -> tuple[np.ndarray, int]:
    """One image as (H, W, C) or (H, W) pixels (image_pixels) and its bit depth; DataError
    naming the file if unreadable."""
    try:
        with Image.open(path) as im:
            im.load()
            return image_pixels(im, mode, size, crop), bit_depth(im)
    # Pillow's decoders raise many types on bad input (UnidentifiedImageError/OSError,
    # SyntaxError, struct.error, ValueError, DecompressionBombError, ...): all mean "bad file".
    except Exception as e:
        raise data_error(
            f"cannot decode image ({type(e).__name__}: {e}); expected a readable "
            f"{'/'.join(sorted(s.lstrip('.') for s in IMAGE_SUFFIXES))} file",
            path,
            hint="delete or replace the file",
        ) from None


def _checked_size(
    size: tuple[int, int] | None, color: str, crop: str | None
) -> tuple[int, int] | None:
    """The options checked: a known color and crop, size (height, width) positive integers."""
    if color not in _MODES:
        raise data_error(f"unknown color {color!r}; expected 'rgb' or 'grayscale'")
    if crop not in (None, "center"):
        raise data_error(f"unknown crop {crop!r}; expected 'center' or none")
    if size is None:
        if crop is not None:
            raise data_error("crop='center' needs a size (height, width) to crop to")
        return None
    if not (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        and min(size) > 0
    ):
        raise data_error(f"size must be (height, width) positive integers, got {size!r}")
    return (int(size[0]), int(size[1]))


def _image_files(
    class_dirs: list[tuple[str, Path]],
) -> tuple[list[Path], list[int], list[Path]]:
    """Every class folder's image files (sorted), their labels, and the other files skipped."""
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
    return files, labels, skipped


def _decode_all(
    files: list[Path],
    mode: str,
    size: tuple[int, int] | None,
    crop: str | None,
    workers: int | None = None,
) -> tuple[list[np.ndarray], set[int]]:
    """Every file decoded, and the bit depths seen; all unreadable files refused in one error.

    Many files are decoded DECODE_CHUNK at a time by `workers` threads (threaded_map; default:
    every core, while the run waits), in order: the same pixels as one thread decoding them all.
    """
    parts = [files[s : s + DECODE_CHUNK] for s in range(0, len(files), DECODE_CHUNK)]
    if len(files) < POOL_MIN:  # starting the threads would cost more than they save
        workers = 1
    decoded: list[np.ndarray] = []
    depths: set[int] = set()
    bad: list[Problem] = []
    some = partial(_decode_some, mode=mode, size=size, crop=crop)
    for pixels, seen, problems in threaded_map(some, parts, workers):
        decoded += pixels
        depths |= seen
        bad += problems
    if bad:
        raise unreadable(bad)
    return decoded, depths


def _decode_some(
    files: list[Path], mode: str, size: tuple[int, int] | None, crop: str | None
) -> tuple[list[np.ndarray], set[int], list[Problem]]:
    decoded: list[np.ndarray] = []
    depths: set[int] = set()
    bad: list[Problem] = []
    for path in files:
        try:
            pixels, depth = _decode(path, mode, size, crop)
            decoded.append(pixels)
            depths.add(depth)
        except DataError as e:
            bad += e.problems
    return decoded, depths, bad


def _stack(
    files: list[Path], decoded: list[np.ndarray], root: Path, channels: int, dtype: type
) -> np.ndarray:
    """(N, C, H, W) of the decoded images; the first fixes (H, W), others must share it."""
    first = decoded[0]
    x = np.empty((len(files), channels, first.shape[0], first.shape[1]), dtype=dtype)
    for i, (path, arr) in enumerate(zip(files, decoded)):
        if arr.shape[:2] != x.shape[2:]:
            raise data_error(
                f"image is {arr.shape[1]}x{arr.shape[0]} (width x height) but "
                f"{files[0].relative_to(root)} is {x.shape[3]}x{x.shape[2]}; "
                "all images must have the same size",
                path,
                hint="give a size (height, width) to resize every image",
            )
        x[i] = channels_first(arr)
    return x


def channels_first(pixels: np.ndarray) -> np.ndarray:
    """Decoded pixels (H, W, C), or (H, W) for grayscale, as one sample (C, H, W)."""
    return pixels.transpose(2, 0, 1) if pixels.ndim == 3 else pixels[None]


def listed_file(files: tuple[Path, ...], i: int) -> Path:
    """The i-th file of a streamed folder's listing, still there (a DataError if it was deleted
    after the listing: a streamed run reads its files long after it listed them)."""
    path = files[i]
    if not path.is_file():
        raise data_error(
            "image file disappeared after the folder was listed",
            path,
            hint="restore it, or start the run again (--resume continues from the last epoch)",
        )
    return path


@dataclass(frozen=True)
class FolderReader:
    """An image folder's files decoded one at a time (a streamed source's reader): the same
    `_decode` and `channels_first` as the in-memory loader, so the pixels are the same."""

    files: tuple[Path, ...]
    mode: str
    size: tuple[int, int] | None
    crop: str | None

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> np.ndarray:
        path = listed_file(self.files, i)
        return np.ascontiguousarray(
            channels_first(_decode(path, self.mode, self.size, self.crop)[0])
        )


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
    x: (N, C, H, W) uint8 with C = 3 (rgb) or 1 (grayscale), float32 on the same 0..255 scale
    when any image is 16-bit (image_pixels); y: (N,) int64.
    """
    return list_image_folder(root, size, color, classes, crop).load()


@dataclass(frozen=True)
class FolderListing:
    """An image folder listed, nothing decoded: its files' reader, labels and class names."""

    root: Path
    reader: FolderReader
    labels: np.ndarray
    classes: tuple[str, ...]
    skipped: tuple[Path, ...]

    def subset(self, idx: np.ndarray) -> FolderListing:
        """The listing of the files at `idx` only (train.data.limit: the others are never read)."""
        files = tuple(self.reader.files[i] for i in idx)
        return replace(self, reader=replace(self.reader, files=files), labels=self.labels[idx])

    def load(self, workers: int | None = None) -> ArrayData:
        """Every image decoded into one array (N, C, H, W), by `workers` threads (default:
        every core; _decode_all)."""
        r = self.reader
        files = list(r.files)
        # Every file is decoded before any is refused, so one run lists all the corrupt ones.
        decoded, depths = _decode_all(files, r.mode, r.size, r.crop, workers)
        channels = 3 if r.mode == "RGB" else 1
        x = _stack(files, decoded, self.root, channels, np.float32 if 16 in depths else np.uint8)
        return self.data(x, max(depths))

    def data(self, x: Any, depth: int, notes: tuple[str, ...] = ()) -> ArrayData:
        """The folder's ArrayData with x: decoded (N, C, H, W) or a streamed stand-in."""
        size, k = self.reader.size, len(self.classes)
        if self.skipped:
            skipped = f"skipped {len(self.skipped)} non-image files: "
            notes = (skipped + named(list(self.skipped), self.root), *notes)
        return ArrayData(
            x=x,
            y=self.labels,
            classes=self.classes,
            source=f"image folder {self.root} ({k} class{'es' if k != 1 else ''}"
            + (f", resized to {size[0]}x{size[1]}" if size else "")
            + (", 16-bit images scaled to 0..255" if depth == 16 else "")
            + ")",
            notes=notes,
            bit_depth=depth,
        )


def list_image_folder(
    root: str | Path, size: Any, color: str, classes: list[str] | None, crop: str | None
) -> FolderListing:
    """The options checked and the folder listed (load_image_folder's first half)."""
    root = Path(root)
    size = _checked_size(size, color, crop)
    mode, _ = _MODES[color]
    class_dirs = _class_dirs(root, classes)
    files, labels, skipped = _image_files(class_dirs)
    return FolderListing(
        root,
        FolderReader(tuple(files), mode, size, crop),
        np.asarray(labels, dtype=np.int64),
        tuple(name for name, _ in class_dirs),
        tuple(skipped),
    )
