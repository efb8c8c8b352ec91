"""Keras' convolutions, pooling, padding and resizing as netspec spec items (channels-last
Keras tensors are channels-first here: keras_layers.T); the helpers are keras_layers.py's."""

from __future__ import annotations

from typing import Any

import numpy as np

from .keras_layers import (
    Convert,
    Refuse,
    T,
    _check,
    _fused,
    _ints,
    _then,
    _to_cl,
)
from .keras_weights import keras_tensors


def _channels_last(cfg: dict[str, Any]) -> None:
    _check(cfg, "netspec imports channels-last Keras models", data_format=("channels_last", None))


def _conv_args(cfg: dict[str, Any], filters: int, act: str, **more: Any) -> dict[str, Any]:
    """A Keras convolution's spec arguments, each written only where it is not netspec's
    default: filters, kernel, stride, padding, dilation, `more` (those not None), activation,
    bias."""
    args: dict[str, Any] = {"filters": filters, "kernel": _ints(cfg["kernel_size"])}
    if _ints(cfg.get("strides", 1)) != 1:
        args["stride"] = _ints(cfg["strides"])
    if cfg.get("padding", "valid") != "valid":
        args["padding"] = cfg["padding"]
    if _ints(cfg.get("dilation_rate", 1)) != 1:
        args["dilation"] = _ints(cfg["dilation_rate"])
    args.update({k: v for k, v in more.items() if v is not None})
    if act != "linear":
        args["activation"] = act
    if not cfg.get("use_bias", True):
        args["bias"] = False
    return args


def _add_conv(
    state: Any, la: Any, kind: str, args: dict[str, Any], x: T, extra: Any, w: list[np.ndarray]
) -> T:
    """The convolution as a spec item with Keras' weights in netspec's layout, then the
    activation it fused when netspec could not (`_fused`'s extra)."""
    name = state.add(kind, args, state.name(la.name), [x])
    state.put(name, keras_tensors(la.cls, la.config, w))
    return _then(state, la, T(name, "cl", x.rank), extra)


