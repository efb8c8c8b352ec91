"""Predict's inputs as raw samples: image files, .npy arrays, CSV rows, and scenes of any size.

Over 400 lines: every kind of input becomes the same Sample (or a Failed naming it) here, through
one finite-values gate, so that no reader can skip a check the others make.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netspec.data.arrays import check_npy_header
from netspec.data.preprocess import CropError, geometry
from netspec.data.tiff import TIFF_SUFFIXES, read_tiff_bands
from netspec.errors import NetspecError, first_line

from .errors import PredictError, error, fits, shape, size
from .model import ModelInfo, scene_bands
from .rows import csv_rows
from .texts import Text, TextReader, text_samples

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
_SUPPORTED = "images, .npy or .csv"

# One input: a file, or (from the Python API) an array of raw values, one sample or a batch,
# or (for a text model) a text.
Input = Path | np.ndarray | Text


@dataclass(frozen=True)
class Sample:
    name: str  # how the input is shown: `digit.png`, `x.npy[3]`, `table.csv:2`
    stem: str  # for file names derived from it (masks)
    x: np.ndarray  # the raw sample, float32, shape = raw_shape (dynamic dims: its own)


@dataclass(frozen=True)
class Failed:
    """An input (a file, or a row of a CSV file) that could not be read; the others go on."""

    name: str
    error: NetspecError


Note = Callable[[str], None]  # says something once to the user (stderr), never into results


def expand_inputs(paths: Sequence[Input]) -> list[Input]:
    """The inputs as files: a folder gives its input files, a glob the input files it matches.

    Both sorted by name and limited to the types predict reads (INPUT_SUFFIXES), so a folder's
    README or a stray .txt is skipped. A glob is expanded here too, so a quoted `'scans/*.png'`
    works where the shell did not expand it. A folder or glob that gives no file stays as it
    is: reading it says why (check_input).
    """
    if not paths:
        raise error("no inputs: give image files, .npy arrays, .csv files or folders of them")
    files: list[Input] = []
    for path in paths:
        if isinstance(path, (np.ndarray, Text)):  # an array or a text: as it is
            files.append(path)
            continue
        if path.is_dir():
            found = [p for p in path.iterdir() if p.is_file() and _readable(p)]
        elif not path.exists() and glob.has_magic(str(path)):
            found = [p for p in map(Path, glob.glob(str(path), recursive=True)) if p.is_file()]
            found = [p for p in found if _readable(p)]
        else:
            found = []
        files.extend(sorted(found) or [path])
    return files


def _readable(path: Path) -> bool:
    return path.suffix.lower() in (*IMAGE_SUFFIXES, ".npy", ".csv")


def check_input(path: Path) -> str:
    """The input's kind (image, npy, csv); an error if it is missing or not a readable file."""
    if path.is_dir():
        raise error(f"a folder with no input files ({_SUPPORTED})", path)
    if not path.exists() and glob.has_magic(str(path)):
        raise error(f"no input files ({_SUPPORTED}) match this pattern", path)
    kind = input_kind(path)
    if not path.exists():
        raise error(f"no such {kind} file", path)
    if not path.is_file():
        raise error(f"not a file (expected {'an' if kind == 'image' else 'a'} {kind} file)", path)
    return kind


def input_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in (".npy", ".csv"):
        return suffix[1:]
    kinds = ", ".join(IMAGE_SUFFIXES)
    raise error(
        f"unsupported input file type '{path.suffix or path.name}'; expected an image "
        f"({kinds}), a .npy array or a .csv file",
        path,
    )


def array_name(k: int) -> str:
    """How the k-th input is named when it is an array: `inputs[k]` (its samples `inputs[k][i]`)."""
    return f"inputs[{k}]"


def finite(samples: Iterable[Sample | Failed]) -> Iterator[Sample | Failed]:
    """The samples, each holding a NaN or an infinity turned into a Failed naming it.

    A non-finite input gives a non-finite score (printed as `NaN`, which is not JSON) or a
    confident wrong class: never a result. Every reader's samples pass through here.
    """
    for sample in samples:
        if isinstance(sample, Sample) and not np.isfinite(sample.x).all():
            nan = int(np.isnan(sample.x).sum())
            inf = int(sample.x.size - np.count_nonzero(np.isfinite(sample.x))) - nan
            what = " and ".join(f"{n} {word}" for n, word in ((nan, "NaN"), (inf, "infinite")) if n)
            at = tuple(int(i) for i in np.argwhere(~np.isfinite(sample.x))[0])
            yield Failed(
                sample.name,
                error(
                    f"{what} value{'s' if nan + inf > 1 else ''} (the first at "
                    f"index {at}); the model needs finite numbers",
                    sample.name,
                    hint="fill missing values (as training did) or leave this input out",
                ),
            )
        else:
            yield sample


