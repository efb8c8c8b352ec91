"""PredictError and the wording its messages share: shapes with ? for dynamic sizes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from netspec.errors import NetspecError


class PredictError(NetspecError):
    """The model or an input cannot be used for prediction."""

    default_kind = "data"


def error(
    message: str,
    file: str | Path | None = None,
    hint: str | None = None,
    kind: str | None = None,
) -> PredictError:
    """A PredictError; its kind is `kind`, else usage (an option: no file) or data (an input)."""
    kind = kind or ("usage" if file is None else "data")
    return PredictError.one(message, None if file is None else str(file), hint=hint, kind=kind)


def model_error(message: str, file: str | Path, hint: str | None = None) -> PredictError:
    """A PredictError about the model itself (its inputs, metadata, a failing run)."""
    return error(message, file, hint, kind="model")


def shape(dims: Sequence[int | str | None]) -> str:
    """(1, 8, 8), with ? for a dynamic dimension."""
    body = ", ".join("?" if d is None else str(d) for d in dims)
    return f"({body},)" if len(dims) == 1 else f"({body})"


def size(d: int | None) -> str:
    return "?" if d is None else str(d)


def fits(array_shape: Sequence[int], dims: Sequence[int | None]) -> bool:
    """Whether an array's shape is `dims` (a None dimension takes any size)."""
    return len(array_shape) == len(dims) and all(
        d is None or s == d for s, d in zip(array_shape, dims)
    )
