"""The `train.data` section of a spec: one pydantic model per data source, told apart by `source`."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import Annotated, Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from netspec.spec_base import PATH, SPLIT, TEST, Fraction, Section, Size

# --- data sources (discriminated by `source`) ------------------------------------------------


class _Source(Section):
    val: Fraction = Field(0.1, description="Fraction of the training data held out for validation.")
    test: Fraction = Field(0.0, description=TEST)
    test_path: str | None = Field(None, description="Separate test data in the same format.")
    limit: PositiveInt | None = Field(
        None,
        description="Use only N samples, a random subset drawn with split_seed (quick runs); "
        "an image folder decodes only those.",
    )
    split_seed: int | None = Field(
        None,
        description="Seed of the limit and the val/test split (default: train.seed). Fix it to "
        "train several seeds on one split, e.g. the members of an ensemble.",
    )
    scale_targets: bool = Field(
        True,
        description="Regression: standardize the targets with the training split's mean and std "
        "(undone in the exported model and in the reported metrics).",
    )
    tiles_per_scene: PositiveInt | None = Field(
        None,
        description="Segmentation: random tiles of the network's input size cut from each larger "
        "training scene per epoch (default: as many as cover it).",
    )
    rgb_bands: Annotated[list[PositiveInt], Field(min_length=3, max_length=3)] | None = Field(
        None,
        description="Pictures of image inputs (predictions.png, mistakes.png): the bands shown as "
        "red, green and blue, numbered from 1 (Sentinel-2 true colour: [4, 3, 2]); default the "
        "first three.",
    )
    complete: Literal["lower_half"] | None = Field(
        None,
        description="Image completion (multi-output regression): the input is the upper half of "
        "each image and the targets are the pixels of its lower half, in the input's units "
        "(after `rescale`); labels are dropped.",
    )
    cache: Literal["auto", "ram", "disk", "none"] = Field(
        "auto",
        description="Where decoded samples live (docs/training.md, Data bigger than memory): ram "
        "decodes everything into memory once; disk writes the decoded samples once to a "
        "memory-mapped file reused by later runs; none decodes each batch from the files; auto "
        "keeps ram when the data take at most a quarter of the available memory, else disk. "
        "disk and none stream batches through worker processes (image and mask folders, .npy "
        "files, IDX files, CSV tables, texts and .ts series).",
    )
    workers: NonNegativeInt | None = Field(
        None,
        description="Worker processes decoding batches when the data streams (cache disk or "
        "none); 0 decodes in the training process (default: the CPU count less one, at most 8).",
    )


class _Masks(Section):
    """Options of sources that can hold segmentation masks."""

    classes: list[str] | None = Field(
        None, description="Class names, index i naming class i (masks and labels)."
    )
    mask_values: list[int] | None = Field(
        None,
        description="The mask pixel value of each class, in class order (default: {0, 255} masks "
        "are background/foreground, other masks hold class indices).",
    )
    ignore_value: int | None = Field(
        None, description="Mask pixels with this value count in neither the loss nor the metrics."
    )


class BuiltinData(_Source):
    """A dataset shipped inside a well-kept package (scikit-learn's 8x8 digits)."""

    source: Literal["builtin"] = Field(description="A dataset shipped in a package.")
    name: Literal["digits"] = Field("digits", description="digits: scikit-learn's 8x8 digits.")
    test: Fraction = Field(0.2, description=TEST)


class ShapesData(_Source):
    """Generated segmentation scenes: circles, squares and triangles on a textured background.

    Each class has its own spectral signature over `bands` channels, like land cover in a
    multi-band satellite tile; the masks are exact. Deterministic for a given seed.
    """

    source: Literal["shapes"] = Field(description="Generated segmentation scenes.")
    samples: PositiveInt = Field(400, description="Number of scenes.")
    size: Size = Field(default_factory=lambda: [64, 64], description="[height, width].")
    bands: PositiveInt = Field(3, description="Channels of each scene.")
    seed: int = Field(0, description="Seed of the generator.")
    test: Fraction = Field(0.1, description=TEST)


class XoData(_Source):
    """Generated 9x9 grey images of X and O (classes O, X), noisy and shifted; seeded."""

    source: Literal["xo"] = Field(description="Generated 9x9 images of X and O.")
    samples: PositiveInt = Field(1000, description="Number of images (half X, half O).")
    noise: Annotated[float, Field(ge=0.0)] = Field(0.2, description="Pixel noise std (0..1).")
    seed: int = Field(0, description="Seed of the generator.")
    test: Fraction = Field(0.2, description=TEST)


class MnistData(_Source):
    """MNIST-family IDX files (.gz or raw) in `path`; `download: true` fetches and checks them."""

    source: Literal["mnist"] = Field(description="MNIST-family IDX files.")
    path: str = Field(description=PATH)
    split: Literal["train", "test"] = Field("train", description=SPLIT)
    download: bool = Field(False, description="Fetch the files (md5-checked) when missing.")


class Cifar10Data(_Source):
    """CIFAR-10 python batches, read without unpickling arbitrary objects."""

    source: Literal["cifar10"] = Field(description="CIFAR-10 python batches.")
    path: str = Field(description=PATH)
    split: Literal["train", "test"] = Field("train", description=SPLIT)


class FolderData(_Source):
    """A folder of images, one subfolder per class (e.g. cats/ and dogs/)."""

    source: Literal["folder"] = Field(description="A folder of images, one subfolder per class.")
    path: str = Field(description=PATH)
    size: Size | None = Field(None, description="Resize every image to [height, width].")
    color: Literal["rgb", "grayscale"] = Field(
        "rgb", description="Convert every image to RGB or grayscale."
    )
    crop: Literal["center"] | None = Field(
        None, description="center: crop to the aspect ratio of `size` before resizing."
    )


class ArraysData(_Source, _Masks):
    """NPZ (keys `x` and `y`) or NPY arrays, any number of channels.

    y: (N,) labels or targets, or segmentation masks: (N, H, W) class indices or (N, K, H, W)
    with one 0/1 channel per class.
    """

    source: Literal["arrays"] = Field(description="NPZ or NPY arrays.")
    path: str = Field(description=PATH)
    y_path: str | None = Field(
        None, description="An NPY file of the targets, when `path` is an NPY of x."
    )
    x_key: str = Field("x", description="The NPZ key of the inputs.")
    y_key: str = Field("y", description="The NPZ key of the targets.")
    channels: Literal["first", "last"] = Field(
        "first", description="x is (N, C, H, W) (first) or (N, H, W, C) (last)."
    )


class MaskFolderData(_Source, _Masks):
    """Image/mask file pairs for segmentation: `path/<images>/a.png` with `path/<masks>/a.png`.

    Images: PNG, JPEG or TIFF (any number of bands, 8 or 16 bit). Masks: single-channel PNG or
    TIFF (palette PNGs give their indices), paired by file stem.
    """

    source: Literal["mask_folder"] = Field(description="Image/mask file pairs for segmentation.")
    path: str = Field(description=PATH)
    images: str = Field("images", description="Subfolder of `path` holding the images.")
    masks: str = Field("masks", description="Subfolder of `path` holding the masks.")
    color: Literal["keep", "rgb", "grayscale"] = Field(
        "keep", description="Convert 8-bit images to RGB or grayscale, or keep their bands."
    )


class CsvData(_Source):
    """A CSV table: feature columns and a target column."""

    source: Literal["csv"] = Field(description="A CSV table.")
    path: str = Field(description=PATH)
    target: str = Field(description="The column to predict.")
    features: list[str] | None = Field(None, description="Feature columns (default: all others).")
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: regression for a numeric target with many values."
    )
    delimiter: Literal[",", ";", "\t", "|"] | None = Field(
        None, description="The column delimiter (default: detected from the first rows)."
    )


