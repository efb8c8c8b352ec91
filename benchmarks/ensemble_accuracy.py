"""Test accuracy of several runs of one spec and of their ensemble (the mean of their probabilities).

The runs must share their test split (train them with a fixed `train.data.split_seed`, as
specs/nielsen_sigmoid.yaml does, and `--set train.seed=N`). Each run needs its model.onnx
(`netspec export RUN`); the ensemble is the graph `netspec export --ensemble` writes,
run in onnxruntime on the first run's test split, preprocessed as the model records.

    python benchmarks/ensemble_accuracy.py runs/ns0 runs/ns1 runs/ns2 runs/ns3 runs/ns4
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from netspec.backends.export.ensemble import export_ensemble
from netspec.backends.predict.model import OnnxModel
from netspec.data.pipeline import SplitOptions, prepare
from netspec.runs import read_run


def accuracy(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of an exported model on raw samples x (preprocessed as it records)."""
    predictor = OnnxModel(model, "cpu")
    return float((predictor.run(x).argmax(axis=1) == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    graph = read_run(args.runs[0]).graph
    test = prepare(graph.train, SplitOptions.of(graph)).test
    assert test is not None, "the runs have no test split"
    for run in args.runs:
        print(f"{run}: {accuracy(run / 'model.onnx', test.x, test.y):.4f}")
    with tempfile.TemporaryDirectory() as tmp:
        report = export_ensemble(args.runs, Path(tmp) / "ensemble.onnx")
        print(f"ensemble of {len(args.runs)}: {accuracy(report.path, test.x, test.y):.4f}")
    print(f"({len(test)} test samples)")


if __name__ == "__main__":
    main()
