"""The `train:` section of a spec: data, preprocessing, augmentation, optimizer, loss, callbacks.

The data sources are in train_data_spec.py; what the sections share in spec_base.py.
"""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

import re
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    PositiveInt,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from netspec.spec_base import Fraction, PositiveFloat, Section, Size
from netspec.train_data_spec import (  # noqa: F401 (the data sources are named from here too)
    ArraysData,
    BuiltinData,
    Cifar10Data,
    CsvData,
    DataSpec,
    FolderData,
    MaskFolderData,
    MnistData,
    ShapesData,
    TsData,
    XoData,
)

MONITOR = "What to watch: val_loss, or val_ (or nothing) and a metric, e.g. val_accuracy."
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("step", "cosine", "one_cycle", "plateau")
LOSSES = ("cross_entropy", "binary_cross_entropy", "dice", "jaccard", "mse", "mae")
# Other frameworks' names of the same losses (Keras, PyTorch): the hint names netspec's, which
# spelling distance alone gets wrong (categorical_crossentropy is closest to binary_cross_entropy).
LOSS_ALIASES = {
    "categorical_crossentropy": "cross_entropy",
    "sparse_categorical_crossentropy": "cross_entropy",
    "categorical_cross_entropy": "cross_entropy",
    "sparse_categorical_cross_entropy": "cross_entropy",
    "crossentropyloss": "cross_entropy",
    "crossentropy": "cross_entropy",
    "nll": "cross_entropy",
    "nllloss": "cross_entropy",
    "binary_crossentropy": "binary_cross_entropy",
    "bce": "binary_cross_entropy",
    "bceloss": "binary_cross_entropy",
    "bcewithlogitsloss": "binary_cross_entropy",
    "mean_squared_error": "mse",
    "mseloss": "mse",
    "mean_absolute_error": "mae",
    "l1loss": "mae",
    "l1": "mae",
    "l2": "mse",
    "dice_loss": "dice",
    "jaccard_loss": "jaccard",
    "iou": "jaccard",
}
_TERM = f"({'|'.join(LOSSES)})"
# One loss name, or a sum of them (`cross_entropy + dice`): the enum is what editors complete.
LOSS_NAME_SCHEMA = {
    "anyOf": [
        {"enum": list(LOSSES)},
        {"type": "string", "pattern": rf"^\s*{_TERM}(\s*\+\s*{_TERM})*\s*$"},
    ]
}
_FRACTION = r"\s*([0-9.]+)\s*/\s*([0-9.]+)\s*"  # `rescale: 1/255`


# --- preprocessing and augmentation ----------------------------------------------------------


class Normalize(Section):
    mean: list[float] = Field(description="Per-channel mean, subtracted.")
    std: list[Annotated[float, Field(gt=0.0)]] = Field(description="Per-channel std, divided by.")


class Preprocess(Section):
    """Steps recorded with the model, so evaluation and export apply exactly the same ones."""

    grayscale: bool = Field(False, description="Convert to one channel.")
    resize: Size | None = Field(None, description="Resize to [height, width].")
    center_crop: Size | None = Field(None, description="Crop the center [height, width].")
    rescale: Annotated[
        PositiveFloat | None,
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "number", "exclusiveMinimum": 0},
                    {"type": "string", "pattern": f"^{_FRACTION}$"},
                    {"type": "null"},
                ]
            }
        ),
    ] = Field(None, description="Multiply pixel values, e.g. 1/255.")
    normalize: Literal["dataset", "per_sample", "none"] | Normalize = Field(
        "none", description="Per-channel mean/std of the training split, per sample, or given."
    )

    @field_validator("rescale", mode="before")
    @classmethod
    def _fraction(cls, v: Any) -> Any:
        # `rescale: 1/255` reads better than 0.00392...; parsed as two numbers, never evaluated.
        if isinstance(v, str):
            m = re.fullmatch(_FRACTION, v)
            if m and float(m.group(2)) != 0:
                return float(m.group(1)) / float(m.group(2))
        return v


class Augment(Section):
    """Random transforms of training batches (never validation or test data)."""

    flip: Literal["horizontal", "vertical", "both"] | None = Field(
        None, description="Random flips: horizontal, vertical or both."
    )
    dihedral: bool = Field(False, description="Random one of the 8 symmetries of the square.")
    rotate: Annotated[float, Field(ge=0.0, le=180.0)] = Field(0.0, description="Max degrees.")
    shift: Fraction = Field(0.0, description="Max shift as a fraction of height/width.")
    zoom: Fraction = Field(0.0, description="Max zoom in or out, as a fraction.")


