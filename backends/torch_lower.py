"""Lower a netspec IR graph to PyTorch: one submodule per node, state_dict keys by layer name.

`build_module(graph)` returns a `NetModule` whose `state_dict()` keys are `<layer name>.weight`,
`<layer name>.running_mean`, ... so weights can be moved between networks by layer name. The IR
is the truth: every padding, crop and pooling divisor is taken from it, never re-derived.

Conventions that are not plain torch defaults:
- SAME padding is SAME_UPPER (the odd extra cell at the end); asymmetric pads are an F.pad before
  the op, symmetric ones the op's own `padding=`.
- Average pooling never counts padded cells (Keras/ONNX `count_include_pad=0`).
- Kernels are glorot-uniform and biases zero (Keras defaults).
- A frozen (`trainable: false`) batchnorm always normalizes with its running statistics, as a
  frozen Keras BatchNormalization does.
- The `softmax` activation of dense is over its last axis (the units); of a convolution over the
  channels, like the bare `softmax` layer's default axis. `leaky_relu` as an activation name uses
  the `leaky_relu` layer's default slope, 0.01.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from netspec.ir import Graph, Node
from netspec.layers import (
    GELU,
    Activation,
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
    LeakyReLU,
    MaxPool1D,
    MaxPool2D,
    ReLU,
    ReLU6,
    Reshape,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    Upsample2D,
    ZeroPad2D,
)
from netspec.layers.conv import windows
from netspec.shapes import Window
from netspec.spec import INPUT

Head = Literal["softmax", "sigmoid"]
LEAKY_RELU_SLOPE = 0.01  # the `leaky_relu` layer's default, used for `activation: leaky_relu`

# --- activations ---------------------------------------------------------------------------------


def activation_fn(name: str, softmax_dim: int) -> Callable[[Tensor], Tensor] | None:
    """The function for an `activation:` name (None for linear); stateless, so it adds no key."""
    if name == "linear":
        return None
    if name == "softmax":
        return functools.partial(torch.softmax, dim=softmax_dim)
    if name == "leaky_relu":
        return functools.partial(F.leaky_relu, negative_slope=LEAKY_RELU_SLOPE)
    fns: dict[str, Callable[[Tensor], Tensor]] = {
        "relu": F.relu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "gelu": F.gelu,
        "silu": F.silu,
        "relu6": F.relu6,
    }
    return fns[name]


def activation_module(name: str, softmax_dim: int) -> nn.Module:
    """A parameter-free module for an activation name (the `activation: {fn: ...}` layer)."""
    modules: dict[str, Callable[[], nn.Module]] = {
        "linear": nn.Identity,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(LEAKY_RELU_SLOPE),
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "softmax": lambda: nn.Softmax(dim=softmax_dim),
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "relu6": nn.ReLU6,
    }
    return modules[name]()


class _FusedActivation:
    """Mixin for a weighted layer with an `activation:`: the function is a plain attribute, so the
    state_dict keys stay those of the torch layer; `forward_linear` skips it (for logits)."""

    act: Callable[[Tensor], Tensor] | None
    act_name: str

    def forward_linear(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        y = self.forward_linear(x)
        act = self.act
        return y if act is None else act(y)

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        return base if self.act_name == "linear" else f"{base}, activation={self.act_name}"


def _set_act(module: Any, name: str, softmax_dim: int) -> None:
    module.act_name = name
    module.act = activation_fn(name, softmax_dim)


# --- weighted layers -----------------------------------------------------------------------------


def _keras_init(module: nn.Module) -> nn.Module:
    """glorot_uniform kernel, zero bias (torch's fan computation matches Keras for every layout)."""
    nn.init.xavier_uniform_(module.weight)  # type: ignore[arg-type]
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)  # type: ignore[arg-type]
    return module


