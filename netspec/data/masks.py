"""Segmentation masks: per-pixel class indices from mask arrays and from image/mask folders."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from netspec.data._common import data_error, did_you_mean, plain
from netspec.data.arraydata import ArrayData
from netspec.data.tiff import TIFF_SUFFIXES, read_tiff_array, read_tiff_bands

MASK_FOLDER_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
_BINARY_NAMES = ("background", "foreground")
# Beyond this, "values are class indices" is almost surely wrong (e.g. 16-bit ids).
_MAX_CLASSES = 1024
_LAYOUT_HINT = (
    "expected image/mask pairs with the same file stem, e.g. root/images/a.png and root/masks/a.png"
)
_MASK_HINT = "save each mask as a single-channel (grayscale or palette) PNG or TIFF of class values"
_WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_MASK_MODES = frozenset({"L", "P", "1"}) | (_WIDE_MODES - {"F"})


def _few(names: Sequence[object], limit: int = 5) -> str:
    """Up to `limit` items for a message, then how many more there are."""
    shown = plain(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _int_option(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def checked_classes(
    classes: Sequence[str] | None, where: str | Path | None = None
) -> tuple[str, ...] | None:
    """`classes` as a tuple after checking it names at least two distinct classes."""
    if classes is None:
        return None
    if isinstance(classes, str):
        raise data_error(f"classes must be a list of names, got the string {classes!r}", where)
    names = tuple(classes)
    if len(names) < 2:
        raise data_error(
            f"classes has {len(names)} name{'' if len(names) == 1 else 's'} "
            f"({plain(names) or 'none'}); expected at least 2 (e.g. [background, object])",
            where,
        )
    if any(not isinstance(n, str) or not n for n in names):
        raise data_error(f"classes must be non-empty strings, got {list(names)!r}", where)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise data_error(f"classes names {plain(repeated)} more than once; expected distinct names")
    return names


def _checked_mask_values(values: Sequence[int], where: str | Path | None) -> list[int]:
    if isinstance(values, (str, bytes)) or not all(_int_option(v) for v in values):
        raise data_error(f"mask_values must be a list of integers, got {values!r}", where)
    out = [int(v) for v in values]
    if len(out) < 2:
        raise data_error(
            f"mask_values has {len(out)} value(s); expected one value per class, at least 2", where
        )
    repeated = sorted({v for v in out if out.count(v) > 1})
    if repeated:
        raise data_error(
            f"mask_values lists {plain(repeated)} more than once; expected one value per class",
            where,
        )
    return out


def _present_values(y: np.ndarray) -> np.ndarray:
    """The distinct values of an integer or bool array, sorted, as int64."""
    if y.size == 0:
        return np.zeros(0, dtype=np.int64)
    if y.dtype == np.bool_:
        y = y.view(np.uint8)
    lo, hi = int(y.min()), int(y.max())
    # bincount is several times faster than np.unique's sort on large masks.
    if lo >= 0 and hi < 1 << 16:
        return np.flatnonzero(np.bincount(y.ravel().astype(np.intp, copy=False)))
    if hi - lo < 1 << 16:
        return np.flatnonzero(np.bincount(y.ravel().astype(np.int64) - lo)) + lo
    return np.unique(y).astype(np.int64)


def _apply(y: np.ndarray, values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Replace each raw value values[i] in y by targets[i] (every value of y is in `values`)."""
    if y.dtype == np.bool_:
        y = y.view(np.uint8)
    lo, hi = int(values[0]), int(values[-1])
    if lo >= 0 and hi < 1 << 16:
        lut = np.full(hi + 1, -1, dtype=np.int64)
        lut[values] = targets
        return lut[y]
    if hi - lo < 1 << 16:
        lut = np.full(hi - lo + 1, -1, dtype=np.int64)
        lut[values - lo] = targets
        return lut[y.astype(np.int64) - lo]
    return targets[np.searchsorted(values, y)]


def _check_hw(hw: tuple[int, int] | None, got: tuple[int, ...], where: str | Path | None) -> None:
    if hw is not None and tuple(got) != tuple(hw):
        raise data_error(
            f"masks are {got[0]}x{got[1]} (height x width) but the images are "
            f"{hw[0]}x{hw[1]}; expected masks the size of their images",
            where,
        )


