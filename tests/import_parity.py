"""What the import tests compare: an imported run's outputs in torch and an ONNX file's in
onnxruntime, against the source model's within 1e-4 of the output scale (issue 22's bound)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def torch_out(run: Path, x: np.ndarray) -> np.ndarray:
    """The run's module (netspec's lowering of its spec and weights) on x."""
    import torch

    from netspec.backends.weights import load_module
    from netspec.runs import read_run

    loaded = read_run(run)
    with torch.no_grad():
        return load_module(loaded.graph, loaded.weights)(torch.from_numpy(x)).numpy()


def onnx_out(path: Path, x: np.ndarray) -> np.ndarray:
    """The ONNX model's first output on x, in onnxruntime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def close(got: np.ndarray, want: np.ndarray) -> None:
    """Same shape, and within 1e-4 of the larger of 1 and the source's output scale."""
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))
