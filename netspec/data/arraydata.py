"""The in-memory dataset every loader returns: features, targets, class names, provenance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netspec.data._common import data_error
from netspec.errors import DataError

# numpy for the annotations only: `netspec summary` imports this module (through the run
# record's TableColumns) and starts without numpy (docs/performance.md).
if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class TableColumns:
    """A table's feature columns as the CSV names them, so predict can read rows in its format.

    columns: (name, categories) per feature column, in x's order; categories (sorted) for a
    one-hot encoded column, None for a numeric one. target: the target column's name.
    """

    target: str
    columns: tuple[tuple[str, tuple[str, ...] | None], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "columns": [
                {"name": name, "categories": None if cats is None else list(cats)}
                for name, cats in self.columns
            ],
        }

    @classmethod
    def from_dict(cls, d: Any, file: str | None = None) -> TableColumns:
        """The columns back from their JSON form (model.json, an ONNX model's card); DataError
        naming `file` when it is not `{target, columns: [{name, categories}, ...]}`."""
        columns = d.get("columns") if isinstance(d, Mapping) else None
        if not (
            isinstance(d, Mapping)
            and isinstance(d.get("target"), (str, int))
            and isinstance(columns, list)
            and all(_column_ok(c) for c in columns)
        ):
            raise DataError.one(
                f"the table record {str(d)[:80]!r} is malformed: expected its target and columns",
                file,
                hint="the file was not written by netspec, or was edited: train the run again",
            )
        return cls(
            str(d["target"]),
            tuple(
                (
                    str(c["name"]),
                    None if c.get("categories") is None else tuple(map(str, c["categories"])),
                )
                for c in columns
            ),
        )


def _column_ok(c: Any) -> bool:
    return (
        isinstance(c, Mapping)
        and isinstance(c.get("name"), (str, int))
        and (c.get("categories") is None or isinstance(c.get("categories"), list))
    )


# eq=False: dataclass equality would compare arrays elementwise and raise on `==`.
@dataclass(frozen=True, eq=False)
class ArrayData:
    """A whole dataset held in memory, channels first.

    x: (N, C, H, W) uint8 or float32 for images, (N, F) float32 for tables.
    y: (N,) int64 class indices for classification; (N,) or (N, K) float32 for regression.
    classes: class names (index i names class i) for classification, None for regression.
    source: where the data came from, for messages and run records.
    notes: things the loader did that a user should know (rows dropped, files skipped).
    feature_names: one name per column of a table's x (after one-hot encoding), else None.
    table: a CSV table's source columns (TableColumns), else None.
    bit_depth: an image folder's deepest image (8 or 16 bits per value), else None.
    """

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...] | None
    source: str
    notes: tuple[str, ...] = ()
    feature_names: tuple[str, ...] | None = None
    table: TableColumns | None = None
    bit_depth: int | None = None

    def __post_init__(self) -> None:
        if self.x.ndim < 1 or self.y.ndim < 1 or self.x.shape[0] != self.y.shape[0]:
            raise data_error(
                f"{self.source}: x has shape {tuple(self.x.shape)} and y has shape "
                f"{tuple(self.y.shape)}; expected the same number of samples (first axis) in both"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def is_classification(self) -> bool:
        return self.classes is not None

    @property
    def is_segmentation(self) -> bool:
        """y is (N, H, W) per-pixel class indices (-1 = ignored) rather than one label each."""
        return self.y.ndim == 3
