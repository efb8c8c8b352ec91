"""Pure integer shape arithmetic shared by every layer kind: no NumPy, no framework.

A per-sample shape may hold None: the dynamic time axis of a sequence (`input: [null, F]`).
Arithmetic on None gives None (a window over an unknown length has an unknown output length);
what needs the number (a product, a fixed reshape) refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Shape = tuple[int | None, ...]


def dynamic(shape: Sequence[int | None]) -> bool:
    """True when the shape holds the dynamic (None) axis."""
    return None in shape


def filled(shape: Sequence[int | None], length: int) -> tuple[int, ...]:
    """The shape with its dynamic axis set to `length` (MACs and memory are counted at one)."""
    return tuple(length if n is None else n for n in shape)


def conv_out(n: int, f: int, p: int, s: int, d: int = 1) -> int:
    """Output length of a convolution or pooling window: floor((n + 2p - d(f-1) - 1)/s) + 1.

    `p` is the padding on each side; for asymmetric padding pass the total as `2p` via `conv_out_total`.
    """
    return (n + 2 * p - d * (f - 1) - 1) // s + 1


def conv_out_total(n: int, f: int, pad_total: int, s: int, d: int = 1) -> int:
    """Like `conv_out` but with the total padding of both sides (for SAME's asymmetric padding)."""
    return (n + pad_total - d * (f - 1) - 1) // s + 1


def same_pad(n: int | None, f: int, s: int, d: int = 1) -> tuple[int, int]:
    """(begin, end) padding for SAME_UPPER: output ceil(n/s), the odd extra pixel at the end.

    An unknown length n (None) is padded as stride 1 pads any length: d(f-1) in all.
    """
    if n is None:
        total = d * (f - 1)
        return total // 2, total - total // 2
    out = -(-n // s)
    total = max((out - 1) * s + d * (f - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def conv_transpose_out(n: int, f: int, p: int, s: int, d: int = 1, output_padding: int = 0) -> int:
    """Output length of a transposed convolution: (n-1)s - 2p + d(f-1) + output_padding + 1."""
    return (n - 1) * s - 2 * p + d * (f - 1) + output_padding + 1


def prod(shape: Shape) -> int:
    total = 1
    for n in shape:
        total *= n
    return total


@dataclass(frozen=True)
class Window:
    """A resolved sliding window along one spatial axis: the exact numbers the lowering uses."""

    size: int
    stride: int
    dilation: int
    pad_begin: int
    pad_end: int

    @property
    def symmetric(self) -> bool:
        return self.pad_begin == self.pad_end

    def out(self, n: int | None) -> int | None:
        if n is None:
            return None
        return conv_out_total(
            n, self.size, self.pad_begin + self.pad_end, self.stride, self.dilation
        )

    def formula(self, n: int) -> str:
        """The arithmetic with the numbers in it, for error messages."""
        pad = f"2*{self.pad_begin}" if self.symmetric else f"{self.pad_begin}+{self.pad_end}"
        return (
            f"floor(({n} + {pad} - {self.dilation}*({self.size}-1) - 1)/{self.stride}) + 1"
            f" = {self.out(n)}"
        )


def resolve_window(
    n: int | None, size: int, stride: int, dilation: int, padding: str | int
) -> Window:
    """Turn a padding setting (`valid`, `same` or an int per side) into begin/end pads for one axis."""
    if padding == "valid":
        return Window(size, stride, dilation, 0, 0)
    if padding == "same":
        begin, end = same_pad(n, size, stride, dilation)
        return Window(size, stride, dilation, begin, end)
    return Window(size, stride, dilation, int(padding), int(padding))


def window_counts(w: Window, n: int) -> list[int]:
    """Per output position along one axis: how many window cells fall inside the input of length n.

    Average pooling divides by this (padded cells never count, as Keras and ONNX count_include_pad=0).
    """
    counts = []
    for i in range(w.out(n)):
        start = i * w.stride - w.pad_begin
        counts.append(min(start + w.size, n) - max(start, 0))
    return counts


def batch_axis(axis: int, rank: int) -> int:
    """The axis of a batched tensor (batch first, as torch and ONNX) for a per-sample axis."""
    return axis % rank + 1
