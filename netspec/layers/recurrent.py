"""simple_rnn, gru, lstm: recurrent layers on [T, F] with Keras' parameter counts; the stored gate orders.

Storage (the tensors `weights()` declares, the torch module holds and safetensors/ONNX name),
per direction, `_reverse` appended for the backward direction of a bidirectional layer:

- lstm: `weight_ih` (4u, F), `weight_hh` (4u, u), `bias` (4u): gates stacked in torch's order
  (i, f, g, o) = Keras' (i, f, c, o). One bias per gate, as Keras (torch's second bias is zero).
- gru (reset_after, the only form supported): `weight_ih` (3u, F), `weight_hh` (3u, u),
  `bias_ih` (3u), `bias_hh` (3u): gates in torch's order (r, z, n); Keras stores (z, r, h) and
  its bias as (2, 3u) = [input bias; recurrent bias]. torch's GRU is Keras' reset_after=True.
- simple_rnn: `weight_ih` (u, F), `weight_hh` (u, u), `bias` (u), tanh.

Kernels are (out, in) as torch stores them: Keras' kernel (F, 4u) is `weight_ih` transposed.
The ONNX export reorders gates to ONNX's (LSTM i, o, f, c; GRU z, r, h) in the graph.
"""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, PositiveInt

from netspec.layers.base import Layer, ShapeError, Weight, _fail
from netspec.shapes import Shape


class Recurrent(Layer):
    """A recurrent layer over [time, features]: the last step's output [units] or every step's
    [time, units]; twice units when bidirectional (forward, then backward, concatenated)."""

    gates: ClassVar[int] = 1
    split_bias: ClassVar[bool] = False  # True: bias_ih and bias_hh (GRU); else one `bias`

    units: PositiveInt = Field(description="Size of the hidden state (per direction).")
    return_sequences: bool = Field(
        False, description="Output every step [T, units] instead of the last step [units]."
    )
    bidirectional: bool = Field(
        False,
        description="Also run the sequence backward; the two outputs are concatenated (2 x units).",
    )

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        x = inputs[0]
        if len(x) != 2:
            raise ShapeError(
                f"{self.kind} needs a sequence input [time, features], got {tuple(x)}",
                hint="a [channels, length] input needs `permute: {dims: [1, 0]}` first; "
                "token ids need an embedding",
            )
        width = self.units * self.directions
        return (x[0], width) if self.return_sequences else (width,)

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        g, u, f = self.gates, self.units, inputs[0][-1]
        w: dict[str, Weight] = {}
        for suffix in ("", "_reverse")[: self.directions]:
            w[f"weight_ih{suffix}"] = Weight((g * u, f))
            w[f"weight_hh{suffix}"] = Weight((g * u, u))
            if self.split_bias:
                w[f"bias_ih{suffix}"] = Weight((g * u,))
                w[f"bias_hh{suffix}"] = Weight((g * u,))
            else:
                w[f"bias{suffix}"] = Weight((g * u,))
        return w

    def macs(self, inputs: list[Shape], out: Shape) -> int:
        """Per sequence of the input's length T: each step multiplies by both kernels."""
        t, f = inputs[0]
        return t * self.directions * self.gates * self.units * (f + self.units)


class SimpleRNN(Recurrent):
    """Elman RNN, h = tanh(W x + U h + b) (Keras SimpleRNN, torch RNN): u(F+u)+u parameters."""

    kind: ClassVar[str] = "simple_rnn"


class LSTM(Recurrent):
    """Long short-term memory (Keras LSTM, torch LSTM): 4(u(F+u)+u) parameters per direction."""

    kind: ClassVar[str] = "lstm"
    gates: ClassVar[int] = 4


def _reset_after(v: bool) -> bool:
    if not v:
        raise _fail(
            "reset_after: false is not supported yet (only the reset-after GRU of Keras' "
            "default, cuDNN and torch)",
            "leave reset_after out (true)",
        )
    return v


class GRU(Recurrent):
    """Gated recurrent unit, reset after the recurrent product (Keras GRU reset_after=True,
    torch GRU): 3(u(F+u)+2u) parameters per direction."""

    kind: ClassVar[str] = "gru"
    gates: ClassVar[int] = 3
    split_bias: ClassVar[bool] = True

    reset_after: Annotated[bool, AfterValidator(_reset_after)] = Field(
        True,
        description="Apply the reset gate after the recurrent product (Keras' default; false "
        "is not supported yet).",
    )
