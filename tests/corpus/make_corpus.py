"""The corpus of odd real-world input files: CSV dialects, image modes, array files and masks.

Each case writes its file(s) into a folder and says what must happen when netspec's loader reads
them: it works (and the decoded values are checked), or it fails with one DataError naming the
file and what to do. tests/test_corpus.py runs every case; the files are generated (a few KB in
all) rather than committed. `python tests/corpus/make_corpus.py OUT` writes them for manual trials.
"""

from __future__ import annotations

import io
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SIXTEEN_TO_8 = 255 / 65535


@dataclass(frozen=True)
class Case:
    """One odd input: `write(folder)` makes it and returns the path to load; `load(path)` reads
    it with the loader under test; then either `check(data)` holds, or the load fails with a
    DataError naming `names` (a file, relative to the folder) and saying every `says` text."""

    name: str
    write: Callable[[Path], Path]
    load: Callable[[Path], Any]
    check: Callable[[Any], None] | None = None
    names: str | None = None
    says: tuple[str, ...] = ()


# --- loaders -------------------------------------------------------------------------------


def csv_y(path: Path) -> Any:
    from netspec.data import load_csv

    return load_csv(path, target="y")


def folder_gray(path: Path) -> Any:
    from netspec.data import load_image_folder

    return load_image_folder(path, color="grayscale")


def folder_rgb(path: Path) -> Any:
    from netspec.data import load_image_folder

    return load_image_folder(path, color="rgb")


def arrays(path: Path) -> Any:
    from netspec.data import load_arrays

    return load_arrays(path)


def arrays_named(path: Path) -> Any:
    from netspec.data import load_arrays

    return load_arrays(path, classes=["a", "b", "c"])


def masks(path: Path) -> Any:
    from netspec.data import load_mask_folder

    return load_mask_folder(path, classes=["bg", "fg"])


# --- CSV dialects ----------------------------------------------------------------------------

ROWS = [(1.5, 2.0, "a"), (3.25, 4.0, "b"), (5.0, 6.5, "a"), (7.0, 8.0, "b")]


def table(text: str, encoding: str = "utf-8") -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / "t.csv"
        path.write_bytes(text.encode(encoding))
        return path

    return write


PLAIN = "f1,f2,y\n" + "".join(f"{a},{b},{y}\n" for a, b, y in ROWS)
SEMI = "f1;f2;y\n" + "".join(f"{a};{b};{y}\n".replace(".", ",") for a, b, y in ROWS)


def table_values(data: Any) -> None:
    assert data.x.tolist() == [[a, b] for a, b, _ in ROWS], data.x.tolist()
    assert data.classes == ("a", "b") and data.y.tolist() == [0, 1, 0, 1]


def thousands(data: Any) -> None:
    assert data.x[:, 0].tolist() == [1234.0, 5678.0, 91011.0, 1213.5]