def _one_hot(
    y: np.ndarray, names: tuple[str, ...] | None, where: str | Path | None
) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """(N, K, H, W) masks with one 0/1 channel per class -> (N, H, W) indices."""
    k = y.shape[1]
    if y.dtype == np.bool_:
        on = y
    elif np.issubdtype(y.dtype, np.integer) or y.dtype.kind == "f":
        on = y != 0
        bad = on & (y != 1)  # NaN lands here too: it is neither 0 nor 1
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            raise data_error(
                f"y has shape {tuple(y.shape)}, one channel per class, but holds {n_bad} values "
                f"other than 0 and 1 (e.g. {y[bad][0].item()}); expected 0/1 class channels",
                where,
                hint="threshold soft masks first, or store (N, H, W) class values instead",
            )
    else:
        raise data_error(f"masks have dtype {y.dtype}; expected integers, booleans or 0/1", where)
    if names is not None and len(names) != k:
        raise data_error(
            f"classes has {len(names)} names ({plain(names)}) but y has {k} class channels "
            f"(shape {tuple(y.shape)}); expected one name per channel",
            where,
        )
    count = on.sum(axis=1, dtype=np.int32)
    multi = count > 1
    n_multi = int(np.count_nonzero(multi))
    if n_multi:
        n, row, col = (int(i) for i in np.argwhere(multi)[0])
        raise data_error(
            f"{n_multi} mask pixels have two or more class channels set (first: sample {n}, "
            f"row {row}, column {col}); expected at most one 1 per pixel across the {k} channels",
            where,
        )
    index = on.argmax(axis=1).astype(np.int64)
    unset = count == 0
    n_unset = int(np.count_nonzero(unset))
    notes: tuple[str, ...] = ()
    if n_unset:
        index[unset] = -1
        notes = (f"{n_unset} mask pixels have no class channel set; they are ignored",)
    return index, names or tuple(str(i) for i in range(k)), notes