def read_inputs(paths: Iterable[Input], info: ModelInfo, note: Note) -> Iterator[Sample | Failed]:
    """The raw samples of every input (file or array), in order; a Failed for each that is not
    (unreadable, or holding NaN or infinite values)."""
    return finite(_read_inputs(paths, info, note))


def _read_inputs(paths: Iterable[Input], info: ModelInfo, note: Note) -> Iterator[Sample | Failed]:
    resized = _Once(note)
    if info.tokenizer is not None:
        yield from _read_texts(paths, info, resized)
        return
    for k, path in enumerate(paths):
        try:
            if isinstance(path, np.ndarray):
                name = array_name(k)
                check_numeric(path, name)
                yield from array_samples(path, name, f"inputs_{k}", info, name)
                continue
            kind = check_input(path)
            if kind == "image":
                yield Sample(str(path), path.stem, read_image(path, info, resized))
            elif kind == "npy":
                yield from read_npy(path, info)
            else:
                yield from read_csv(path, info)
        except NetspecError as err:
            yield Failed(array_name(k) if isinstance(path, np.ndarray) else str(path), err)


def _read_texts(paths: Iterable[Input], info: ModelInfo, note: Note) -> Iterator[Sample | Failed]:
    """A text model's inputs: texts, .txt and .csv files (predict/texts.py)."""
    assert info.tokenizer is not None
    reader = TextReader(info.tokenizer, note)
    column = info.table.columns[0][0] if info.table and info.table.columns else None
    for k, item in enumerate(paths):
        name = (
            array_name(k)
            if isinstance(item, np.ndarray)
            else (item.name if isinstance(item, Text) else str(item))
        )
        try:
            if isinstance(item, np.ndarray):  # token ids, as the model takes them
                check_numeric(item, name)
                yield from array_samples(item, name, f"inputs_{k}", info, name)
                continue
            for sample_name, stem, x in text_samples(item, reader, column):
                if isinstance(x, NetspecError):
                    yield Failed(sample_name, x)
                else:
                    yield Sample(sample_name, stem, x)
        except NetspecError as err:
            yield Failed(name, err)


class _Once:
    """A note said at most once per text (one resize note for a folder of images)."""

    def __init__(self, note: Note) -> None:
        self.note, self.said = note, set[str]()

    def __call__(self, text: str) -> None:
        if text not in self.said:
            self.said.add(text)
            self.note(text)