# --- optimization ---------------------------------------------------------------------------


class Optimizer(Section):
    """The optimizer; `optimizer: adam` is short for `{name: adam}`."""

    name: Literal[OPTIMIZERS] = Field("adam", description="sgd, adam, adamw or rmsprop.")  # type: ignore[valid-type]
    lr: PositiveFloat = Field(1e-3, description="Learning rate.")
    weight_decay: Annotated[float, Field(ge=0.0)] = Field(
        0.0, description="L2 penalty (decoupled for adamw)."
    )
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.0, description="sgd and rmsprop: momentum."
    )
    nesterov: bool = Field(False, description="sgd with momentum: Nesterov momentum.")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "Optimizer":
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer sgd with momentum > 0")
        return self


class Schedule(Section):
    """The learning-rate schedule; `schedule: cosine` is short for `{name: cosine}`."""

    name: Literal[SCHEDULES] = Field(description="step, cosine, one_cycle or plateau.")  # type: ignore[valid-type]
    step_size: PositiveInt = Field(10, description="step: epochs between decays.")
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = Field(0.1, description="step: decay factor.")
    max_lr: PositiveFloat | None = Field(None, description="one_cycle: peak lr (default 10x lr).")
    min_lr: Annotated[float, Field(ge=0.0)] = Field(0.0, description="cosine, plateau: lowest lr.")
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(0.1, description="plateau: lr factor.")
    patience: PositiveInt = Field(3, description="plateau: epochs without improvement.")
    monitor: str = Field("val_loss", description="plateau: " + MONITOR)


class Loss(Section):
    """One loss, or a weighted sum of terms: `cross_entropy + dice`."""

    name: Annotated[str, WithJsonSchema(LOSS_NAME_SCHEMA)] = Field(
        description=f"One of {', '.join(LOSSES)}, or several joined by '+'."
    )
    weights: list[Annotated[float, Field(gt=0.0)]] | None = Field(
        None, description="Weight of each term of a sum (default 1 each)."
    )
    class_weights: list[Annotated[float, Field(ge=0.0)]] | Literal["balanced"] | None = Field(
        None,
        description="Cross-entropy weight of each class, or `balanced` (inverse frequency in "
        "the training split).",
    )
    label_smoothing: Fraction = Field(0.0, description="Cross-entropy label smoothing.")

    @field_validator("name")
    @classmethod
    def _terms(cls, v: str) -> str:
        terms = [t.strip() for t in v.split("+")]
        for t in terms:
            if t not in LOSSES:
                from netspec.layers.base import suggest

                hint = LOSS_ALIASES.get(t.lower().replace("-", "_")) or suggest(t, LOSSES)
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
    def _weights_per_term(self) -> "Loss":
        if self.weights is not None and len(self.weights) != len(self.terms):
            raise ValueError(
                f"{len(self.weights)} weights for {len(self.terms)} loss terms; give one per term"
            )
        return self


class Regularize(Section):
    """Penalties on the weights of the layers whose names match `layers` (glob patterns)."""

    layers: list[str] = Field(
        default_factory=lambda: ["*"], description='Layer name patterns, e.g. "dense*".'
    )
    l1: Annotated[float, Field(ge=0.0)] = Field(0.0, description="Weight of the L1 penalty.")
    l2: Annotated[float, Field(ge=0.0)] = Field(0.0, description="Weight of the L2 penalty.")


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


class EarlyStopping(Section):
    """Stop when the monitored value stops improving."""

    monitor: str = Field("val_loss", description=MONITOR)
    patience: PositiveInt = Field(5, description="Epochs without improvement before stopping.")
    min_delta: Annotated[float, Field(ge=0.0)] = Field(
        0.0, description="The smallest change that counts as an improvement."
    )
    restore_best: bool = Field(True, description="End with the best epoch's weights.")


class Checkpoint(Section):
    """Which weights the run directory keeps."""

    monitor: str = Field("val_loss", description=MONITOR)
    best: bool = Field(True, description="Keep the best epoch's weights.")
    last: bool = Field(True, description="Keep the last epoch's state, to resume from.")