def mask_indices(
    y: np.ndarray,
    *,
    hw: tuple[int, int] | None = None,
    classes: Sequence[str] | None = None,
    mask_values: Sequence[int] | None = None,
    ignore_value: int | None = None,
    where: str | Path | None = None,
) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Segmentation masks -> (int64 (N, H, W) class indices with -1 ignored, class names, notes).

    y is (N, H, W) or (N, 1, H, W) integer/bool mask values, or (N, K, H, W) with one 0/1
    channel per class. Values map to classes by `mask_values` (value i is class i) when given;
    otherwise {0, 255} masks are background/foreground and other masks hold class indices.
    `ignore_value` is a raw mask value whose pixels become -1. hw is the images' (H, W).
    """
    y = np.asarray(y)
    names = checked_classes(classes, where)
    if ignore_value is not None and not _int_option(ignore_value):
        raise data_error(f"ignore_value must be an integer mask value, got {ignore_value!r}", where)
    if y.ndim == 4 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 4:
        _check_hw(hw, y.shape[2:], where)
        if mask_values is not None or ignore_value is not None:
            raise data_error(
                f"y has shape {tuple(y.shape)}, one 0/1 channel per class; mask_values and "
                "ignore_value apply only to masks of class values (N, H, W)",
                where,
                hint="pixels with no channel set are already ignored",
            )
        return _one_hot(y, names, where)
    if y.ndim != 3:
        raise data_error(
            f"masks have shape {tuple(y.shape)}; expected (N, H, W) class values or "
            "(N, K, H, W) with one 0/1 channel per class",
            where,
        )
    _check_hw(hw, y.shape[1:], where)
    if not (y.dtype == np.bool_ or np.issubdtype(y.dtype, np.integer)):
        raise data_error(
            f"masks have dtype {y.dtype}; expected integer or boolean class values",
            where,
            hint="convert them, e.g. y.astype(np.int64), after checking they hold whole numbers",
        )

    values = _present_values(y)
    ignored = values == ignore_value if ignore_value is not None else np.zeros(len(values), bool)
    kept = values[~ignored]
    if values.size and not kept.size:
        raise data_error(f"every mask pixel equals ignore_value {ignore_value}", where)
    notes: list[str] = []
    if mask_values is not None:
        order = _checked_mask_values(mask_values, where)
        unknown = [int(v) for v in kept if int(v) not in order]
        if unknown:
            also = f" or ignore_value {ignore_value}" if ignore_value is not None else ""
            raise data_error(
                f"masks hold value{'s' if len(unknown) > 1 else ''} {_few(unknown)} not in "
                f"mask_values ({plain(order)}){also}; found values {_few(values.tolist(), 12)}",
                where,
                hint="list every class's value in mask_values (in class order), or set "
                "ignore_value for a no-data value",
            )
        if names is not None and len(names) != len(order):
            raise data_error(
                f"classes has {len(names)} names ({plain(names)}) but mask_values has "
                f"{len(order)} values ({plain(order)}); expected one name per value",
                where,
            )
        targets = np.array([order.index(int(v)) for v in kept], dtype=np.int64)
        out_names = names or tuple(str(v) for v in order)
    elif y.dtype == np.bool_ or (
        (names is None or len(names) == 2) and 255 in kept and set(kept.tolist()) <= {0, 255}
    ):
        targets = (kept > 0).astype(np.int64)  # 0 background, 255 (or True) foreground
        out_names = names or _BINARY_NAMES
        if y.dtype != np.bool_:
            notes.append("mask values 0 and 255 read as classes 0 and 1")
    else:
        if kept.size and kept[0] < 0:
            raise data_error(
                f"masks hold the negative value {int(kept[0])}; expected class indices 0 or more",
                where,
                hint="set ignore_value for a no-data value, or mask_values to map values to classes",
            )
        top = int(kept[-1]) if kept.size else 0
        if names is not None:
            if top >= len(names):
                too_big = [int(v) for v in kept if v >= len(names)]
                raise data_error(
                    f"masks hold class index {_few(too_big)} but classes names only "
                    f"{len(names)} ({plain(names)}); expected indices 0..{len(names) - 1}",
                    where,
                    hint="give one name per class, or mask_values to map mask values to classes",
                )
            out_names = names
        else:
            if top + 1 > _MAX_CLASSES:
                raise data_error(
                    f"masks hold the value {top}; read as class indices that would be "
                    f"{top + 1} classes (found values {_few(kept.tolist(), 12)})",
                    where,
                    hint="give mask_values, the mask value of each class in class order",
                )
            if top < 1:
                raise data_error(
                    f"masks hold only the value {top}; expected at least two classes",
                    where,
                    hint="give classes (e.g. [background, object]) when no mask has foreground",
                )
            out_names = tuple(str(i) for i in range(top + 1))
            absent = sorted(set(range(top + 1)) - set(kept.tolist()))
            if absent:
                notes.append(
                    f"class indices {_few(absent)} never occur in the masks "
                    "(mask_values maps sparse values to classes)"
                )
        targets = kept
    full = np.full(len(values), -1, dtype=np.int64)
    full[~ignored] = targets
    index = _apply(y, values, full) if values.size else np.zeros(y.shape, dtype=np.int64)
    if ignored.any():
        n_ignored = int(np.count_nonzero(index < 0))
        notes.append(f"{n_ignored} mask pixels equal ignore_value {ignore_value}; they are ignored")
    return index, out_names, tuple(notes)


# --- image/mask folders ----------------------------------------------------------------------


def _natural_key(stem: str) -> tuple[list[object], str]:
    # Digit runs compare as numbers so "2" sorts before "10"; split() alternates text and digits.
    parts = re.split(r"(\d+)", stem)
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)], stem


def _scan(folder: Path) -> tuple[dict[str, Path], int]:
    """stem -> file for the image files directly in `folder`, and how many other files it holds."""
    try:
        entries = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as e:
        raise data_error(f"cannot list folder: {e.strerror or e}", folder) from None
    found: dict[str, Path] = {}
    skipped = 0
    for p in entries:
        if p.suffix.lower() not in MASK_FOLDER_SUFFIXES:
            skipped += 1
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


def _read_image(path: Path, color: str) -> tuple[np.ndarray, bool]:
    """One scene as (C, H, W) uint8 or float32, and whether an alpha channel was dropped."""
    dropped_alpha = False
    if path.suffix.lower() in TIFF_SUFFIXES:
        arr = _tiff_color(read_tiff_bands(path, "image"), color, path)
    else:
        try:
            with Image.open(path) as im:
                im.load()
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
        # Pillow's decoders raise many types on bad input: all mean "bad file".
        except Exception as e:
            raise _decode_error(path, e, "image") from None
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
        try:
            with Image.open(path) as im:
                im.load()
                mode = im.mode
                if mode in _MASK_MODES:
                    # Mode "1" becomes 0/255, like a grayscale {0, 255} mask.
                    arr = np.asarray(im.convert("L") if mode == "1" else im)
        except Exception as e:
            raise _decode_error(path, e, "mask") from None
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


def _read_pair(pair: tuple[Path, Path], color: str) -> tuple[np.ndarray, bool, np.ndarray]:
    image, dropped_alpha = _read_image(pair[0], color)
    return image, dropped_alpha, _read_mask(pair[1])


def _size(a: np.ndarray) -> str:
    return f"{a.shape[-1]}x{a.shape[-2]}"


def load_mask_folder(
    path: str | Path,
    *,
    images: str = "images",
    masks: str = "masks",
    color: Literal["keep", "rgb", "grayscale"] = "keep",
    classes: Sequence[str] | None = None,
    mask_values: Sequence[int] | None = None,
    ignore_value: int | None = None,
) -> ArrayData:
    """Image/mask pairs `path/<images>/<stem>.*` + `path/<masks>/<stem>.*`, sorted by stem.

    Images: 8-bit PNG/JPEG/BMP (color keep/rgb/grayscale) or TIFF with any number of bands
    (uint8 stays uint8, other types become float32 with values unchanged). Masks: one channel,
    mapped to classes by `mask_indices`. x: (N, C, H, W); y: (N, H, W) int64, -1 ignored.
    """
    root = Path(path)
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

    stems = sorted(image_files, key=_natural_key)
    pairs = [(image_files[s], mask_files[s]) for s in stems]
    x: np.ndarray | None = None
    raw_masks: list[np.ndarray] = []
    alpha = 0
    first_name = f"{images}/{pairs[0][0].name}"
    # Pillow and zlib release the GIL while decoding, so threads overlap the decoding.
    pool = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1, len(pairs))))
    try:
        decoded = pool.map(partial(_read_pair, color=color), pairs)
        for i, ((img_path, mask_path), (arr, dropped, mask)) in enumerate(zip(pairs, decoded)):
            alpha += dropped
            if x is None:
                x = np.empty((len(pairs), *arr.shape), dtype=arr.dtype)
            elif arr.shape[1:] != x.shape[2:]:
                raise data_error(
                    f"scene {images}/{img_path.name} is {_size(arr)} but {first_name} is "
                    f"{_size(x)} (width x height); expected every scene to have one size",
                    img_path,
                    hint="crop or resize them to one size first",
                )
            elif arr.shape[0] != x.shape[1] or arr.dtype != x.dtype:
                raise data_error(
                    f"scene {images}/{img_path.name} has {arr.shape[0]} {arr.dtype} band(s) "
                    f"but {first_name} has {x.shape[1]} {x.dtype}; expected the same bands "
                    "and bit depth in every scene",
                    img_path,
                    hint="8-bit images stay uint8, others become float32: convert them to one",
                )
            x[i] = arr
            if mask.shape != arr.shape[1:]:
                raise data_error(
                    f"mask is {_size(mask)} but its image {images}/{img_path.name} is "
                    f"{_size(arr)} (width x height); expected a mask the size of its image",
                    mask_path,
                )
            raw_masks.append(mask)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    assert x is not None  # stems is non-empty
    y, names, mask_notes = mask_indices(
        np.stack(raw_masks),
        hw=(x.shape[2], x.shape[3]),
        classes=classes,
        mask_values=mask_values,
        ignore_value=ignore_value,
        where=root / masks,
    )
    notes = list(mask_notes)
    if alpha:
        notes.append(f"dropped the alpha channel of {alpha} image{'s' if alpha > 1 else ''}")
    if any(mask_files[s].suffix.lower() in (".jpg", ".jpeg") for s in stems):
        notes.append("some masks are JPEG, whose lossy compression changes values near edges")
    if skipped_images + skipped_masks:
        notes.append(f"skipped {skipped_images + skipped_masks} files that are not images")
    return ArrayData(x=x, y=y, classes=names, source=f"mask_folder {root}", notes=tuple(notes))