class LinearAct(_FusedActivation, nn.Linear):
    """nn.Linear on the last axis with an optional activation."""

    def forward_linear(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class _ConvAct(_FusedActivation):
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
    m = LinearAct(node.input_shapes[0][-1], layer.units, bias=layer.bias)
    _set_act(m, layer.activation, softmax_dim=-1)
    return _keras_init(m)


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
    _set_act(m, layer.activation, softmax_dim=1)
    return _keras_init(m)


class ConvTranspose2dAct(_FusedActivation, nn.ConvTranspose2d):
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
    _set_act(m, layer.activation, softmax_dim=1)
    return _keras_init(m)


# --- normalization -------------------------------------------------------------------------------


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


# --- pooling -------------------------------------------------------------------------------------


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
            counts = [_window_counts(w, n) for w, n in zip(wins, spatial)]
            scale = torch.ones(())
            for axis_counts, w in zip(counts, wins):
                per_axis = w.size / torch.tensor(axis_counts, dtype=torch.float64)
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


def _window_counts(w: Window, n: int) -> list[int]:
    """Per output position along one axis: how many window cells fall inside the input."""
    counts = []
    for i in range(w.out(n)):
        start = i * w.stride - w.pad_begin
        counts.append(min(start + w.size, n) - max(start, 0))
    return counts


def lower_pool(node: Node) -> nn.Module:
    layer = node.layer
    x = node.input_shapes[0]
    wins = windows(layer, x[1:])
    two_d = len(wins) == 2
    is_max = isinstance(layer, (MaxPool1D, MaxPool2D))
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
    layer = node.layer
    mode = "avg" if isinstance(layer, (GlobalAvgPool1D, GlobalAvgPool2D)) else "max"
    return GlobalPool(mode, len(node.input_shapes[0]) - 1, layer.keepdims)  # type: ignore[attr-defined]


# --- shape layers --------------------------------------------------------------------------------


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


def lower_zeropad(node: Node) -> nn.Module:
    top, bottom, left, right = node.layer.padding  # type: ignore[attr-defined]
    return nn.ZeroPad2d((left, right, top, bottom))


def lower_upsample(node: Node) -> nn.Module:
    layer: Upsample2D = node.layer  # type: ignore[assignment]
    scale = (float(layer.scale[0]), float(layer.scale[1]))
    if layer.mode == "bilinear":
        return nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False)
    return nn.Upsample(scale_factor=scale, mode="nearest")


# --- merges --------------------------------------------------------------------------------------


class Cat(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Sum(nn.Module):
    def forward(self, *xs: Tensor) -> Tensor:
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x
        return y


def _dim(axis: int, rank: int) -> int:
    """Torch dim of a per-sample axis (the batch is dim 0)."""
    return axis % rank + 1


# --- the table -----------------------------------------------------------------------------------

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
    Activation: lambda node: activation_module(node.layer.fn, softmax_dim=1),  # type: ignore[attr-defined]
    ReLU: lambda node: nn.ReLU(),
    LeakyReLU: lambda node: nn.LeakyReLU(node.layer.negative_slope),  # type: ignore[attr-defined]
    Sigmoid: lambda node: nn.Sigmoid(),
    Tanh: lambda node: nn.Tanh(),
    Softmax: lambda node: nn.Softmax(dim=_dim(node.layer.axis, len(node.shape))),  # type: ignore[attr-defined]
    GELU: lambda node: nn.GELU(approximate=node.layer.approximate),  # type: ignore[attr-defined]
    SiLU: lambda node: nn.SiLU(),
    ReLU6: lambda node: nn.ReLU6(),
    Upsample2D: lower_upsample,
    ZeroPad2D: lower_zeropad,
    Crop2D: lower_crop,
    Concat: lambda node: Cat(_dim(node.layer.axis, len(node.shape))),  # type: ignore[attr-defined]
    Add: lambda node: Sum(),
}


def lower_node(node: Node) -> nn.Module:
    """The torch module of one IR node (parameters initialized; freezing is build_module's job)."""
    for cls in type(node.layer).__mro__:
        lower = LOWERINGS.get(cls)  # type: ignore[call-overload]
        if lower is not None:
            return lower(node)
    raise NotImplementedError(
        f"layer '{node.name}': no PyTorch lowering for layer kind '{node.kind}' "
        "(add one to netspec.backends.torch_lower.LOWERINGS)"
    )


def head_of(graph: Graph) -> tuple[Head | None, int | None]:
    """The final softmax/sigmoid that forward_logits skips, and the torch dim a softmax runs over."""
    node = graph.output
    layer = node.layer
    rank = len(node.shape)
    if isinstance(layer, Softmax):
        return "softmax", _dim(layer.axis, rank)
    if isinstance(layer, Sigmoid):
        return "sigmoid", None
    fn = getattr(layer, "fn", None) if isinstance(layer, Activation) else None
    if isinstance(layer, (Dense, Conv1D, Conv2D, ConvTranspose2D)):
        fn = layer.activation
    if fn == "softmax":
        return "softmax", rank if isinstance(layer, Dense) else 1
    if fn == "sigmoid":
        return "sigmoid", None
    return None, None


def _identity(x: Tensor) -> Tensor:
    return x


# --- the network ---------------------------------------------------------------------------------

