"""Activations in torch: one module per `Act`, for activation layers and fused `activation:` alike."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from netspec.layers.activations import Act
from netspec.shapes import batch_axis

# What each activation name computes, given its resolved Act and the per-sample rank (softmax's
# axis gains the batch axis). netspec.layers.base.ACTIVATIONS lists the names; linear is None.
ACT_MODULES: dict[str, Callable[[Act, int], nn.Module]] = {
    "relu": lambda act, rank: nn.ReLU(),
    "leaky_relu": lambda act, rank: nn.LeakyReLU(act.slope),
    "sigmoid": lambda act, rank: nn.Sigmoid(),
    "tanh": lambda act, rank: nn.Tanh(),
    "softmax": lambda act, rank: nn.Softmax(dim=batch_axis(act.axis, rank)),
    "gelu": lambda act, rank: nn.GELU(approximate=act.approximate),
    "silu": lambda act, rank: nn.SiLU(),
    "relu6": lambda act, rank: nn.ReLU6(),
    "hard_sigmoid": lambda act, rank: nn.Hardsigmoid(),  # relu6(x + 3) / 6, as Keras 3
    "hard_swish": lambda act, rank: nn.Hardswish(),  # x * hard_sigmoid(x), Keras' hard_silu
    "elu": lambda act, rank: nn.ELU(act.alpha),
}


def act_module(act: Act | None, rank: int) -> nn.Module:
    """The parameter-free module computing `act` on (N, *shape) of per-sample `rank`."""
    if act is None:  # linear
        return nn.Identity()
    return ACT_MODULES[act.fn](act, rank)


class FusedActivation:
    """Mixin for a weighted layer with an `activation:`: the function is a plain attribute (the
    unregistered activation module's forward), so the state_dict keys stay those of the torch
    layer; `forward_linear` skips it (for logits)."""

    act: Callable[[Tensor], Tensor] | None
    act_name: str

    def set_activation(self, act: Act | None, rank: int) -> None:
        self.act_name = "linear" if act is None else act.fn
        self.act = None if act is None else act_module(act, rank).forward

    def forward_linear(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        y = self.forward_linear(x)
        act = self.act
        return y if act is None else act(y)

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        return base if self.act_name == "linear" else f"{base}, activation={self.act_name}"