def conv(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    cfg = la.config
    _channels_last(cfg)
    _check(cfg, "pad the input with ZeroPadding first", padding=("valid", "same"))
    x = _to_cl(state, la, xs[0])
    act, extra = _fused(cfg, x, state)
    groups = int(cfg.get("groups", 1))
    args = _conv_args(cfg, int(cfg["filters"]), act, groups=groups if groups != 1 else None)
    kind = "conv1d" if la.cls == "Conv1D" else "conv2d"
    return _add_conv(state, la, kind, args, x, extra, w)


def depthwise(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    """DepthwiseConv2D: a conv2d with one group per input channel; SeparableConv2D: netspec's
    separable_conv2d (the depthwise conv without bias, then the 1x1 pointwise with it)."""
    cfg = la.config
    _channels_last(cfg)
    _check(cfg, padding=("valid", "same"))
    if not w:
        raise Refuse("no weights in the file (the input's channels are unknown)")
    x = _to_cl(state, la, xs[0])
    channels, mult = w[0].shape[2], w[0].shape[3]
    separable = la.cls == "SeparableConv2D"
    act, extra = _fused(cfg, x, state)
    filters = int(cfg["filters"]) if separable else channels * mult
    if separable:
        args = _conv_args(cfg, filters, act, depth_multiplier=int(mult) if mult != 1 else None)
    else:
        args = _conv_args(cfg, filters, act, groups=channels)
    kind = "separable_conv2d" if separable else "conv2d"
    return _add_conv(state, la, kind, args, x, extra, w)


def conv_transpose(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    cfg = la.config
    _channels_last(cfg)
    _check(cfg, padding=("valid", "same"))
    x = _to_cl(state, la, xs[0])
    act, extra = _fused(cfg, x, state)
    out_pad = cfg.get("output_padding")
    args = _conv_args(
        cfg, int(cfg["filters"]), act, output_padding=None if out_pad is None else _ints(out_pad)
    )
    return _add_conv(state, la, "conv_transpose2d", args, x, extra, w)


def pool(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    cfg = la.config
    _channels_last(cfg)
    _check(cfg, padding=("valid", "same"))
    x = _to_cl(state, la, xs[0])
    size = _ints(cfg.get("pool_size", 2))
    args: dict[str, Any] = {"size": size}
    if cfg.get("strides") is not None and _ints(cfg["strides"]) != size:
        args["stride"] = _ints(cfg["strides"])
    if cfg.get("padding", "valid") != "valid":
        args["padding"] = cfg["padding"]
    op = "max" if la.cls.startswith("Max") else "avg"
    name = state.add(f"{op}pool{la.cls[-2:].lower()}", args, state.name(la.name), [x])
    return T(name, "cl", x.rank)


def global_pool(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    (x,), cfg = xs, la.config
    _channels_last(cfg)
    op = "max" if "Max" in la.cls else "avg"
    keep = bool(cfg.get("keepdims", False))
    if la.cls.endswith("1D") and x.layout == "seq":
        if keep:
            raise Refuse("keepdims: true over a sequence")
        name = state.add(
            "seq_pool", {"op": "max" if op == "max" else "mean"}, state.name(la.name), xs
        )
        return T(name, "flat", 1)
    x = _to_cl(state, la, x)
    kind = f"global_{op}pool{la.cls[-2:].lower()}"
    name = state.add(kind, {"keepdims": True} if keep else None, state.name(la.name), [x])
    return T(name, "cl", x.rank) if keep else T(name, "flat", 1)


def _edges_1d(value: Any) -> list[int]:
    """Keras' 1-D padding or cropping: c or (left, right)."""
    return [value, value] if isinstance(value, int) else [int(value[0]), int(value[1])]


def _edges_2d(value: Any) -> list[int]:
    """Keras' 2-D padding or cropping: c, (h, w) or ((top, bottom), (left, right))."""
    if isinstance(value, int):
        return [value] * 4
    if all(isinstance(v, int) for v in value):
        return [value[0], value[0], value[1], value[1]]
    return [value[0][0], value[0][1], value[1][0], value[1][1]]


def _one_d(state: Any, la: Any, x: T, kind: str, args: dict[str, Any]) -> T:
    """A layer on Keras' (steps, features): netspec's [C, L] kind (as Conv1D's input)."""
    x = _to_cl(state, la, x)
    return T(state.add(kind, args, state.name(la.name), [x]), "cl", x.rank)


def trim(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    """Cropping1D/2D: fixed steps or pixels cut off the edges (trim1d, trim2d)."""
    cfg = la.config
    _channels_last(cfg)
    if la.cls == "Cropping1D":
        return _one_d(state, la, xs[0], "trim1d", {"trim": _ints(_edges_1d(cfg["cropping"]))})
    return _one_d(state, la, xs[0], "trim2d", {"trim": _ints(_edges_2d(cfg["cropping"]))})


def zeropad(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    cfg = la.config
    _channels_last(cfg)
    p = cfg.get("padding", 1)
    if la.cls == "ZeroPadding1D":
        return _one_d(state, la, xs[0], "zeropad1d", {"padding": _ints(_edges_1d(p))})
    if isinstance(p, int):
        pads = [p] * 4
    elif all(isinstance(v, int) for v in p):
        pads = [p[0], p[0], p[1], p[1]]
    else:
        pads = [p[0][0], p[0][1], p[1][0], p[1][1]]
    x = _to_cl(state, la, xs[0])
    name = state.add("zeropad2d", {"padding": _ints(pads)}, state.name(la.name), [x])
    return T(name, "cl", x.rank)


def upsample(state: Any, la: Any, xs: list[T], w: list[np.ndarray]) -> T:
    cfg = la.config
    _channels_last(cfg)
    if la.cls == "UpSampling1D":  # Keras repeats each step
        return _one_d(state, la, xs[0], "upsample1d", {"scale": int(cfg.get("size", 2))})
    _check(cfg, interpolation=("nearest", "bilinear"))
    args: dict[str, Any] = {"scale": _ints(cfg.get("size", 2))}
    if cfg.get("interpolation", "nearest") != "nearest":
        args["mode"] = cfg["interpolation"]
    x = _to_cl(state, la, xs[0])
    name = state.add("upsample2d", args, state.name(la.name), [x])
    return T(name, "cl", x.rank)


CONVERTERS: dict[str, Convert] = {
    "Conv1D": conv,
    "Conv2D": conv,
    "Conv2DTranspose": conv_transpose,
    "DepthwiseConv2D": depthwise,
    "SeparableConv2D": depthwise,
    **dict.fromkeys(("ZeroPadding1D", "ZeroPadding2D"), zeropad),
    **dict.fromkeys(("UpSampling1D", "UpSampling2D"), upsample),
    **dict.fromkeys(("Cropping1D", "Cropping2D"), trim),
    **dict.fromkeys(("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D"), pool),
    **dict.fromkeys(
        (
            "GlobalAveragePooling1D",
            "GlobalAveragePooling2D",
            "GlobalMaxPooling1D",
            "GlobalMaxPooling2D",
        ),
        global_pool,
    ),
}