def read_image(path: Path, info: ModelInfo, note: Note = lambda _: None) -> np.ndarray:
    """An image file as a raw sample (C, H, W): channel order, grayscale, resize, center crop.

    An image of another size than a model of fixed size takes, when the model records no
    resize, is resized to it with the training pipeline's resize (bilinear), and `note` says so.
    """
    x = _decode_image(path, info)
    want = info.raw_shape
    if not fits(x.shape, want) and len(want) == 3 and x.shape[0] == want[0]:
        h, w = want[1], want[2]
        if h is not None and w is not None:
            note(
                f"the model records no resize step: images not of {w}x{h} (width x height) are "
                f"resized to it (bilinear), as `size: [{h}, {w}]` would in training"
            )
            x = geometry(x, resize=(h, w))
    if not fits(x.shape, want):
        raise error(
            f"image of {x.shape[2]}x{x.shape[1]} (width x height) after preprocessing; the model "
            f"takes {size(want[2])}x{size(want[1])} images and records no resize step",
            path,
            hint=f"resize the image to {size(want[2])}x{size(want[1])} first",
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def _decode_image(path: Path, info: ModelInfo, not_images: str | None = None) -> np.ndarray:
    """An image file decoded with Pillow, after the recorded image steps: (C, H, W) uint8."""
    if info.channel_order is None:
        raise error(
            not_images
            or f"the model takes {shape(info.raw_shape)} samples, not images; "
            "give a .npy or .csv file",
            path,
        )
    return image_steps(open_image(path, lambda im: _pillow_pixels(im, info)), info, path)


def open_image(path: Path, pixels: Callable[[Any], np.ndarray]) -> np.ndarray:
    """`pixels` of the image file opened and loaded with Pillow; a file Pillow cannot decode is
    one PredictError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return pixels(im)
    except Exception as exc:  # Pillow raises many types on bad files: all mean "cannot decode"
        names = "/".join(s[1:] for s in IMAGE_SUFFIXES)
        raise error(
            f"cannot decode the image ({type(exc).__name__}: {first_line(exc)}); "
            f"expected a readable {names} file",
            path,
        ) from None


def _pillow_pixels(im: Any, info: ModelInfo) -> np.ndarray:
    """A Pillow image in the model's channel order (and the folder loader's fit): (C, H, W).

    The folder loader's own decoding (image_pixels): 16-bit images keep their range, as floats
    on the 8-bit scale, so a 16-bit scan predicts as it trained.
    """
    from netspec.data.folder import image_pixels

    # The training pipeline: RGB then its own luma for `grayscale`, else Pillow's mode.
    pre = info.pre
    mode = "RGB" if pre is not None and pre.grayscale else str(info.channel_order)
    fit = pre.image_size if pre is not None and pre.image_size else None  # a folder's own fit
    pixels = image_pixels(im, mode, fit, pre.image_crop if pre is not None else None)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def image_steps(x: np.ndarray, info: ModelInfo, path: Path) -> np.ndarray:
    """The recorded grayscale, resize and center crop of one image (C, H, W), as in training."""
    pre = info.pre
    if pre is None:
        return x
    try:
        return geometry(x, grayscale=pre.grayscale, resize=pre.resize, center_crop=pre.center_crop)
    except CropError as exc:
        (h, w), (H, W) = exc.crop, exc.image
        raise error(
            f"image of {W}x{H} (width x height) is smaller than the model's center crop {w}x{h}",
            path,
        ) from None


def read_npy(path: Path, info: ModelInfo) -> Iterator[Sample]:
    """A .npy array: one raw sample, or a batch of them with a leading N (never pickled)."""
    yield from array_samples(load_npy(path), str(path), path.stem, info, path)


def array_samples(
    array: np.ndarray, name: str, stem: str, info: ModelInfo, where: str | Path
) -> Iterator[Sample]:
    """An array of raw values as one sample, or a batch of them with a leading N."""
    raw = info.raw_shape
    # An imported model's channels-last images (H, W, C): the same arrays its source took.
    nhwc = info.input_layout == "NHWC" and len(raw) == 3 and array.ndim in (3, 4)
    if nhwc and fits(array.shape[-3:], (raw[1], raw[2], raw[0])):
        array = np.moveaxis(array, -1, -3)
    if fits(array.shape, raw):
        yield Sample(name, stem, array.astype(np.float32))
        return
    if not (array.ndim == len(raw) + 1 and fits(array.shape[1:], raw)):
        raise error(
            f"array of shape {shape(array.shape)}; expected {shape(raw)} or {shape(('N', *raw))}",
            where,
        )
    for i, x in enumerate(array.astype(np.float32)):
        yield Sample(f"{name}[{i}]", f"{stem}_{i}", x)


def load_npy(path: Path) -> np.ndarray:
    """A numeric .npy array (never unpickled), or a clear error."""
    try:
        with path.open("rb") as f:
            check_npy_header(f, path.stat().st_size, path)
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        why = (
            "it holds Python objects, which are never unpickled"
            if "allow_pickle" in str(exc)
            else first_line(exc)
        )
        raise error(f"cannot read the array: {why}; expected a numeric .npy file", path) from None
    except OSError as exc:
        raise error(
            f"cannot read the array ({first_line(exc)}); expected a .npy file", path
        ) from None
    if not isinstance(array, np.ndarray):
        raise error(f"not an array but {type(array).__name__}; expected numbers", path)
    check_numeric(array, path)
    return array


def check_numeric(array: np.ndarray, where: str | Path) -> None:
    if array.dtype.kind not in "biuf":
        raise error(f"array of dtype {array.dtype}; expected numbers", where)


def read_csv(path: Path, info: ModelInfo) -> Iterator[Sample | Failed]:
    """A CSV file: one sample per row (rows.csv_rows); a row that cannot be read is a Failed."""
    for line, x in csv_rows(path, info):
        name = f"{path}:{line}"
        if isinstance(x, PredictError):
            yield Failed(name, x)
        else:
            yield Sample(name, f"{path.stem}_{line}", x.reshape(info.raw_shape))  # type: ignore[arg-type]


def read_scenes(paths: Iterable[Input], info: ModelInfo) -> Iterator[Sample | Failed]:
    """Every input as whole scenes (C, H, W) of raw values: images, TIFF scenes, .npy arrays,
    arrays from the Python API. An input that cannot be read is a Failed; the others go on.
    """
    bands = scene_bands(info)
    for k, path in enumerate(paths):
        name = array_name(k) if isinstance(path, np.ndarray) else str(path)
        try:
            yield from finite(_scenes(path, info, bands, k))
        except NetspecError as err:
            yield Failed(name, err)


def _scenes(path: Input, info: ModelInfo, bands: int | None, k: int) -> Iterator[Sample]:
    if isinstance(path, np.ndarray):
        check_numeric(path, array_name(k))
        scenes: Iterable[Sample] = array_scenes(path, array_name(k), f"inputs_{k}", array_name(k))
        yield from _with_bands(scenes, bands, array_name(k))
        return
    kind = check_input(path)
    if kind == "csv":
        raise error(
            "a segmentation model takes scenes: images, .tif files or .npy arrays "
            "(C, H, W); not CSV rows",
            path,
        )
    if kind == "npy":
        scenes = read_npy_scenes(path)
    elif path.suffix.lower() in TIFF_SUFFIXES:
        scenes = [Sample(str(path), path.stem, read_tiff(path, info))]
    else:
        not_images = (
            f"the model takes {bands}-band scenes, not 8-bit images; "
            "give a .tif file or a .npy array (C, H, W)"
        )
        x = _decode_image(path, info, not_images)
        scenes = [Sample(str(path), path.stem, np.ascontiguousarray(x, dtype=np.float32))]
    yield from _with_bands(scenes, bands, path)


def _with_bands(scenes: Iterable[Sample], bands: int | None, where: str | Path) -> Iterator[Sample]:
    for sample in scenes:
        if bands is not None and sample.x.shape[0] != bands:
            c, h, w = sample.x.shape
            raise error(
                f"{sample.name}: a scene of {c} band{'s' if c != 1 else ''} ({w}x{h}, "
                f"width x height); the model takes {bands}",
                where,
                hint="give scenes with the bands (channels) the model was trained on, "
                "in the same order",
            )
        yield sample


def read_npy_scenes(path: Path) -> Iterator[Sample]:
    """A .npy array as one scene (C, H, W) or several (N, C, H, W)."""
    yield from array_scenes(load_npy(path), str(path), path.stem, path)


def array_scenes(array: np.ndarray, name: str, stem: str, where: str | Path) -> Iterator[Sample]:
    """An array as one scene (C, H, W) or several (N, C, H, W)."""
    if array.ndim == 3:
        yield Sample(name, stem, array.astype(np.float32))
    elif array.ndim == 4:
        for i, x in enumerate(array):
            yield Sample(f"{name}[{i}]", f"{stem}_{i}", x.astype(np.float32))
    else:
        raise error(
            f"array of shape {shape(array.shape)}; expected a scene (C, H, W) or scenes "
            "(N, C, H, W)",
            where,
        )


def read_tiff(path: Path, info: ModelInfo) -> np.ndarray:
    """A TIFF scene of any bands and bit depth as raw values (C, H, W) float32.

    Bands by netspec.data.tiff's band-axis rule. 8-bit scenes of 1, 3 or 4 bands for a model of
    images (L or RGB) take the image steps of any image file; other scenes are values as stored
    (uint16 stays 0..65535).
    """
    x = read_tiff_bands(path, "the TIFF scene")
    if x.dtype.kind not in "biuf":
        raise error(f"TIFF of {x.dtype} values; expected numbers", path)
    if x.dtype == np.uint8 and info.channel_order and x.shape[0] in (1, 3, 4):
        from PIL import Image

        hwc = x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0)
        im = Image.fromarray(np.ascontiguousarray(hwc))  # L, RGB or RGBA by the shape
        x = _pillow_pixels(im, info)
    else:
        x = x.astype(np.float32)
    return np.ascontiguousarray(image_steps(x, info, path), dtype=np.float32)
