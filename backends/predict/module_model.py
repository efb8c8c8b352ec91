"""A run's torch module seen as predict sees an ONNX model: `Run.predict` without an export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from netspec.ir import Graph
from netspec.run_record import RunMeta

from ..export.model import metadata, target_affine
from ..training.device import pick_device
from .model import OnnxModel, info_of


class ModuleModel(OnnxModel):
    """A trained module with the card an export of its run would carry (same ModelInfo, same
    preprocessing and outputs), run by PyTorch instead of onnxruntime."""

    def __init__(
        self, graph: Graph, meta: RunMeta | None, module: Any, path: Path, device: str = "auto"
    ) -> None:
        self.session = None
        dims = [None, *graph.input_shape]
        self.info = info_of(
            path, "input", "tensor(float)", dims, "output", [None, *graph.output.shape],
            metadata(graph, meta),
        )  # fmt: skip
        self.dtype = np.float32
        self.device = pick_device(device)
        self.module = module.to(self.device).eval()
        # An export un-standardizes regression targets inside the graph; the module does not.
        self.affine = target_affine(meta.preprocessing if meta is not None else None)

    def _run(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.module(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
        if self.affine is not None:
            mean, std = self.affine
            out = out * std + mean
        return np.asarray(out, dtype=np.float32)