CSV_CASES = [
    Case("csv-bom", table("\ufeff" + PLAIN), csv_y, table_values),
    Case("csv-crlf", table(PLAIN.replace("\n", "\r\n")), csv_y, table_values),
    Case("csv-utf16", table(PLAIN, "utf-16"), csv_y, table_values),
    Case("csv-semicolon-decimal-comma", table(SEMI), csv_y, table_values),
    Case("csv-tab", table(PLAIN.replace(",", "\t")), csv_y, table_values),
    Case(
        "csv-excel-sep-line", table("sep=;\r\n" + SEMI.replace("\n", "\r\n")), csv_y, table_values
    ),
    Case(
        "csv-quoted",
        table(PLAIN.replace("1.5", '"1.5"').replace(",a", ',"a"')),
        csv_y,
        table_values,
    ),
    Case(
        "csv-thousands",
        table('f1,f2,y\n"1,234",1,a\n"5,678",2,b\n"91,011",3,a\n"1,213.5",4,b\n'),
        csv_y,
        thousands,
    ),
    Case(
        "csv-latin1",
        table("f1,f2,y\n1,2,caf\u00e9\n3,4,th\u00e9\n", "latin-1"),
        csv_y,
        names="t.csv",
        says=("not UTF-8 text", "Save it as UTF-8"),
    ),
    Case("csv-header-only", table("f1,f2,y\n"), csv_y, names="t.csv", says=("no data rows",)),
    Case(
        "csv-inf-column",
        table("f1,f2,y\ninf,1,a\ninf,2,b\n1.0,3,a\n"),
        csv_y,
        names="t.csv:2",
        says=("'inf', an infinite value", "leave the cell empty"),
    ),
    Case(
        "csv-excel-sep-line-ragged",
        table("sep=,\nf1,f2,y\n1,2,a\n3,4,5,b\n"),
        csv_y,
        names="t.csv:4",
        says=("row has 4 fields; expected 3",),
    ),
    Case(
        "csv-ragged",
        table("f1,f2,y\n1,2,a\n3,4,5,b\n"),
        csv_y,
        names="t.csv:3",
        says=("row has 4 fields; expected 3",),
    ),
    Case("csv-empty", table(""), csv_y, names="t.csv", says=("empty",)),
]


# --- image modes ---------------------------------------------------------------------------


def two_classes(make: Callable[[], Image.Image], suffix: str = ".png", **save: Any):
    """A folder of classes a and b, one image each, both made by `make`."""

    def write(folder: Path) -> Path:
        for name in ("a", "b"):
            (folder / name).mkdir(parents=True, exist_ok=True)
            make().save(folder / name / f"0{suffix}", **save)
        return folder

    return write


def gray16() -> Image.Image:
    return Image.fromarray(np.array([[0, 1000], [40000, 65535]], np.uint16))


def gray16_values(data: Any) -> None:
    want = np.array([[0, 1000], [40000, 65535]]) * SIXTEEN_TO_8
    assert data.x.dtype == np.float32 and np.allclose(data.x[0, 0], want, rtol=1e-6)


def cmyk() -> Image.Image:
    return Image.new("CMYK", (3, 2), (0, 0, 0, 0))  # no ink: white


def white_rgb(data: Any) -> None:
    assert data.x.shape == (2, 3, 2, 3) and (data.x == 255).all()


def palette_alpha() -> Image.Image:
    im = Image.new("P", (2, 2), 1)
    im.putpalette([0, 0, 0, 200, 10, 30] + [0] * 762)
    im.info["transparency"] = 0
    return im


def palette_rgb(data: Any) -> None:
    assert data.x.shape == (2, 3, 2, 2) and data.x[0, :, 0, 0].tolist() == [200, 10, 30]


def one_bit() -> Image.Image:
    return Image.fromarray(np.array([[True, False], [False, True]]))


def one_bit_values(data: Any) -> None:
    assert data.x[0, 0].tolist() == [[255, 0], [0, 255]]


def exif_rotated() -> Image.Image:
    return Image.fromarray(np.arange(8, dtype=np.uint8).reshape(2, 4) * 30)  # 4 wide, 2 high


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def turned(data: Any) -> None:
    # Orientation 6: shown turned 90 degrees clockwise, so 2 wide and 4 high.
    stored = np.arange(8).reshape(2, 4) * 30
    assert data.x.shape == (2, 1, 4, 2)
    assert data.x[0, 0].tolist() == np.rot90(stored, -1).tolist()


def truncated(folder: Path) -> Path:
    two_classes(exif_rotated)(folder)
    path = folder / "b" / "0.png"
    path.write_bytes(path.read_bytes()[:40])
    return folder


def float32_image() -> Image.Image:
    return Image.fromarray(np.full((2, 2), 1.5, np.float32))


