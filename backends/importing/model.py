"""What every importer gives: a model from another tool as a netspec spec and its weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Imported:
    """A model file read by an importer (`read_keras`, `read_onnx`), before anything is written.

    `spec` is a spec mapping as a user would write it (name, input, layers, blocks; no train:),
    with the source's layer names kept; `weights` holds every tensor the compiled spec declares,
    under netspec's `<layer>.<tensor>` names and in netspec's layouts (torch's (out, in) kernels,
    OIHW convolutions, the gate orders of netspec.layers.recurrent).
    """

    spec: dict[str, Any]
    weights: dict[str, np.ndarray]
    source: Path
    producer: str  # what made the file, e.g. "keras 3.15.1 (.keras)", "onnx: pytorch 2.13"
    # "NHWC" / "NWC" when the source model takes channels-last inputs: netspec's input is
    # channels-first, and predict transposes what the user passes as the source model took it.
    input_layout: str | None = None
    # Keras Rescaling/Normalization layers at the input, as the preprocessing record's fields
    # (netspec.data.preprocess.Preprocessing: rescale, mean, std).
    preprocessing: dict[str, Any] | None = None
    classes: tuple[str, ...] | None = None
    notes: list[str] = field(default_factory=list)  # told once after importing
