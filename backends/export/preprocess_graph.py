"""`netspec export --preprocess`: the image preprocessing of a run as ONNX nodes in front of the net.

The exported model then takes decoded 8-bit images as they come from any decoder, `image`:
uint8 (N, H, W, C), H and W of any size, C = 1 (gray), 3 (RGB) or 4 (RGBA: alpha dropped, as
Pillow's convert("RGB") drops it), a batch of same-size images, and does what `netspec predict`
does in numpy (netspec/data/preprocess.py, netspec/data/folder.py):

- channels: the first three (or the one, repeated) as RGB; an `L` model converts with Pillow's
  fixed-point luma ((19595 R + 38470 G + 7471 B + 32768) >> 16, exact in float32);
- `fit_image` (a folder's `size`, optionally the centred crop to its aspect ratio): Resize with
  antialias=1 and exclude_outside=1 on the uint8 image, which is Pillow's antialiased bilinear
  filter with its border renormalization (measured within 1 grey level);
- `grayscale` (0.299 R + 0.587 G + 0.114 B, rounded half to even), `resize` (the float filter,
  rounded), or predict's resize of an image of another size to the model's; `center_crop`;
- the value steps: scale, normalize or per-sample standardization, the reshape to the input.

Resize's `antialias` needs opset 18, so such an export declares at least 18. Text and table
models keep their preprocessing outside (docs/export.md says why).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from netspec.data.preprocess import GRAY_WEIGHTS, PER_SAMPLE_DDOF, PER_SAMPLE_EPS, Preprocessing

from .card import IN_GRAPH, PREFIX, props_of
from .emitter import INPUT_NAME, ExportError

IMAGE_NAME = "image"  # the graph input of an export with the preprocessing inside
PREPROCESS_OPSET = 18  # Resize's antialias attribute
# The card's description of the raw input (the sidecar's `raw_input`).
RAW_INPUT: dict[str, Any] = {
    "name": IMAGE_NAME,
    "dtype": "uint8",
    "layout": "NHWC",
    "channels": [1, 3, 4],
    "definition": "decoded 8-bit images, rows top to bottom, EXIF orientation applied, a batch "
    "of same-size images of any size; 1 channel: gray, 3: RGB, 4: RGBA (alpha dropped); the "
    "graph resizes, converts, scales and normalizes them itself",
}
_PILLOW_LUMA = (19595.0, 38470.0, 7471.0)  # Pillow's convert("L"), 16-bit fixed point


class _Nodes:
    """The preprocessing nodes and constants, every name under `preprocess/`."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, what: str) -> str:
        self.count += 1
        return f"preprocess/{what}_{self.count}"

    def const(self, what: str, value: Any, dtype: Any) -> str:
        name = self.name(what)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, what: str, values: Sequence[int]) -> str:
        return self.const(what, list(values), np.int64)

    def op(
        self, op: str, inputs: Sequence[str], what: str, out: str | None = None, **attrs: Any
    ) -> str:
        out = out or self.name(what)
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out


def check_preprocessable(pre: Preprocessing | None) -> Preprocessing:
    """The record, if its model takes 8-bit images; else the ExportError saying why not."""
    if pre is None:
        raise ExportError(
            "--preprocess: the run records no preprocessing (trained before netspec did)"
        )
    if pre.channel_order not in ("RGB", "L") or len(pre.raw_shape) != 3:
        raise ExportError(
            "--preprocess is for image models: this one takes "
            f"{list(pre.raw_shape)} arrays, not images (text and table models keep their "
            "preprocessing outside the graph: docs/export.md)"
        )
    if None in pre.raw_shape:
        raise ExportError("--preprocess needs a model of fixed image size")
    if pre.image_bits == 16:
        raise ExportError(
            "--preprocess takes 8-bit images: this run was trained on 16-bit ones "
            "(export without --preprocess; docs/sidecar.md gives the 16-bit steps)"
        )
    return pre


