"""Lower a netspec IR graph to PyTorch: `build_module(graph)` gives a NetModule keyed by layer name."""

from __future__ import annotations

from .activations import act_module
from .layers import LOWERINGS, lower_node
from .module import NetModule, build_module, count_tensors

__all__ = ["LOWERINGS", "NetModule", "act_module", "build_module", "count_tensors", "lower_node"]