class ReduceLROnPlateau(Section):
    """Lower the learning rate when the monitored value stops improving."""

    monitor: str = Field("val_loss", description=MONITOR)
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(0.1, description="lr factor.")
    patience: PositiveInt = Field(3, description="Epochs without improvement.")
    min_lr: Annotated[float, Field(ge=0.0)] = Field(0.0, description="Lowest lr.")


class Callbacks(Section):
    """What runs at the end of each epoch."""

    early_stopping: EarlyStopping | None = Field(None, description="Stop when training stalls.")
    checkpoint: Checkpoint = Field(default_factory=Checkpoint, description="Weights to keep.")
    reduce_lr_on_plateau: ReduceLROnPlateau | None = Field(
        None, description="Lower the lr when training stalls."
    )
    stop_on_nan: bool = Field(True, description="Stop when the loss is NaN or infinite.")
    csv_log: bool = Field(True, description="Write metrics.csv.")


class Log(Section):
    """What a run records besides its metrics: pictures at the end, live TensorBoard events."""

    pictures: bool = Field(
        True,
        description="Draw the pictures at the end of training: history.png, predictions.png "
        "(segmentation), completions.png (image completion) and the classification report's "
        "confusion_matrix.png, mistakes.png and roc.png. false: their data only (metrics.csv, "
        "classification_report.txt/.json), for sweeps and scripted runs that never look.",
    )

    tensorboard: bool = Field(
        False,
        description="Write TensorBoard event files to <run>/tensorboard/: every epoch's losses, "
        "metrics and learning rate, the network's graph, and a grid of predictions. Needs the "
        "tensorboard package (pip install 'netspec[tensorboard]'); view with "
        "`tensorboard --logdir runs/`.",
    )


class Init(Section):
    """Transfer learning: load weights by layer name (and shape) from a run or weights file."""

    from_: str = Field(alias="from", description="A run directory or a weights file.")
    layers: list[str] = Field(
        default_factory=lambda: ["*"], description='Layer name patterns to load, e.g. "conv2d*".'
    )

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, defer_build=True)


def _shorthand_schema(schema: dict[str, Any]) -> None:
    """The JSON Schema side of TrainSpec._shorthands: a bare name for loss, optimizer and
    schedule, and YAML 1.1's on/off booleans for channels_last."""
    props = schema["properties"]
    props["loss"]["anyOf"].insert(1, LOSS_NAME_SCHEMA)
    props["optimizer"] = {"anyOf": [props["optimizer"], {"enum": list(OPTIMIZERS)}]}
    props["schedule"]["anyOf"].insert(1, {"enum": list(SCHEDULES)})
    props["channels_last"].pop("type")
    props["channels_last"]["enum"] += [True, False]


class TrainSpec(Section):
    """Everything `netspec train` needs besides the network."""

    model_config = ConfigDict(json_schema_extra=lambda schema, cls: _shorthand_schema(schema))

    data: DataSpec = Field(description="Where the data comes from and how it is split.")
    preprocess: Preprocess = Field(default_factory=Preprocess)
    augment: Augment = Field(default_factory=Augment)
    batch_size: PositiveInt = Field(32, description="Samples per training step.")
    epochs: PositiveInt = Field(10, description="Passes over the training split.")
    optimizer: Optimizer = Field(default_factory=Optimizer)
    schedule: Schedule | None = None
    loss: Loss | None = Field(None, description="Default: from the output layer and the data.")
    metrics: list[Literal[METRICS]] | None = Field(  # type: ignore[valid-type]
        None,
        description="Default: accuracy for classification, mae for regression, "
        "iou + dice + pixel_accuracy for segmentation.",
    )
    regularize: list[Regularize] = Field(
        # Not `list`: pydantic reads a default factory's signature, and a builtin's costs
        # tokenize's regex, ~8 ms of every first validation (docs/performance.md).
        default_factory=lambda: [],
        description="Weight penalties (L1, L2) on the layers whose names match each rule.",
    )
    callbacks: Callbacks = Field(default_factory=Callbacks)
    log: Log = Field(
        default_factory=Log, description="Pictures at the end, live logging (TensorBoard)."
    )
    init: Init | None = None
    seed: int = Field(0, description="Seed of every random number generator.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16 autocast on CUDA when asked; CPU trains in fp32."
    )
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="Channels-last memory layout on CUDA: auto, on or off."
    )
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