def preprocessing_nodes(
    pre: Preprocessing, *, values: bool = True, out: str = INPUT_NAME, elem: int = TensorProto.FLOAT
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes from `image` to `out` (the net's input, of type `elem`) and their constants.

    `values` False stops after the geometry: `out` is then the (N, C, H, W) pixels as float32,
    for the export's check against Pillow (check_against_numpy).
    """
    # Over 60 lines as one function on purpose: the steps in the order predict runs them.
    g = _Nodes()
    channels, height, width = pre.raw_shape
    x = g.op("Slice", [IMAGE_NAME, g.ints("c0", [0]), g.ints("c3", [3]), g.ints("ax", [3])], "rgb")
    x = g.op("Expand", [x, g.ints("three", [1, 1, 1, 3])], "rgb")  # gray repeated, as Pillow
    mode = "RGB" if pre.grayscale else pre.channel_order
    if mode == "L":  # Pillow's convert("L"): integers below 2^24, so float32 is exact
        f = g.op("Cast", [x], "rgb_f", to=TensorProto.FLOAT)
        w = g.op("Mul", [f, g.const("luma", _PILLOW_LUMA, np.float32)], "luma")
        s = g.op("ReduceSum", [w, g.ints("ax", [3])], "luma", keepdims=1)
        s = g.op("Add", [s, g.const("half", 32768.0, np.float32)], "luma")
        s = g.op("Floor", [g.op("Div", [s, g.const("two16", 65536.0, np.float32)], "luma")], "l")
        x = g.op("Cast", [s], "l_u8", to=TensorProto.UINT8)
    if pre.image_size:
        if pre.image_crop == "center":
            x = _aspect_crop(g, x, pre.image_size)
        x = _resize(g, x, pre.image_size, axes=(1, 2))  # on the 8-bit image, as fit_image
    x = g.op("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    x = g.op("Cast", [x], "float", to=TensorProto.FLOAT)
    if pre.grayscale:
        w = g.op(
            "Mul", [x, g.const("gray", np.reshape(GRAY_WEIGHTS, (1, 3, 1, 1)), np.float32)], "gray"
        )
        x = _pixels(g, g.op("ReduceSum", [w, g.ints("ax", [1])], "gray", keepdims=1))
    size = pre.resize
    if not size and not pre.image_size:  # predict's resize of an image of another size
        size = (height, width) if not pre.center_crop else None
    if size:
        x = _pixels(g, _resize(g, x, size, axes=(2, 3)))
    if pre.center_crop:
        x = _center_crop(g, x, pre.center_crop)
    if values:
        x = _values(g, x, pre, channels * height * width)
    if elem != TensorProto.FLOAT:
        x = g.op("Cast", [x], "cast", to=elem)
    g.op("Identity", [x], "out", out=out)
    return g.nodes, g.inits


def _resize(g: _Nodes, x: str, size: Sequence[int], axes: tuple[int, int]) -> str:
    """Pillow's antialiased bilinear filter: its support grows with the reduction factor and is
    renormalized where it leaves the image (exclude_outside)."""
    return g.op(
        "Resize",
        [x, "", "", g.ints("size", list(size))],
        "resize",
        mode="linear",
        antialias=1,
        exclude_outside=1,
        coordinate_transformation_mode="half_pixel",
        axes=list(axes),
    )


def _pixels(g: _Nodes, x: str) -> str:
    """Float values back to 8-bit pixels: rounded half to even (np.rint), clipped to 0..255."""
    return g.op(
        "Clip",
        [
            g.op("Round", [x], "round"),
            g.const("lo", 0.0, np.float32),
            g.const("hi", 255.0, np.float32),
        ],
        "pixels",
    )


def _dims(g: _Nodes, x: str, axes: tuple[int, int]) -> tuple[str, str]:
    """The sizes of two axes of x, as int64 tensors of one element."""
    shape = g.op("Shape", [x], "shape")
    return tuple(g.op("Gather", [shape, g.ints("axis", [a])], "dim") for a in axes)  # type: ignore[return-value]


def _aspect_crop(g: _Nodes, x: str, size: Sequence[int]) -> str:
    """folder._center_crop_box on NHWC: the largest centred box with the aspect ratio h:w."""
    out_h, out_w = size
    h, w = _dims(g, x, (1, 2))
    one, two = g.ints("one", [1]), g.ints("two", [2])

    def rounded(a: str, times: int, over: int) -> str:  # max(1, round(a * times / over)), float64
        d = g.op("Cast", [a], "f64", to=TensorProto.DOUBLE)
        q = g.op(
            "Div",
            [
                g.op("Mul", [d, g.const("t", float(times), np.float64)], "mul"),
                g.const("o", float(over), np.float64),
            ],
            "div",
        )
        return g.op(
            "Max",
            [g.op("Cast", [g.op("Round", [q], "round")], "i64", to=TensorProto.INT64), one],
            "at_least_1",
        )

    wide = g.op(
        "Greater",
        [
            g.op("Mul", [w, g.ints("oh", [out_h])], "w_oh"),
            g.op("Mul", [h, g.ints("ow", [out_w])], "h_ow"),
        ],
        "wide",
    )
    new_w, new_h = rounded(h, out_w, out_h), rounded(w, out_h, out_w)
    zero = g.ints("zero", [0])
    left = g.op(
        "Where", [wide, g.op("Div", [g.op("Sub", [w, new_w], "sub"), two], "half"), zero], "left"
    )
    top = g.op(
        "Where", [wide, zero, g.op("Div", [g.op("Sub", [h, new_h], "sub"), two], "half")], "top"
    )
    kept_w = g.op("Where", [wide, new_w, w], "kept_w")
    kept_h = g.op("Where", [wide, h, new_h], "kept_h")
    starts = g.op("Concat", [top, left], "starts", axis=0)
    ends = g.op(
        "Concat",
        [g.op("Add", [top, kept_h], "bottom"), g.op("Add", [left, kept_w], "right")],
        "ends",
        axis=0,
    )
    return g.op("Slice", [x, starts, ends, g.ints("hw", [1, 2])], "aspect_crop")


def _center_crop(g: _Nodes, x: str, size: Sequence[int]) -> str:
    """top = (H - h) // 2, left = (W - w) // 2, as preprocess.geometry."""
    h, w = _dims(g, x, (2, 3))
    want = g.ints("crop", list(size))
    starts = g.op(
        "Div",
        [g.op("Sub", [g.op("Concat", [h, w], "hw", axis=0), want], "sub"), g.ints("two", [2])],
        "starts",
    )
    return g.op(
        "Slice",
        [x, starts, g.op("Add", [starts, want], "ends"), g.ints("hw", [2, 3])],
        "center_crop",
    )


def _values(g: _Nodes, x: str, pre: Preprocessing, n: int) -> str:
    """preprocess.apply_values: x * scale, per-channel or per-sample standardization, reshape."""
    if pre.scale != 1.0:
        x = g.op("Mul", [x, g.const("scale", pre.scale, np.float32)], "scale")
    view = (1, -1, 1, 1)
    if pre.mean and pre.std:
        x = g.op("Sub", [x, g.const("mean", np.reshape(pre.mean, view), np.float32)], "centred")
        x = g.op("Div", [x, g.const("std", np.reshape(pre.std, view), np.float32)], "normalized")
    elif pre.per_sample:
        axes = g.ints("sample", [1, 2, 3])
        d = g.op("Sub", [x, g.op("ReduceMean", [x, axes], "mean", keepdims=1)], "centred")
        if n > 1:
            ss = g.op("ReduceSum", [g.op("Mul", [d, d], "sq"), axes], "ss", keepdims=1)
            var = g.op("Div", [ss, g.const("n1", float(n - PER_SAMPLE_DDOF), np.float32)], "var")
            std = g.op("Sqrt", [var], "std")
        else:
            std = g.const("std0", 0.0, np.float32)
        x = g.op(
            "Div",
            [d, g.op("Add", [std, g.const("eps", PER_SAMPLE_EPS, np.float32)], "std_eps")],
            "standardized",
        )
    return g.op("Reshape", [x, g.ints("input_shape", [-1, *pre.input_shape])], "reshape")


def with_preprocessing(model: onnx.ModelProto, pre: Preprocessing) -> onnx.ModelProto:
    """The model with the preprocessing nodes in front: input `image` (uint8 NHWC) instead of
    `input`; opset at least 18; the card says so (`preprocessing_in_graph`, `raw_input`)."""
    pre = check_preprocessable(pre)
    old = next((v for v in model.graph.input if v.name == INPUT_NAME), None)
    if old is None:
        raise ExportError(f"--preprocess: the model has no input named '{INPUT_NAME}'")
    elem = old.type.tensor_type.elem_type
    batch = old.type.tensor_type.shape.dim[0]
    dim = batch.dim_param or batch.dim_value
    nodes, inits = preprocessing_nodes(pre, elem=elem)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    image = helper.make_tensor_value_info(
        IMAGE_NAME, TensorProto.UINT8, [dim, "height", "width", "channels"]
    )
    del g.input[:]
    g.input.append(image)
    net = list(g.node)
    del g.node[:]
    g.node.extend([*nodes, *net])  # before the net's nodes: the graph stays topologically sorted
    g.initializer.extend(inits)
    for o in out.opset_import:
        if o.domain in ("", "ai.onnx") and o.version < PREPROCESS_OPSET:
            o.version = PREPROCESS_OPSET
    out.ir_version = max(out.ir_version, helper.find_min_ir_version_for(list(out.opset_import)))
    props = props_of(out)
    props[IN_GRAPH] = "true"
    props[PREFIX + "raw_input"] = json.dumps(RAW_INPUT)
    helper.set_model_props(out, props)
    out.doc_string += "; takes uint8 (N, H, W, C) images: preprocessing inside the graph"
    return out
