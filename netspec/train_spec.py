"""The `train:` section of a spec: data, preprocessing, augmentation, optimizer, loss, callbacks.

Over 400 lines: one pydantic model per section and per data source, in the one module the
schema (`netspec schema`) and the located errors are generated from.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
Size = Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)


# --- data sources (discriminated by `source`) ------------------------------------------------


class _Source(_Section):
    val: Fraction = Field(0.1, description="Fraction of the training data held out for validation.")
    test: Fraction = Field(
        0.0, description="Fraction held out for the test split (0: use `test_path`)."
    )
    test_path: str | None = Field(None, description="Separate test data in the same format.")
    limit: PositiveInt | None = Field(
        None, description="Use only the first N samples (quick runs)."
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
    complete: Literal["lower_half"] | None = Field(
        None,
        description="Image completion (multi-output regression): the input is the upper half of "
        "each image and the targets are the pixels of its lower half, in the input's units "
        "(after `rescale`); labels are dropped.",
    )


class _Masks(_Section):
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

    source: Literal["builtin"]
    name: Literal["digits"] = "digits"
    test: Fraction = 0.2


class ShapesData(_Source):
    """Generated segmentation scenes: circles, squares and triangles on a textured background.

    Each class has its own spectral signature over `bands` channels, like land cover in a
    multi-band satellite tile; the masks are exact. Deterministic for a given seed.
    """

    source: Literal["shapes"]
    samples: PositiveInt = 400
    size: Size = Field(default_factory=lambda: [64, 64], description="[height, width].")
    bands: PositiveInt = 3
    seed: int = 0
    test: Fraction = 0.1


class XoData(_Source):
    """Generated 9x9 grey images of X and O (classes O, X), noisy and shifted; seeded."""

    source: Literal["xo"]
    samples: PositiveInt = 1000
    noise: Annotated[float, Field(ge=0.0)] = Field(0.2, description="Pixel noise std (0..1).")
    seed: int = 0
    test: Fraction = 0.2


class MnistData(_Source):
    """MNIST-family IDX files (.gz or raw) in `path`; `download: true` fetches and checks them."""

    source: Literal["mnist"]
    path: str
    split: Literal["train", "test"] = "train"
    download: bool = False


class Cifar10Data(_Source):
    """CIFAR-10 python batches, read without unpickling arbitrary objects."""

    source: Literal["cifar10"]
    path: str
    split: Literal["train", "test"] = "train"


class FolderData(_Source):
    """A folder of images, one subfolder per class (e.g. cats/ and dogs/)."""

    source: Literal["folder"]
    path: str
    size: Size | None = Field(None, description="Resize every image to [height, width].")
    color: Literal["rgb", "grayscale"] = "rgb"
    crop: Literal["center"] | None = None


class ArraysData(_Source, _Masks):
    """NPZ (keys `x` and `y`) or NPY arrays, any number of channels.

    y: (N,) labels or targets, or segmentation masks: (N, H, W) class indices or (N, K, H, W)
    with one 0/1 channel per class.
    """

    source: Literal["arrays"]
    path: str
    y_path: str | None = None
    x_key: str = "x"
    y_key: str = "y"
    channels: Literal["first", "last"] = Field(
        "first", description="x is (N, C, H, W) (first) or (N, H, W, C) (last)."
    )


class MaskFolderData(_Source, _Masks):
    """Image/mask file pairs for segmentation: `path/<images>/a.png` with `path/<masks>/a.png`.

    Images: PNG, JPEG or TIFF (any number of bands, 8 or 16 bit). Masks: single-channel PNG or
    TIFF (palette PNGs give their indices), paired by file stem.
    """

    source: Literal["mask_folder"]
    path: str
    images: str = Field("images", description="Subfolder of `path` holding the images.")
    masks: str = Field("masks", description="Subfolder of `path` holding the masks.")
    color: Literal["keep", "rgb", "grayscale"] = Field(
        "keep", description="Convert 8-bit images to RGB or grayscale, or keep their bands."
    )


class CsvData(_Source):
    """A CSV table: feature columns and a target column."""

    source: Literal["csv"]
    path: str
    target: str
    features: list[str] | None = None
    task: Literal["auto", "classification", "regression"] = "auto"


DataSpec = Annotated[
    BuiltinData
    | ShapesData
    | XoData
    | MnistData
    | Cifar10Data
    | FolderData
    | ArraysData
    | MaskFolderData
    | CsvData,
    Field(discriminator="source"),
]


# --- preprocessing and augmentation ----------------------------------------------------------


class Normalize(_Section):
    mean: list[float]
    std: list[Annotated[float, Field(gt=0.0)]]


class Preprocess(_Section):
    """Steps recorded with the model, so evaluation and export apply exactly the same ones."""

    grayscale: bool = False
    resize: Size | None = None
    center_crop: Size | None = None
    rescale: PositiveFloat | None = Field(None, description="Multiply pixel values, e.g. 1/255.")
    normalize: Literal["dataset", "per_sample", "none"] | Normalize = Field(
        "none", description="Per-channel mean/std of the training split, per sample, or given."
    )

    @field_validator("rescale", mode="before")
    @classmethod
    def _fraction(cls, v: Any) -> Any:
        # `rescale: 1/255` reads better than 0.00392...; parsed as two numbers, never evaluated.
        if isinstance(v, str):
            m = re.fullmatch(r"\s*([0-9.]+)\s*/\s*([0-9.]+)\s*", v)
            if m and float(m.group(2)) != 0:
                return float(m.group(1)) / float(m.group(2))
        return v


class Augment(_Section):
    """Random transforms of training batches (never validation or test data)."""

    flip: Literal["horizontal", "vertical", "both"] | None = None
    dihedral: bool = Field(False, description="Random one of the 8 symmetries of the square.")
    rotate: Annotated[float, Field(ge=0.0, le=180.0)] = Field(0.0, description="Max degrees.")
    shift: Fraction = Field(0.0, description="Max shift as a fraction of height/width.")
    zoom: Fraction = Field(0.0, description="Max zoom in or out, as a fraction.")


# --- optimization ---------------------------------------------------------------------------


class Optimizer(_Section):
    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    lr: PositiveFloat = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> Optimizer:
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer sgd with momentum > 0")
        return self


class Schedule(_Section):
    name: Literal["step", "cosine", "one_cycle", "plateau"]
    step_size: PositiveInt = Field(10, description="step: epochs between decays.")
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = Field(0.1, description="step: decay factor.")
    max_lr: PositiveFloat | None = Field(None, description="one_cycle: peak lr (default 10x lr).")
    min_lr: Annotated[float, Field(ge=0.0)] = 0.0
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(0.1, description="plateau: lr factor.")
    patience: PositiveInt = Field(3, description="plateau: epochs without improvement.")
    monitor: str = "val_loss"


LOSSES = ("cross_entropy", "binary_cross_entropy", "dice", "jaccard", "mse", "mae")


class Loss(_Section):
    """One loss, or a weighted sum of terms: `cross_entropy + dice`."""

    name: str = Field(description=f"One of {', '.join(LOSSES)}, or several joined by '+'.")
    weights: list[Annotated[float, Field(gt=0.0)]] | None = Field(
        None, description="Weight of each term of a sum (default 1 each)."
    )
    class_weights: list[Annotated[float, Field(ge=0.0)]] | Literal["balanced"] | None = Field(
        None,
        description="Cross-entropy weight of each class, or `balanced` (inverse frequency in "
        "the training split).",
    )
    label_smoothing: Fraction = 0.0

    @field_validator("name")
    @classmethod
    def _terms(cls, v: str) -> str:
        terms = [t.strip() for t in v.split("+")]
        for t in terms:
            if t not in LOSSES:
                from netspec.layers.base import suggest

                hint = suggest(t, LOSSES)
                raise ValueError(
                    f"unknown loss {t!r}"
                    + (
                        f"; did you mean {hint!r}?"
                        if hint
                        else f"; expected one of {', '.join(LOSSES)}"
                    )
                )
        if len(set(terms)) != len(terms):
            raise ValueError(f"a loss term is repeated in {v!r}")
        return " + ".join(terms)

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(self.name.split(" + "))

    @model_validator(mode="after")
    def _weights_per_term(self) -> Loss:
        if self.weights is not None and len(self.weights) != len(self.terms):
            raise ValueError(
                f"{len(self.weights)} weights for {len(self.terms)} loss terms; give one per term"
            )
        return self


class Regularize(_Section):
    """Penalties on the weights of the layers whose names match `layers` (glob patterns)."""

    layers: list[str] = Field(default_factory=lambda: ["*"])
    l1: Annotated[float, Field(ge=0.0)] = 0.0
    l2: Annotated[float, Field(ge=0.0)] = 0.0


METRICS = (
    "accuracy",
    "top5_accuracy",
    "precision",
    "recall",
    "f1",
    "mae",
    "rmse",
    "iou",
    "dice",
    "pixel_accuracy",
)


class EarlyStopping(_Section):
    monitor: str = "val_loss"
    patience: PositiveInt = 5
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0
    restore_best: bool = True


class Checkpoint(_Section):
    monitor: str = "val_loss"
    best: bool = True
    last: bool = True


class ReduceLROnPlateau(_Section):
    monitor: str = "val_loss"
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    patience: PositiveInt = 3
    min_lr: Annotated[float, Field(ge=0.0)] = 0.0


class Callbacks(_Section):
    early_stopping: EarlyStopping | None = None
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)
    reduce_lr_on_plateau: ReduceLROnPlateau | None = None
    stop_on_nan: bool = True
    csv_log: bool = True


class Init(_Section):
    """Transfer learning: load weights by layer name (and shape) from a run or weights file."""

    from_: str = Field(alias="from")
    layers: list[str] = Field(default_factory=lambda: ["*"])

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, defer_build=True)


class TrainSpec(_Section):
    """Everything `netspec train` needs besides the network."""

    data: DataSpec
    preprocess: Preprocess = Field(default_factory=Preprocess)
    augment: Augment = Field(default_factory=Augment)
    batch_size: PositiveInt = 32
    epochs: PositiveInt = 10
    optimizer: Optimizer = Field(default_factory=Optimizer)
    schedule: Schedule | None = None
    loss: Loss | None = Field(None, description="Default: from the output layer and the data.")
    metrics: list[Literal[METRICS]] | None = Field(  # type: ignore[valid-type]
        None,
        description="Default: accuracy for classification, mae for regression, "
        "iou + dice + pixel_accuracy for segmentation.",
    )
    regularize: list[Regularize] = Field(default_factory=list)
    callbacks: Callbacks = Field(default_factory=Callbacks)
    init: Init | None = None
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast on CUDA when asked; CPU trains in fp32."
    )
    channels_last: Literal["auto", "on", "off"] = "auto"
    sync_batchnorm: bool = Field(
        False,
        description="With --nproc (CUDA): batchnorm statistics over the global batch, not each "
        "process's part of it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        # `loss: cross_entropy` and `optimizer: adam` are accepted as shorthand for {name: ...}.
        if isinstance(data, dict):
            data = dict(data)
            for key in ("loss", "optimizer", "schedule"):
                if isinstance(data.get(key), str):
                    data[key] = {"name": data[key]}
            # YAML 1.1 reads a bare `on`/`off` as a boolean: `channels_last: off` means "off".
            if isinstance(data.get("channels_last"), bool):
                data["channels_last"] = "on" if data["channels_last"] else "off"
        return data