IMAGE_CASES = [
    Case("image-16bit-png", two_classes(gray16), folder_gray, gray16_values),
    Case("image-16bit-tiff", two_classes(gray16, ".tif"), folder_gray, gray16_values),
    Case("image-cmyk-jpeg", two_classes(cmyk, ".jpg", quality=100), folder_rgb, white_rgb),
    Case("image-palette-alpha", two_classes(palette_alpha), folder_rgb, palette_rgb),
    Case("image-1bit", two_classes(one_bit), folder_gray, one_bit_values),
    Case("image-exif-rotated", two_classes(exif_rotated, exif=_exif(6)), folder_gray, turned),
    Case(
        "image-truncated",
        truncated,
        folder_gray,
        names="b/0.png",
        says=("cannot decode image", "delete or replace the file"),
    ),
    Case(
        "image-32bit-float-tiff",
        two_classes(float32_image, ".tif"),
        folder_gray,
        names="a/0.tif",
        says=("32-bit float image", "save it as a 16-bit"),
    ),
]


def forged_tiff(width: int, height: int) -> bytes:
    """An uncompressed 8-bit TIFF whose header claims width x height and holds 16 bytes."""
    import struct

    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1)]
    tags += [(273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, 16)]
    out = b"II*\x00" + struct.pack("<I", 24) + bytes(16) + struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        out += struct.pack(
            "<HHIHH" if kind == 3 else "<HHII", tag, kind, 1, value, *([0] * (kind == 3))
        )
    return out + struct.pack("<I", 0)


def forged_in_folder(folder: Path) -> Path:
    two_classes(exif_rotated)(folder)
    (folder / "b" / "1.tif").write_bytes(forged_tiff(200_000, 200_000))
    return folder


IMAGE_CASES.append(
    Case(
        "image-forged-tiff-header",
        forged_in_folder,
        folder_gray,
        names="b/1.tif",
        says=("cannot decode image", "delete or replace the file"),
    )
)


# --- array files ------------------------------------------------------------------------------


def npz(**members: Any) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / "d.npz"
        np.savez(path, **members)
        return path

    return write


def huge_header(folder: Path) -> Path:
    head = io.BytesIO()
    shape = {"descr": "<f8", "fortran_order": False, "shape": (10**7, 10**6)}
    np.lib.format.write_array_header_1_0(head, shape)
    y = io.BytesIO()
    np.save(y, np.zeros(2, np.int64))
    path = folder / "d.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", head.getvalue() + bytes(64))
        z.writestr("y.npy", y.getvalue())
    return path


X = np.arange(12, dtype=np.float32).reshape(4, 3)


def float16_x(data: Any) -> None:
    assert data.x.dtype == np.float32 and data.x.tolist() == X.tolist()


def float_labels(data: Any) -> None:
    assert data.classes == ("a", "b", "c") and data.y.tolist() == [0, 2, 1, 0]


ARRAY_CASES = [
    Case(
        "array-float16-x", npz(x=X.astype(np.float16), y=np.array([0, 1, 0, 1])), arrays, float16_x
    ),
    Case(
        "array-float64-labels",
        npz(x=X, y=np.array([0.0, 2.0, 1.0, 0.0])),
        arrays_named,
        float_labels,
    ),
    Case(
        "array-object",
        npz(x=np.array([1, "a", None, 2.0], dtype=object), y=np.zeros(4)),
        arrays,
        names="d.npz",
        says=("dtype=object", "Expected a numeric array"),
    ),
    Case(
        "array-structured",
        npz(x=np.zeros(4, dtype=[("a", "f4"), ("b", "i4")]), y=np.zeros(4)),
        arrays,
        names="d.npz",
        says=("expected (N, F) features",),
    ),
    Case(
        "array-complex",
        npz(x=X.astype(np.complex64), y=np.zeros(4, np.int64)),
        arrays,
        names="d.npz",
        says=("dtype complex64", "expected a numeric (integer or float) array"),
    ),
    Case(
        "array-string-labels",
        npz(x=X, y=np.array(["a", "b", "a", "b"])),
        arrays,
        names="d.npz",
        says=("y has dtype <U1", "expected integers (classes) or floats"),
    ),
    Case(
        "array-nan-x",
        npz(x=np.where(X > 10, np.nan, X), y=np.zeros(4, np.int64)),
        arrays,
        names="d.npz",
        says=("1 NaN or infinite values", "expected finite numbers"),
    ),
    Case(
        "array-huge-header",
        huge_header,
        arrays,
        names="d.npz",
        says=("claims shape (10000000, 1000000)", "write it again with numpy.save"),
    ),
    Case(
        "array-id-labels",
        npz(x=X, y=np.array([3, 10**12, 5, 7])),
        arrays,
        names="d.npz",
        says=("look like ids", "renumber the labels"),
    ),
    Case(
        "array-not-zip",
        lambda f: _bytes(f / "d.npz", b"hello"),
        arrays,
        names="d.npz",
        says=("not a .npz archive",),
    ),
]


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- masks -----------------------------------------------------------------------------------


