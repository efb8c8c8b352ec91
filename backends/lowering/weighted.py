"""Layers with weights (dense, convolutions, separable, batch/layer norm): torch modules and lowerings."""

# Conventions that are not plain torch defaults, so weights and numbers match Keras and the ONNX
# export: kernels are glorot-uniform and biases zero; SAME padding is SAME_UPPER (the odd extra
# cell at the end), asymmetric pads an F.pad before the op, symmetric ones the op's `padding=`;
# a frozen (`trainable: false`) batchnorm always normalizes with its running statistics, as a
# frozen Keras BatchNormalization does.

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from netspec.ir import Node
from netspec.layers import (
    BatchNorm,
    Conv1D,
    Conv2D,
    ConvTranspose2D,
    Dense,
    LayerNorm,
    PReLU,
    SeparableConv2D,
)
from netspec.layers.activations import activation_of
from netspec.layers.window import windows
from netspec.shapes import Window

from .activations import FusedActivation


def _keras_init(module: nn.Module) -> nn.Module:
    """glorot_uniform kernel, zero bias (torch's fan computation matches Keras for every layout)."""
    nn.init.xavier_uniform_(module.weight)  # type: ignore[arg-type]
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)  # type: ignore[arg-type]
    return module


def _fuse(module: FusedActivation, node: Node) -> nn.Module:
    """Attach the node's `activation:` and initialize the weights."""
    rank = len(node.shape)
    module.set_activation(activation_of(node.layer, rank), rank)
    return _keras_init(module)  # type: ignore[arg-type]