# Where nn.Module keeps hooks: per module, and (module-level dicts in torch) for every module.
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOK_DICTS = tuple(f"_global{name}" for name in _HOOK_DICTS)
_torch_module = torch.nn.modules.module


def _global_hooks() -> bool:
    """Whether any global module hook is registered (True if this torch keeps them elsewhere)."""
    for name in _GLOBAL_HOOK_DICTS:
        hooks = getattr(_torch_module, name, None)
        if hooks is None or hooks:
            return True
    return False


# (callable, input slots, output slot, slots to drop after this step); slot 0 is the input.
Step = tuple[Callable[..., Tensor], tuple[int, ...], int, tuple[int, ...]]


class NetModule(nn.Module):
    """A netspec graph as a torch module.

    Every IR node is a child module registered under its layer name, so `state_dict()` keys are
    `<layer name>.weight` etc.; `layers` is a (non-registered) ModuleDict view of the same
    children. A name torch cannot use as a module name (one with '.', or one that is an attribute
    of the module such as 'train') gets a key with '.' -> '_' and a trailing '_';
    `module_keys` maps every layer name to its key.
    """

    graph: Graph
    head: Head | None
    head_dim: int | None
    module_keys: dict[str, str]

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        self.head, self.head_dim = head_of(graph)
        self.input_shape = tuple(graph.input_shape)
        self.module_keys = {}
        # Every attribute exists before the children are named, so no layer name can clash with one.
        # [forward, forward fast, logits, logits fast]: Steps, or the callables when sequential
        self._programs: list[Any] = []
        self._hook_dicts: list[dict[Any, Any]] = []
        self._sequential = False
        self._n_slots = 0
        self._stale = True
        self.__dict__["_layers"] = nn.ModuleDict()
        taken = {n.name for n in graph.nodes}
        for node in graph.nodes:
            module = lower_node(node)
            if not node.trainable:
                for p in module.parameters():
                    p.requires_grad_(False)
            key = self._key_for(node.name, taken)
            taken.add(key)
            self.module_keys[node.name] = key
            self.add_module(key, module)
        self._sync()

    def _sync(self) -> None:
        """(Re)build the `layers` view and the run programs from the registered children."""
        layers = nn.ModuleDict()
        for key in self.module_keys.values():
            layers._modules[key] = self._modules[key]  # keys already safe; skips ModuleDict's check
        self.__dict__["_layers"] = layers  # a view, not a second registration
        self._build_plans()
        self.__dict__["_stale"] = False

    # A child replaced after the build (SyncBatchNorm conversion, quantization, DataParallel
    # replicas) marks the programs stale; the next forward rebuilds them.
    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if isinstance(value, nn.Module):
            self.__dict__["_stale"] = True

    def __delattr__(self, name: str) -> None:
        super().__delattr__(name)
        self.__dict__["_stale"] = True

    def add_module(self, name: str, module: nn.Module | None) -> None:
        super().add_module(name, module)
        self.__dict__["_stale"] = True

    def _replicate_for_data_parallel(self) -> NetModule:
        replica = super()._replicate_for_data_parallel()
        replica.__dict__["_stale"] = True
        return replica

    def _key_for(self, name: str, taken: set[str]) -> str:
        def clashes(k: str) -> bool:
            return (
                hasattr(type(self), k)
                or k in self.__dict__
                or hasattr(nn.ModuleDict, k)
                or k in self._modules
            )

        if "." not in name and not clashes(name):
            return name
        key = name.replace(".", "_")
        while clashes(key) or (key != name and key in taken):
            key += "_"
        return key

    def _build_plans(self) -> None:
        nodes = self.graph.nodes
        slot = {INPUT: 0} | {n.name: i + 1 for i, n in enumerate(nodes)}
        last_use = {i + 1: i for i in range(len(nodes))}  # unread outputs are dropped at once
        for step, node in enumerate(nodes):
            for name in node.inputs:
                last_use[slot[name]] = step
        last_use.pop(len(nodes))  # the output is returned, never dropped
        plan: list[Step] = []
        for step, node in enumerate(nodes):
            frees = tuple(s for s, last in last_use.items() if last == step and s != 0)
            module = self.layer(node.name)
            plan.append((module, tuple(slot[i] for i in node.inputs), step + 1, frees))
        logits_plan = [*plan[:-1], (self._logits_fn(), *plan[-1][1:])]

        # Stateless layers (activations, merges, crops...) are what a hand-written forward calls
        # as plain functions; calling their `forward` directly skips nn.Module.__call__'s cost.
        # That is only done while no hook is registered on them (or globally), so hooks still run.
        direct: dict[int, Callable[..., Tensor]] = {}
        hook_dicts: list[dict[Any, Any]] = []
        for module, *_ in plan:
            dicts = [getattr(module, a, None) for a in _HOOK_DICTS]
            stateless = (
                next(module.parameters(), None) is None and next(module.buffers(), None) is None
            )
            if stateless and all(isinstance(d, dict) for d in dicts):
                direct[id(module)] = module.forward
                hook_dicts += dicts  # type: ignore[arg-type]

        def fast(p: list[Step]) -> list[Step]:
            return [(direct.get(id(fn), fn), *rest) for fn, *rest in p]  # type: ignore[misc]

        programs = [plan, fast(plan), logits_plan, fast(logits_plan)]
        self._sequential = self.graph.sequential
        if self._sequential:
            self._programs = [[fn for fn, *_ in p] for p in programs]
        else:
            self._programs = programs
        self._hook_dicts = hook_dicts
        self._n_slots = len(nodes) + 1

    def _logits_fn(self) -> Callable[..., Tensor]:
        last = self.layer(self.graph.output.name)
        if self.head is None:
            return last
        if isinstance(last, _FusedActivation):
            return last.forward_linear
        return _identity  # a bare softmax/sigmoid/activation layer

    @property
    def layers(self) -> nn.ModuleDict:
        """The submodules keyed like the state_dict (the layer name, unless `module_keys` maps it)."""
        if self._stale:
            self._sync()
        return self.__dict__["_layers"]

    def layer(self, name: str) -> nn.Module:
        """The submodule of a layer, by its name in the spec/summary."""
        return self._modules[self.module_keys[name]]  # type: ignore[return-value]

    def _check(self, x: Tensor) -> None:
        if x.dim() != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"network '{self.graph.name}' expects input of shape (N, "
                f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )

    def _run(self, x: Tensor, logits: int) -> Tensor:
        self._check(x)
        if self._stale:
            self._sync()
        hooked = _global_hooks() or any(self._hook_dicts)
        program: Any = self._programs[2 * logits + (not hooked)]
        if self._sequential:
            for fn in program:
                x = fn(x)
            return x
        slots: list[Tensor | None] = [None] * self._n_slots
        slots[0] = x
        for fn, ins, out, frees in program:
            if len(ins) == 1:
                slots[out] = fn(slots[ins[0]])
            else:
                slots[out] = fn(*[slots[i] for i in ins])
            for f in frees:
                slots[f] = None
        return slots[-1]  # type: ignore[return-value]

    def forward(self, x: Tensor) -> Tensor:
        """(N, *input_shape) -> (N, *output_shape); probabilities if the spec ends in one."""
        return self._run(x, 0)

    def forward_logits(self, x: Tensor) -> Tensor:
        """Like forward, without the final softmax/sigmoid named by `head` (for the loss)."""
        return self._run(x, 1)

    @torch.no_grad()
    def trace_shapes(self, x: Tensor) -> dict[str, tuple[int, ...]]:
        """Every node's output shape without the batch axis, by layer name (for tests)."""
        self._check(x)
        values: dict[str, Tensor] = {INPUT: x}
        shapes: dict[str, tuple[int, ...]] = {}
        for node in self.graph.nodes:
            y = self.layer(node.name)(*[values[i] for i in node.inputs])
            values[node.name] = y
            shapes[node.name] = tuple(y.shape[1:])
        return shapes


def build_module(graph: Graph) -> NetModule:
    """Lower a compiled graph (netspec.compile_file/compile_text) to a torch module."""
    return NetModule(graph)


def count_tensors(module: nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable) element counts, comparable with the IR's parameter counts.

    Trainable: parameters with requires_grad. Non-trainable: frozen parameters plus buffers
    (running statistics), except batchnorm's `num_batches_tracked` counter.
    """
    trainable = frozen = 0
    for p in module.parameters():
        if p.requires_grad:
            trainable += p.numel()
        else:
            frozen += p.numel()
    for sub in module.modules():
        for name, buf in sub.named_buffers(recurse=False):
            if name == "num_batches_tracked" and isinstance(sub, nn.modules.batchnorm._NormBase):
                continue
            frozen += buf.numel()
    return trainable, frozen


__all__ = [
    "LOWERINGS",
    "NetModule",
    "activation_fn",
    "build_module",
    "count_tensors",
    "head_of",
    "lower_node",
]