class TsData(_Source):
    """A UCR/UEA `.ts` time-series file (`_TRAIN.ts`; its `_TEST.ts` as `test_path`).

    Each case becomes (dimensions, length), conv1d's layout; labels from `@classLabel`.
    """

    source: Literal["ts"] = Field(description="A UCR/UEA .ts time-series file.")
    path: str = Field(description=PATH)
    length: PositiveInt | None = Field(
        None,
        description="Zero-pad shorter series at the end (and cut longer ones) to this length "
        "(default: the longest training series).",
    )
    missing: Literal["zero", "interpolate"] | None = Field(
        None,
        description="Fill missing values ('?') with zeros or by linear interpolation "
        "(default: refuse them).",
    )


class Tokenize(Section):
    """How texts become token ids (netspec/data/tokenizer.py): 0 is padding, 1 an unknown token,
    2.. the training split's vocabulary, most frequent first."""

    level: Literal["char", "word"] = Field(
        "char",
        description="char: every character is a token; word: runs of letters and digits, and "
        "each other non-space character.",
    )
    max_length: PositiveInt | None = Field(
        None,
        description="Tokens per text: longer texts are cut, shorter ones padded with 0 on the "
        "right (default: the spec's input length [L]; with a dynamic input, the 95th "
        "percentile of the training split's texts).",
    )
    vocab_size: Annotated[int, Field(ge=3)] | None = Field(
        None,
        description="Ids in all, padding and unknown included (the embedding's input_dim): the "
        "most frequent training tokens are kept (default: every token seen min_count times).",
    )
    min_count: PositiveInt = Field(
        1, description="Training tokens seen fewer times are unknown (id 1)."
    )
    lowercase: bool = Field(False, description="Lowercase texts before splitting them.")


class TextData(_Source):
    """A CSV column of texts and a label column, tokenized with a vocabulary of the training split."""

    source: Literal["text"] = Field(description="A CSV of texts and labels.")
    path: str = Field(description=PATH)
    text: str = Field("text", description="The column of texts.")
    label: str = Field("label", description="The column of class labels.")
    tokenizer: Tokenize = Field(default_factory=Tokenize, description="How texts become ids.")
    delimiter: Literal[",", ";", "\t", "|"] | None = Field(
        None, description="The column delimiter (default: detected from the first rows)."
    )


DataSpec = Annotated[
    BuiltinData
    | ShapesData
    | XoData
    | MnistData
    | Cifar10Data
    | FolderData
    | ArraysData
    | MaskFolderData
    | CsvData
    | TsData
    | TextData,
    Field(discriminator="source"),
]

# The sources that can stream (train.data.cache disk or none): read sample by sample.
STREAMED = (FolderData, ArraysData, MnistData, MaskFolderData, CsvData, TextData, TsData)
