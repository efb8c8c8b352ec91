"""An ensemble for predict: several exported models fed the same inputs, probabilities averaged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from .errors import error, shape
from .model import ModelInfo, OnnxModel, kind_of
from .outputs import probabilities

# Preprocessing keys that are value steps: each member applies its own (they may come from
# different training splits). Every other key says how an input file is read, so members share it.
VALUE_STEPS = frozenset({"scale", "mean", "std", "per_sample", "target_mean", "target_std"})
HEADS = {"multiclass": "softmax", "binary": "sigmoid"}


def reading(info: ModelInfo) -> dict[str, object]:
    """How the model reads an input file: its preprocessing without the value steps."""
    pre = info.pre.to_dict() if info.pre is not None else {}
    return {k: v for k, v in pre.items() if k not in VALUE_STEPS}


def check_members(infos: Sequence[ModelInfo]) -> str:
    """The members' common kind; an error naming the first member that differs from the first."""
    first = infos[0]
    inside = next((info for info in infos if info.in_graph), None)
    if inside is not None:
        raise error(
            "--ensemble: the model takes decoded images and preprocesses them in its graph "
            "(export --preprocess); members must take the same preprocessed input",
            inside.path,
            hint="ensemble the exports without --preprocess",
        )
    kind = kind_of(first)
    if kind == "segmentation":
        raise error("--ensemble: segmentation models are not ensembled", first.path)
    for info in infos[1:]:
        for what, a, b in (
            ("task", kind, kind_of(info)),
            ("input", shape(first.raw_shape), shape(info.raw_shape)),
            ("output", shape(first.output_shape), shape(info.output_shape)),
            ("classes", first.classes, info.classes),
            ("input reading (preprocessing)", reading(first), reading(info)),
        ):
            if a != b:
                raise error(
                    f"--ensemble: the members differ in their {what}: {a} in {first.path}, "
                    f"{b} in {info.path}",
                    info.path,
                    hint="ensemble runs of one spec (for example trained with --set train.seed=N)",
                )
    return kind


class Ensemble:
    """OnnxModel's interface over several models: the mean of their probabilities (or values)."""

    def __init__(self, models: Sequence[str | Path], device: str = "auto") -> None:
        self.members = [OnnxModel(m, device) for m in models]
        kind = check_members([m.info for m in self.members])
        # The averaged outputs are probabilities already: the interpreter must not squash them.
        self.info = replace(self.members[0].info, head=HEADS.get(kind))

    def run(self, raw: np.ndarray) -> np.ndarray:
        """The members' mean output (float32) for a batch of raw samples (N, *raw_shape)."""
        outs = [probabilities(m.run(raw), m.info) for m in self.members]
        return np.mean(outs, axis=0, dtype=np.float64).astype(np.float32)