class LinearAct(FusedActivation, nn.Linear):
    """nn.Linear on the last axis with an optional activation."""

    def forward_linear(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class _ConvAct(FusedActivation):
    """Convolution with SAME_UPPER/asymmetric padding as an F.pad before the op."""

    pre_pad: tuple[int, ...] | None  # F.pad order: last axis first, (begin, end) each

    def forward_linear(self, x: Tensor) -> Tensor:
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        return self._conv_forward(x, self.weight, self.bias)  # type: ignore[attr-defined]


class Conv1dAct(_ConvAct, nn.Conv1d):
    pass


class Conv2dAct(_ConvAct, nn.Conv2d):
    pass


def _split_pads(wins: Sequence[Window]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Per-axis symmetric part (for the op's `padding=`) and the F.pad for the rest (or None)."""
    sym = tuple(min(w.pad_begin, w.pad_end) for w in wins)
    extra: list[int] = []
    for w, s in zip(reversed(wins), reversed(sym)):
        extra += [w.pad_begin - s, w.pad_end - s]
    return sym, (tuple(extra) if any(extra) else None)


def lower_dense(node: Node) -> nn.Module:
    layer: Dense = node.layer  # type: ignore[assignment]
    return _fuse(LinearAct(node.input_shapes[0][-1], layer.units, bias=layer.bias), node)


def lower_conv(node: Node) -> nn.Module:
    layer: Conv1D | Conv2D = node.layer  # type: ignore[assignment]
    x = node.input_shapes[0]
    wins = windows(layer, x[1:])
    sym, extra = _split_pads(wins)
    cls = Conv1dAct if isinstance(layer, Conv1D) else Conv2dAct
    m = cls(
        x[0],
        layer.filters,
        tuple(layer.kernel),
        stride=tuple(layer.stride),
        padding=sym,
        dilation=tuple(layer.dilation),
        groups=layer.groups,
        bias=layer.bias,
    )
    m.pre_pad = extra
    return _fuse(m, node)


class SeparableConv2dAct(FusedActivation, nn.Module):
    """Keras' SeparableConv2D: a depthwise conv (groups = input channels, no bias), then a 1x1
    conv with the bias; tensors named as `SeparableConv2D.weights` declares them."""

    def __init__(self, layer: SeparableConv2D, channels: int, sym: tuple[int, ...]) -> None:
        super().__init__()
        mid = channels * layer.depth_multiplier
        self.depthwise_weight = nn.Parameter(torch.empty(mid, 1, *layer.kernel))
        self.pointwise_weight = nn.Parameter(torch.empty(layer.filters, mid, 1, 1))
        self.bias = nn.Parameter(torch.zeros(layer.filters)) if layer.bias else None
        self.stride, self.padding = tuple(layer.stride), sym
        self.dilation, self.groups = tuple(layer.dilation), channels
        nn.init.xavier_uniform_(self.depthwise_weight)
        nn.init.xavier_uniform_(self.pointwise_weight)
        self.pre_pad: tuple[int, ...] | None = None

    def forward_linear(self, x: Tensor) -> Tensor:
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        y = F.conv2d(
            x, self.depthwise_weight, None, self.stride, self.padding, self.dilation, self.groups
        )
        return F.conv2d(y, self.pointwise_weight, self.bias)

    def extra_repr(self) -> str:
        act = "" if self.act_name == "linear" else f", activation={self.act_name}"
        return (
            f"depthwise={tuple(self.depthwise_weight.shape)}, "
            f"pointwise={tuple(self.pointwise_weight.shape)}, stride={self.stride}{act}"
        )


def lower_separable(node: Node) -> nn.Module:
    layer: SeparableConv2D = node.layer  # type: ignore[assignment]
    x = node.input_shapes[0]
    sym, extra = _split_pads(windows(layer, x[1:]))
    m = SeparableConv2dAct(layer, x[0], sym)
    m.pre_pad = extra
    rank = len(node.shape)
    m.set_activation(activation_of(layer, rank), rank)
    return m


class ConvTranspose2dAct(FusedActivation, nn.ConvTranspose2d):
    """Transposed convolution; `crop` removes what torch's symmetric `padding` cannot (SAME)."""

    crop: tuple[tuple[int, int], ...] | None  # (begin, end) per spatial axis after the op

    def forward_linear(self, x: Tensor) -> Tensor:
        y = F.conv_transpose2d(
            x,
            self.weight,
            self.bias,
            self.stride,
            self.padding,  # type: ignore[arg-type]
            self.output_padding,
            self.groups,
            self.dilation,
        )
        if self.crop is not None:
            (top, bottom), (left, right) = self.crop
            y = y[:, :, top : y.shape[2] - bottom, left : y.shape[3] - right]
        return y


def lower_conv_transpose(node: Node) -> nn.Module:
    layer: ConvTranspose2D = node.layer  # type: ignore[assignment]
    sym, crop, extra = [], [], []
    for b, e in layer.pads():
        if e < 0:  # the output grows by -e rows at the end: torch's output_padding
            sym.append(0)
            crop.append((b, 0))
            extra.append(-e)
        else:
            s = min(b, e)
            sym.append(s)
            crop.append((b - s, e - s))
            extra.append(0)
    given = tuple(layer.output_padding or (0, 0))
    output_padding = tuple(g + x for g, x in zip(given, extra))
    m = ConvTranspose2dAct(
        node.input_shapes[0][0],
        layer.filters,
        tuple(layer.kernel),
        stride=tuple(layer.stride),
        padding=tuple(sym),
        output_padding=output_padding,
        dilation=tuple(layer.dilation),
        bias=layer.bias,
    )
    m.crop = tuple(crop) if any(b or e for b, e in crop) else None
    return _fuse(m, node)


class _FrozenBatchNorm:
    """A `trainable: false` batchnorm: always normalizes with (and never updates) its running
    statistics, as a frozen Keras BatchNormalization runs in inference mode."""

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(
            x,
            self.running_mean,  # type: ignore[attr-defined]
            self.running_var,  # type: ignore[attr-defined]
            self.weight,  # type: ignore[attr-defined]
            self.bias,  # type: ignore[attr-defined]
            False,
            0.0,
            self.eps,  # type: ignore[attr-defined]
        )


class FrozenBatchNorm1d(_FrozenBatchNorm, nn.BatchNorm1d):
    pass


class FrozenBatchNorm2d(_FrozenBatchNorm, nn.BatchNorm2d):
    pass


def lower_batchnorm(node: Node) -> nn.Module:
    layer: BatchNorm = node.layer  # type: ignore[assignment]
    x = node.input_shapes[0]
    two_d = len(x) == 3
    if node.trainable:
        cls: type[nn.Module] = nn.BatchNorm2d if two_d else nn.BatchNorm1d
    else:
        cls = FrozenBatchNorm2d if two_d else FrozenBatchNorm1d
    return cls(x[0], eps=layer.eps, momentum=1.0 - layer.momentum)


def lower_layernorm(node: Node) -> nn.Module:
    layer: LayerNorm = node.layer  # type: ignore[assignment]
    return nn.LayerNorm(node.input_shapes[0][-1], eps=layer.eps)


def lower_prelu(node: Node) -> nn.Module:
    """torch's nn.PReLU: its `weight` the slopes, applied along the channel axis (dim 1)."""
    layer: PReLU = node.layer  # type: ignore[assignment]
    return nn.PReLU(1 if layer.shared else node.input_shapes[0][0])
