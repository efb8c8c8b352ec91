"""Recurrent layers (simple_rnn, gru, lstm): torch modules holding exactly Keras' tensors, run by torch's fused kernels."""

# torch's nn.LSTM and nn.RNN hold two bias vectors per gate where Keras has one, so the module
# holds the declared tensors itself (netspec.layers.recurrent: names, shapes, gate orders) and
# calls the kernel nn.LSTM/nn.GRU/nn.RNN call (torch._VF, cuDNN on a GPU) with a zero second bias.
# Initialization is Keras': glorot-uniform input kernels, orthogonal recurrent kernels, zero
# biases, and (LSTM, unit_forget_bias) a forget-gate bias of 1.

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

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

    def _kernel(self, lead: tuple[Tensor, ...], h0: Tensor, *args: Any) -> tuple[Tensor, Tensor]:
        """torch's fused kernel on (x,) or a packed (data, batch_sizes): (every step's output,
        the last hidden state)."""
        if self.mode == "lstm":
            y, h, _ = torch._VF.lstm(*lead, (h0, h0), *args)  # type: ignore[attr-defined]
        elif self.mode == "gru":
            y, h = torch._VF.gru(*lead, h0, *args)  # type: ignore[attr-defined]
        else:
            y, h = torch._VF.rnn_tanh(*lead, h0, *args)  # type: ignore[attr-defined]
        return y, h

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """`lengths` (a padding mask, netspec.masks): each sample's first `lengths` steps only,
        as a packed sequence: the backward direction starts at the last real step, the last
        state is the last real step's, and outputs at padded steps are 0 (as ONNX's)."""
        d = len(self.suffixes)
        h0 = x.new_zeros(d, x.shape[0], self.units)
        flags = (True, 1, 0.0, self.training, self.bidirectional)
        if lengths is None:
            y, h = self._kernel((x,), h0, self.flat_weights(), *flags, True)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            lead = (packed.data, packed.batch_sizes)
            data, h = self._kernel(lead, h0, self.flat_weights(), *flags)
            h = h.index_select(1, packed.unsorted_indices)  # type: ignore[arg-type]
            if self.return_sequences:
                out = PackedSequence(
                    data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
                )
                y, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
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
