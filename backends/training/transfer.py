"""Transfer learning: initialize layers from another run's weights by layer name and shape."""

from __future__ import annotations

import fnmatch

import torch

from netspec.data.paths import resolve_path
from netspec.errors import Problem, SpecError
from netspec.run_record import RunLayout
from netspec.train_spec import Init

from ..lowering import NetModule
from ..weights import load_weights, weights
from . import checkpoint


def init_from(module: NetModule, init: Init, spec_file: str | None) -> list[str]:
    """Transfer learning: copy the tensors of layers matching `init.layers` by name and shape.

    Returns the names of the layers loaded. Patterns that match no layer of the network are
    refused when the spec is compiled (netspec.train_checks); here only the source file can fail.
    """
    src = resolve_path(init.from_, spec_file)
    if src.is_dir():
        src = RunLayout(src).weights
    tensors, _ = checkpoint.load(src)
    own = weights(module)
    picked: dict[str, torch.Tensor] = {}
    problems = []
    for key, value in tensors.items():
        layer = key.rsplit(".", 1)[0]
        if not any(fnmatch.fnmatchcase(layer, pat) for pat in init.layers):
            continue
        if key not in own:
            continue
        if tuple(own[key].shape) != tuple(value.shape):
            problems.append(
                Problem(
                    f"train.init: '{key}' has shape {tuple(value.shape)} in {src} but "
                    f"{tuple(own[key].shape)} in this network",
                    hint="list only the layers that match in `init.layers`",
                )
            )
            continue
        picked[key] = value
    if problems:
        raise SpecError(problems)
    if not picked:
        raise SpecError.one(
            f"train.init: no layer of {src} matches {init.layers} by name",
            hint="layer names are those of `netspec summary`",
        )
    load_weights(module, picked, strict=False)
    return sorted({k.rsplit(".", 1)[0] for k in picked})
