"""Helpers shared by the test modules (imported as `from helpers import ...`; tests/ is on sys.path).

Fixtures live in conftest.py; plain functions live here so a test can call them with arguments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import netspec
from netspec.cli import app
from netspec.layers import BatchNorm

REPO = Path(__file__).resolve().parents[1]

runner = CliRunner()


def plain_specs() -> list[Path]:
    """specs/*.yaml without the search specs (tests/test_tune.py tests those: they are spaces
    of networks, not one network to compile, lower or export)."""
    from netspec.search import find_search
    from netspec.source import read

    return [p for p in sorted((REPO / "specs").glob("*.yaml")) if not find_search(read(p))]


def invoke(*args: str | Path):
    """`netspec ARGS...` through Typer's CliRunner; whatever happens, never a traceback."""
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def fails(result, *needles: str, problems: int = 1) -> str:
    """Exit 2 with one error line per problem (one, unless told), naming what is wrong.

    Every needle must be in the output; the output is returned for further checks.
    """
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if "error:" in line]
    assert len(errors) == problems, result.output
    for needle in needles:
        assert needle in result.output, result.output
    return result.output


def random_weights(graph: netspec.Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights of the shapes each layer declares (`node.weights`), without torch.

    Fan-in scaled normals for kernels, small normals for 1-D tensors (biases, shifts, means),
    and batchnorm scales and running variances in [0.5, 1.5] so that nothing divides by ~0.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for node in graph.nodes:
        for name, weight in node.weights.items():
            shape = weight.shape
            if isinstance(node.layer, BatchNorm) and name in ("weight", "running_var"):
                value = rng.uniform(0.5, 1.5, shape)
            elif len(shape) == 1:
                value = 0.1 * rng.standard_normal(shape)
            else:
                value = rng.standard_normal(shape) / np.sqrt(max(1, int(np.prod(shape[1:]))))
            weights[f"{node.name}.{name}"] = value.astype(np.float32)
    return weights
