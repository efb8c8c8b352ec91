"""Weights by layer name: the one mapping between a NetModule's state_dict and `<layer>.<tensor>` keys."""

from __future__ import annotations

import numpy as np
import torch

from netspec.errors import DataError
from netspec.ir import Graph
from netspec.runs import TORCH_COUNTERS

from .lowering import NetModule, build_module


def _layer_names(module: NetModule) -> dict[str, str]:
    """Module key -> layer name (they differ only for names torch cannot use, like 'a.b')."""
    return {key: name for name, key in module.module_keys.items()}


def _by_name(module: NetModule, key: str) -> str:
    head, rest = key.split(".", 1)
    return f"{_layer_names(module).get(head, head)}.{rest}"


def weights(module: NetModule) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, keyed `<layer name>.<tensor>` as in the summary."""
    names = _layer_names(module)
    out = {}
    for key, t in module.state_dict().items():
        head, rest = key.split(".", 1)
        out[f"{names.get(head, head)}.{rest}"] = t
    return out


def module_weights(module: NetModule) -> dict[str, np.ndarray]:
    """`weights(module)` as numpy arrays (for the ONNX exporter and runs without torch)."""
    return {k: t.detach().cpu().numpy() for k, t in weights(module).items()}


def named_parameters(module: NetModule) -> list[tuple[str, str, torch.nn.Parameter]]:
    """(layer name, tensor name, parameter) for every parameter."""
    names = _layer_names(module)
    out = []
    for key, p in module.named_parameters():
        head, rest = key.split(".", 1)
        out.append((names.get(head, head), rest, p))
    return out


def load_weights(
    module: NetModule, tensors: dict[str, torch.Tensor | np.ndarray], *, strict: bool = True
) -> None:
    """Load tensors keyed `<layer name>.<tensor>` (strict: all of them, and nothing else).

    torch's own counters (BatchNorm's num_batches_tracked) may be absent: no other runtime
    keeps them, and inference does not read them.
    """
    keys = module.module_keys
    by_length = sorted(keys, key=len, reverse=True)  # layer names may hold '.': longest first
    current = module.state_dict()
    state = {}
    for key, t in tensors.items():
        head, rest = key.split(".", 1) if "." in key else (key, "")
        for name in by_length:
            if key.startswith(name + "."):
                head, rest = name, key[len(name) + 1 :]
                break
        own = f"{keys.get(head, head)}.{rest}"
        value = torch.as_tensor(np.asarray(t)) if isinstance(t, np.ndarray) else t
        state[own] = value.to(current[own].dtype) if own in current else value
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if k.rsplit(".", 1)[-1] not in TORCH_COUNTERS]
    if strict and (missing or unexpected):
        raise DataError.one(
            "the weights do not fit this network: missing "
            f"{sorted(_by_name(module, k) for k in missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )


def load_module(graph: Graph, weights: dict[str, np.ndarray]) -> NetModule:
    """The PyTorch module of `graph` with these weights, in eval mode."""
    module = build_module(graph)
    load_weights(module, weights)
    return module.eval()
