"""Parameter-free layers (pooling, reshapes, crops, pads, upsampling, merges): modules and lowerings."""

# The IR is the truth: every padding, crop and pooling divisor is taken from it, never re-derived,
# so torch and the ONNX export cannot drift. Average pooling never counts padded cells
# (Keras/ONNX `count_include_pad=0`).

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from netspec.ir import Node
from netspec.layers import Clip, Concat, Crop2D, Pool, Trim, Upsample1D, Upsample2D
from netspec.layers import GlobalPool as GlobalPoolLayer  # GlobalPool here is the torch module
from netspec.layers.window import windows
from netspec.shapes import Window, batch_axis, window_counts


class PaddedPool(nn.Module):
    """Pooling whose padding torch's pool ops cannot express (asymmetric SAME, or more than half
    the window): an explicit pad, then an unpadded pool.

    Max pooling pads with -inf. Average pooling pads with zeros and rescales each output by
    window size / number of real cells, so padded cells are not counted (Keras/ONNX).
    """

    def __init__(self, mode: str, wins: Sequence[Window], spatial: Sequence[int]) -> None:
        super().__init__()
        self.mode = mode
        self.kernel = tuple(w.size for w in wins)
        self.stride = tuple(w.stride for w in wins)
        pads: list[int] = []
        for w in reversed(wins):
            pads += [w.pad_begin, w.pad_end]
        self.pads = tuple(pads)
        self.ndim = len(wins)
        self.scale: Tensor | None = None
        if mode == "avg":
            scale = torch.ones(())
            for w, n in zip(wins, spatial):
                per_axis = w.size / torch.tensor(window_counts(w, n), dtype=torch.float64)
                scale = scale.unsqueeze(-1) * per_axis
            self.scale = scale.float()

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> PaddedPool:
        # The divisor map follows the module's device and dtype like a buffer, without being state.
        if self.scale is not None:
            self.scale = fn(self.scale)
        return super()._apply(fn, recurse)  # type: ignore[return-value]

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "max":
            x = F.pad(x, self.pads, value=-math.inf)
            pool = F.max_pool2d if self.ndim == 2 else F.max_pool1d
            return pool(x, self.kernel, self.stride)
        x = F.pad(x, self.pads)
        pool = F.avg_pool2d if self.ndim == 2 else F.avg_pool1d
        y = pool(x, self.kernel, self.stride)
        scale = self.scale
        assert scale is not None
        return y * scale.to(device=y.device, dtype=y.dtype)

    def extra_repr(self) -> str:
        return f"{self.mode}, kernel={self.kernel}, stride={self.stride}, pads={self.pads}"


def lower_pool(node: Node) -> nn.Module:
    layer: Pool = node.layer  # type: ignore[assignment]
    x = node.input_shapes[0]
    wins = windows(layer, x[1:])
    two_d = len(wins) == 2
    is_max = layer.op == "max"
    native = all(w.symmetric and w.pad_begin <= w.size // 2 for w in wins)
    if not native:
        return PaddedPool("max" if is_max else "avg", wins, x[1:])
    kernel = tuple(w.size for w in wins)
    stride = tuple(w.stride for w in wins)
    padding = tuple(w.pad_begin for w in wins)
    if is_max:
        cls: Any = nn.MaxPool2d if two_d else nn.MaxPool1d
        return cls(kernel, stride, padding)
    cls = nn.AvgPool2d if two_d else nn.AvgPool1d
    return cls(kernel, stride, padding, count_include_pad=False)


class GlobalPool(nn.Module):
    def __init__(self, mode: str, ndim: int, keepdims: bool) -> None:
        super().__init__()
        self.mode = mode
        self.dims = tuple(range(2, 2 + ndim))
        self.keepdims = keepdims

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "avg":
            return x.mean(self.dims, keepdim=self.keepdims)
        return x.amax(self.dims, keepdim=self.keepdims)

    def extra_repr(self) -> str:
        return f"{self.mode}, dims={self.dims}, keepdims={self.keepdims}"


def lower_global_pool(node: Node) -> nn.Module:
    layer: GlobalPoolLayer = node.layer  # type: ignore[assignment]
    return GlobalPool(layer.op, len(node.input_shapes[0]) - 1, layer.keepdims)


class ReshapeBatch(nn.Module):
    """Reshape each sample to the IR's resolved shape, keeping the batch axis."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Crop(nn.Module):
    """A fixed spatial window: rows [top, top+h), columns [left, left+w)."""

    def __init__(self, top: int, left: int, height: int, width: int) -> None:
        super().__init__()
        self.top, self.left, self.height, self.width = top, left, height, width

    def forward(self, x: Tensor) -> Tensor:
        top, left = self.top, self.left
        return x[:, :, top : top + self.height, left : left + self.width]

    def extra_repr(self) -> str:
        return f"top={self.top}, left={self.left}, size=({self.height}, {self.width})"


def lower_crop(node: Node) -> nn.Module:
    layer: Crop2D = node.layer  # type: ignore[assignment]
    top, left = layer.offsets(node.input_shapes[0], node.shape)
    return Crop(top, left, node.shape[1], node.shape[2])


class Trimmed(nn.Module):
    """Fixed windows [begin, begin + size) of the axes after the channels (trim1d, trim2d)."""

    def __init__(self, begins: Sequence[int], sizes: Sequence[int]) -> None:
        super().__init__()
        self.begins, self.sizes = tuple(begins), tuple(sizes)

    def forward(self, x: Tensor) -> Tensor:
        for axis, (b, n) in enumerate(zip(self.begins, self.sizes, strict=True), start=2):
            x = x.narrow(axis, b, n)
        return x

    def extra_repr(self) -> str:
        return f"begins={self.begins}, sizes={self.sizes}"


def lower_trim(node: Node) -> nn.Module:
    layer: Trim = node.layer  # type: ignore[assignment]
    return Trimmed([b for b, _ in layer.edges()], node.shape[1:])


def lower_zeropad(node: Node) -> nn.Module:
    """zeropad2d (top, bottom, left, right) and zeropad1d (left, right)."""
    pads = node.layer.padding  # type: ignore[attr-defined]
    if len(pads) == 2:
        return nn.ConstantPad1d(tuple(pads), 0.0)
    top, bottom, left, right = pads
    return nn.ZeroPad2d((left, right, top, bottom))


def lower_upsample1d(node: Node) -> nn.Module:
    layer: Upsample1D = node.layer  # type: ignore[assignment]
    return nn.Upsample(scale_factor=float(layer.scale), mode="nearest")


def lower_upsample(node: Node) -> nn.Module:
    layer: Upsample2D = node.layer  # type: ignore[assignment]
    scale = (float(layer.scale[0]), float(layer.scale[1]))
    if layer.mode == "bilinear":
        return nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False)
    return nn.Upsample(scale_factor=scale, mode="nearest")


class Cat(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def lower_concat(node: Node) -> nn.Module:
    layer: Concat = node.layer  # type: ignore[assignment]
    return Cat(batch_axis(layer.axis, len(node.shape)))


class Sum(nn.Module):
    def forward(self, *xs: Tensor) -> Tensor:
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x
        return y


class ClipValues(nn.Module):
    """clip: torch.clamp to [min, max] (ONNX Clip)."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp(x, self.low, self.high)

    def extra_repr(self) -> str:
        return f"min={self.low:g}, max={self.high:g}"


def lower_clip(node: Node) -> nn.Module:
    layer: Clip = node.layer  # type: ignore[assignment]
    return ClipValues(layer.min, layer.max)
