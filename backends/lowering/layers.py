"""The lowering table (LOWERINGS): each layer class or family to the function building its module."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from netspec.ir import Node
from netspec.layers import (
    ActivationLayer,
    Add,
    AvgPool1D,
    AvgPool2D,
    BatchNorm,
    Concat,
    Conv1D,
    Conv2D,
    ConvTranspose2D,
    Crop2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    Layer,
    LayerNorm,
    MaxPool1D,
    MaxPool2D,
    Reshape,
    Upsample2D,
    ZeroPad2D,
    table_entry,
)
from netspec.layers.activations import activation_of

from .activations import act_module
from .stateless import (
    ReshapeBatch,
    Sum,
    lower_concat,
    lower_crop,
    lower_global_pool,
    lower_pool,
    lower_upsample,
    lower_zeropad,
)
from .weighted import (
    lower_batchnorm,
    lower_conv,
    lower_conv_transpose,
    lower_dense,
    lower_layernorm,
)


def lower_activation(node: Node) -> nn.Module:
    """Every activation layer, through the one Act table (netspec.layers.activations)."""
    rank = len(node.shape)
    return act_module(activation_of(node.layer, rank), rank)


# Keyed by layer class, looked up through the class hierarchy (netspec.layers.table_entry):
# tests/test_completeness.py checks that every class in netspec.layers.LAYER_KINDS finds a row.
LOWERINGS: dict[type[Layer], Callable[[Node], nn.Module]] = {
    Dense: lower_dense,
    Conv1D: lower_conv,
    Conv2D: lower_conv,
    ConvTranspose2D: lower_conv_transpose,
    MaxPool1D: lower_pool,
    MaxPool2D: lower_pool,
    AvgPool1D: lower_pool,
    AvgPool2D: lower_pool,
    GlobalAvgPool1D: lower_global_pool,
    GlobalAvgPool2D: lower_global_pool,
    GlobalMaxPool1D: lower_global_pool,
    GlobalMaxPool2D: lower_global_pool,
    Flatten: lambda node: nn.Flatten(1),
    Reshape: lambda node: ReshapeBatch(node.shape),
    Dropout: lambda node: nn.Dropout(node.layer.rate),  # type: ignore[attr-defined]
    BatchNorm: lower_batchnorm,
    LayerNorm: lower_layernorm,
    ActivationLayer: lower_activation,  # the whole family, by its Act
    Upsample2D: lower_upsample,
    ZeroPad2D: lower_zeropad,
    Crop2D: lower_crop,
    Concat: lower_concat,
    Add: lambda node: Sum(),
}


def lower_node(node: Node) -> nn.Module:
    """The torch module of one IR node (parameters initialized; freezing is build_module's job)."""
    lower = table_entry(LOWERINGS, type(node.layer))
    if lower is None:
        raise NotImplementedError(
            f"layer '{node.name}': no PyTorch lowering for layer kind '{node.kind}' "
            "(add one to netspec.backends.lowering.layers.LOWERINGS)"
        )
    return lower(node)
