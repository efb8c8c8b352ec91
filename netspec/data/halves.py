"""Image completion data: the upper half of each image as input, its lower half as the targets."""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

import numpy as np

from netspec.data._common import data_error
from netspec.data.arraydata import ArrayData

MaybeData = TypeVar("MaybeData", ArrayData, None)


def lower_half(data: ArrayData) -> ArrayData:
    """x: the top floor(H/2) rows (N, C, H/2, W), same dtype; y: the other rows (N, C*(H-H/2)*W).

    Targets are float32 in the images' own units (so `prepare` can rescale them with the
    inputs); class labels are dropped, which makes the task a multi-output regression.
    """
    x = data.x
    if x.ndim != 4 or data.y.ndim == 3:
        raise data_error(
            f"{data.source}: `complete: lower_half` needs images (N, C, H, W) with one label or "
            f"target each, got x of shape {tuple(x.shape)}",
            hint="use it with an image source: mnist, builtin digits, folder, arrays, cifar10",
        )
    h = x.shape[2]
    if h < 2:
        raise data_error(f"{data.source}: images {h} pixel high have no halves to complete")
    top = h // 2
    return ArrayData(
        x=np.ascontiguousarray(x[:, :, :top, :]),
        y=x[:, :, top:, :].reshape(len(x), -1).astype(np.float32),
        classes=None,
        source=f"{data.source}, upper halves -> lower halves",
        notes=(
            *data.notes,
            f"completion: inputs are the top {top} rows, targets the {h - top} rows below",
        ),
    )


def scaled_targets(data: MaybeData, scale: float) -> MaybeData:
    """Completion targets times the inputs' `rescale`: pixels in the units the network sees,
    which a sigmoid output can reach."""
    return data if data is None or scale == 1.0 else replace(data, y=data.y * np.float32(scale))
