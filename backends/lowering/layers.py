"""The lowering table (LOWERINGS): each layer class or family to the function building its module."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from netspec import layers
from netspec.ir import Node
from netspec.layers import Layer, table_entry
from netspec.layers.activations import activation_of

from .activations import act_module
from .attention import lower_attention
from .recurrent import lower_recurrent
from .sequence import (
    lower_embedding,
    lower_masking,
    lower_multiply,
    lower_permute,
    lower_position_embedding,
    lower_seq_pool,
)
from .stateless import (
    ReshapeBatch,
    Sum,
    lower_clip,
    lower_concat,
    lower_crop,
    lower_global_pool,
    lower_pool,
    lower_trim,
    lower_upsample,
    lower_upsample1d,
    lower_zeropad,
)
from .weighted import (
    lower_batchnorm,
    lower_conv,
    lower_conv_transpose,
    lower_dense,
    lower_layernorm,
    lower_prelu,
    lower_separable,
)


def lower_activation(node: Node) -> nn.Module:
    """Every activation layer, through the one Act table (netspec.layers.activations)."""
    rank = len(node.shape)
    return act_module(activation_of(node.layer, rank), rank)


# Keyed by layer class, looked up through the class hierarchy (netspec.layers.table_entry):
# tests/test_completeness.py checks that every class in netspec.layers.LAYER_KINDS finds a row.
LOWERINGS: dict[type[Layer], Callable[[Node], nn.Module]] = {
    layers.Dense: lower_dense,
    layers.Conv: lower_conv,  # conv1d, conv2d
    layers.SeparableConv2D: lower_separable,
    layers.ConvTranspose2D: lower_conv_transpose,
    layers.Pool: lower_pool,  # max and average, 1-D and 2-D
    layers.GlobalPool: lower_global_pool,  # mean and maximum, 1-D and 2-D
    layers.Flatten: lambda node: nn.Flatten(1),
    layers.Reshape: lambda node: ReshapeBatch(node.shape),
    layers.Dropout: lambda node: nn.Dropout(node.layer.rate),  # type: ignore[attr-defined]
    layers.BatchNorm: lower_batchnorm,
    layers.LayerNorm: lower_layernorm,
    layers.ActivationLayer: lower_activation,  # the whole family, by its Act
    layers.Clip: lower_clip,
    layers.PReLU: lower_prelu,
    layers.Upsample1D: lower_upsample1d,
    layers.Upsample2D: lower_upsample,
    layers.ZeroPad1D: lower_zeropad,
    layers.ZeroPad2D: lower_zeropad,
    layers.Crop2D: lower_crop,
    layers.Trim: lower_trim,  # trim1d, trim2d
    layers.Concat: lower_concat,
    layers.Add: lambda node: Sum(),
    layers.Permute: lower_permute,
    layers.Multiply: lower_multiply,
    layers.Embedding: lower_embedding,
    layers.Masking: lower_masking,
    layers.Recurrent: lower_recurrent,  # simple_rnn, gru, lstm
    layers.PositionEmbedding: lower_position_embedding,
    layers.SeqPool: lower_seq_pool,
    layers.MultiHeadAttention: lower_attention,
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
