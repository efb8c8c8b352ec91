"""Every layer kind, listed once: the YAML key of each is its class's `kind`."""

from __future__ import annotations

from netspec.layers.activations import (
    ELU,
    GELU,
    Activation,
    ActivationLayer,
    HardSigmoid,
    HardSwish,
    LeakyReLU,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from netspec.layers.attention import MultiHeadAttention
from netspec.layers.base import Layer, Params, ShapeError, Weight, table_entry
from netspec.layers.batchnorm import BatchNorm
from netspec.layers.clip import Clip
from netspec.layers.conv import Conv, Conv1D, Conv2D
from netspec.layers.conv_transpose import ConvTranspose2D
from netspec.layers.crop import Crop2D
from netspec.layers.dense import Dense
from netspec.layers.dropout import Dropout
from netspec.layers.embedding import Embedding
from netspec.layers.flatten import Flatten
from netspec.layers.global_pool import (
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    GlobalPool,
)
from netspec.layers.layernorm import LayerNorm
from netspec.layers.masking import Masking
from netspec.layers.merge import Add, Concat
from netspec.layers.multiply import Multiply
from netspec.layers.permute import Permute
from netspec.layers.pool import AvgPool1D, AvgPool2D, MaxPool1D, MaxPool2D, Pool
from netspec.layers.position import PositionEmbedding, SeqPool
from netspec.layers.prelu import PReLU
from netspec.layers.recurrent import GRU, LSTM, Recurrent, SimpleRNN
from netspec.layers.reshape import Reshape
from netspec.layers.separable import SeparableConv2D
from netspec.layers.trim import Trim, Trim1D, Trim2D
from netspec.layers.upsample import Upsample1D, Upsample2D
from netspec.layers.zeropad import ZeroPad1D, ZeroPad2D

LAYER_KINDS: tuple[type[Layer], ...] = (
    Dense,
    Conv1D,
    Conv2D,
    SeparableConv2D,
    ConvTranspose2D,
    MaxPool1D,
    MaxPool2D,
    AvgPool1D,
    AvgPool2D,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    Flatten,
    Reshape,
    Dropout,
    BatchNorm,
    LayerNorm,
    Activation,
    ReLU,
    LeakyReLU,
    Sigmoid,
    Tanh,
    Softmax,
    GELU,
    SiLU,
    ReLU6,
    HardSigmoid,
    HardSwish,
    ELU,
    Clip,
    PReLU,
    Upsample1D,
    Upsample2D,
    ZeroPad1D,
    ZeroPad2D,
    Crop2D,
    Trim1D,
    Trim2D,
    Concat,
    Add,
    Permute,
    Multiply,
    Embedding,
    Masking,
    SimpleRNN,
    GRU,
    LSTM,
    PositionEmbedding,
    SeqPool,
    MultiHeadAttention,
)

KINDS: dict[str, type[Layer]] = {cls.kind: cls for cls in LAYER_KINDS}

__all__ = [
    "ActivationLayer",
    "Conv",
    "GlobalPool",
    "KINDS",
    "LAYER_KINDS",
    "Layer",
    "Params",
    "Pool",
    "Recurrent",
    "Trim",
    "ShapeError",
    "Weight",
    "table_entry",
    *[c.__name__ for c in LAYER_KINDS],
]
