"""Keras 3 ops on a tensor and a number (`x + 3.0`, module keras.src.ops): the patterns netspec
has a layer kind for. Today MobileNetV3's hard_sigmoid, ReLU(6)(x + 3) * (1/6)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .keras_layers import Convert, Refuse, T


def _only_user(state: Any, name: str, cls: str) -> Any:
    users = state.consumers.get(name, [])
    return users[0] if len(users) == 1 and users[0].cls == cls else None


def constant_op(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    """A Keras 3 op on a tensor and a number: netspec has MobileNetV3's hard_sigmoid,
    ReLU(6)(x + 3) * (1/6), which becomes one `hard_sigmoid` (the ReLU and op after it absorbed)."""
    if la.name in state.absorbed:
        return xs[0]
    relu = _only_user(state, la.name, "ReLU")
    scale = relu and _only_user(state, relu.name, "ops.Multiply")
    cfg = relu.config if relu else {}
    if (
        la.cls == "ops.Add"
        and len(xs) == 1
        and la.constants == [3.0]
        and scale
        and cfg.get("max_value") is not None
        and float(cfg["max_value"]) == 6.0
        and not cfg.get("negative_slope")
        and not cfg.get("threshold")
        and len(scale.constants) == 1
        and abs(scale.constants[0] - 1 / 6) < 1e-6
    ):
        state.absorbed |= {relu.name, scale.name}
        name = state.add("hard_sigmoid", None, state.name(scale.name), xs)
        return T(name, xs[0].layout, xs[0].rank, xs[0].perm)
    op = la.cls.removeprefix("ops.")
    raise Refuse(
        f"the op {op} with constants {la.constants}",
        "netspec imports Keras ops only as relu6(x + 3) * (1/6), a hard_sigmoid",
    )


CONVERTERS: dict[str, Convert] = dict.fromkeys(("ops.Add", "ops.Multiply"), constant_op)