def mask_folder(masks_of: Callable[[int], Image.Image]) -> Callable[[Path], Path]:
    """Three 4x4 scenes s0..s2 and their masks masks_of(i)."""

    def write(folder: Path) -> Path:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(exist_ok=True)
        for i in range(3):
            Image.fromarray(np.full((4, 4), 50 * i, np.uint8)).save(folder / "images" / f"s{i}.png")
            masks_of(i).save(folder / "masks" / f"s{i}.png")
        return folder

    return write


def _diagonal(i: int) -> np.ndarray:
    return np.eye(4, dtype=np.uint8)


def palette_mask(i: int) -> Image.Image:
    im = Image.fromarray(_diagonal(i), mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    return im


def mask16(i: int) -> Image.Image:
    return Image.fromarray(_diagonal(i).astype(np.uint16))


def rgb_mask(i: int) -> Image.Image:
    return Image.fromarray(np.stack([_diagonal(i) * 255] * 3, axis=2))


def bad_value(i: int) -> Image.Image:
    mask = _diagonal(i)
    mask[0, 3] = 9 if i == 2 else 0
    return Image.fromarray(mask)


def diagonal_masks(data: Any) -> None:
    assert data.classes == ("bg", "fg") and data.y.shape == (3, 4, 4)
    assert all(y.tolist() == np.eye(4).tolist() for y in data.y)


def forged_scene(folder: Path) -> Path:
    mask_folder(palette_mask)(folder)
    (folder / "images" / "s1.png").unlink()
    (folder / "images" / "s1.tif").write_bytes(forged_tiff(200_000, 200_000))
    return folder


MASK_CASES = [
    Case(
        "mask-folder-forged-tiff-scene",
        forged_scene,
        masks,
        names="images/s1.tif",
        says=("claims shape (200000, 200000) of uint8 (40.0 GB)", "delete or replace the file"),
    ),
    Case("mask-palette", mask_folder(palette_mask), masks, diagonal_masks),
    Case("mask-16bit", mask_folder(mask16), masks, diagonal_masks),
    Case(
        "mask-rgb",
        mask_folder(rgb_mask),
        masks,
        names="masks/s0.png",
        says=("mask is a RGB image", "single-channel"),
    ),
    Case(
        "mask-value-outside-classes",
        mask_folder(bad_value),
        masks,
        names="masks/s2.png",
        says=("class index 9", "mask_values"),
    ),
]

CASES: list[Case] = CSV_CASES + IMAGE_CASES + ARRAY_CASES + MASK_CASES


def write_all(out: Path) -> dict[str, Path]:
    """Every case's files, each in its own folder under out; case name -> the path to load."""
    paths = {}
    for case in CASES:
        folder = out / case.name
        folder.mkdir(parents=True, exist_ok=True)
        paths[case.name] = case.write(folder)
    return paths


if __name__ == "__main__":
    for name, path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")).items():
        print(f"{name}: {path}")
