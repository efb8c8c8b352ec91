"""Recurrent layers (simple_rnn, gru, lstm): torch modules holding exactly Keras' tensors, run by torch's fused kernels."""

# torch's nn.LSTM and nn.RNN hold two bias vectors per gate where Keras has one, so the module
# holds the declared tensors itself (netspec.layers.recurrent: names, shapes, gate orders) and
# calls the kernel nn.LSTM/nn.GRU/nn.RNN call (torch._VF, cuDNN on a GPU) with a zero second bias.
# Initialization is Keras': glorot-uniform input kernels, orthogonal recurrent kernels, zero
# biases, and (LSTM, unit_forget_bias) a forget-gate bias of 1.

from __future__ import annotations

import torch
from torch import Tensor, nn

from netspec.ir import Node
from netspec.layers import GRU, LSTM, Recurrent


class RecurrentModule(nn.Module):
    """One recurrent layer over a batch-first [B, T, F] input; the last step's [B, D*u] output
    or every step's [B, T, D*u] (D = 2 when bidirectional: forward, then backward)."""

    def __init__(self, layer: Recurrent, features: int) -> None:
        super().__init__()
        self.mode = layer.kind
        self.units = layer.units
        self.bidirectional = layer.bidirectional
        self.return_sequences = layer.return_sequences
        self.split_bias = layer.split_bias
        self.suffixes = ("", "_reverse")[: layer.directions]
        shapes = layer.weights([(1, features)], ())
        for name, w in shapes.items():
            self.register_parameter(name, nn.Parameter(torch.empty(w.shape)))
        g, u = layer.gates, layer.units
        with torch.no_grad():
            for s in self.suffixes:
                nn.init.xavier_uniform_(getattr(self, f"weight_ih{s}"))
                # Keras' orthogonal recurrent kernel is one (u, g*u) matrix: the same here, stored
                # transposed.
                nn.init.orthogonal_(getattr(self, f"weight_hh{s}"))
                for b in ("bias_ih", "bias_hh") if self.split_bias else ("bias",):
                    nn.init.zeros_(getattr(self, f"{b}{s}"))
                if isinstance(layer, LSTM):
                    getattr(self, f"bias{s}")[u : 2 * u] = 1.0  # the forget gate (i, f, g, o)
        self.gates = g

    def flat_weights(self) -> list[Tensor]:
        """torch's per-direction order: w_ih, w_hh, b_ih, b_hh (b_hh zero where Keras has one)."""
        flat: list[Tensor] = []
        for s in self.suffixes:
            flat += [getattr(self, f"weight_ih{s}"), getattr(self, f"weight_hh{s}")]
            if self.split_bias:
                flat += [getattr(self, f"bias_ih{s}"), getattr(self, f"bias_hh{s}")]
            else:
                bias = getattr(self, f"bias{s}")
                flat += [bias, torch.zeros_like(bias)]
        return flat

    def forward(self, x: Tensor) -> Tensor:
        d = len(self.suffixes)
        h0 = x.new_zeros(d, x.shape[0], self.units)
        args = (self.flat_weights(), True, 1, 0.0, self.training, self.bidirectional, True)
        if self.mode == "lstm":
            y, h, _ = torch._VF.lstm(x, (h0, h0), *args)  # type: ignore[attr-defined]
        elif self.mode == "gru":
            y, h = torch._VF.gru(x, h0, *args)  # type: ignore[attr-defined]
        else:
            y, h = torch._VF.rnn_tanh(x, h0, *args)  # type: ignore[attr-defined]
        if self.return_sequences:
            return y
        return h.transpose(0, 1).reshape(x.shape[0], d * self.units)

    def extra_repr(self) -> str:
        return (
            f"{self.mode}, units={self.units}, bidirectional={self.bidirectional}, "
            f"return_sequences={self.return_sequences}"
        )


def lower_recurrent(node: Node) -> nn.Module:
    layer: Recurrent = node.layer  # type: ignore[assignment]
    assert not isinstance(layer, GRU) or layer.reset_after  # refused by the layer's validator
    return RecurrentModule(layer, node.input_shapes[0][-1])
