"""The check of `export --preprocess`: the in-graph geometry against netspec's numpy and Pillow steps."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from netspec.data.preprocess import Preprocessing

from .emitter import ExportError
from .preprocess_graph import IMAGE_NAME, PREPROCESS_OPSET, preprocessing_nodes

# The in-graph geometry against Pillow's, in grey levels: Pillow's 8-bit resize works in fixed
# point (22 fractional bits), onnxruntime's in float, so a value near a rounding tie may differ
# by 1 (measured on the cats/dogs photos: 2% of values, never more than 1).
MAX_GREY_DIFF = 2.0
MEAN_GREY_DIFF = 0.1


def probe_images(pre: Preprocessing, seed: int = 0) -> list[np.ndarray]:
    """Smooth images with noise, (H, W, C) uint8: smaller, larger and of another aspect ratio
    than the model's input (and RGBA and gray ones), for the export's check."""
    rng = np.random.default_rng(seed)
    _, h, w = pre.raw_shape
    out = []
    for hh, ww, c in (
        (h * 2 + 7, w + w // 2 + 3, 3),
        (max(1, h // 2 + 1), w * 2 + 1, 4),
        (h, w, 1),
    ):
        yy, xx = np.mgrid[0:hh, 0:ww]
        base = 127 + 100 * np.sin(yy / (3 + hh / 9)) * np.cos(xx / (2 + ww / 7))
        img = base[..., None] + rng.normal(0, 25, (hh, ww, c))
        out.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    return out


def numpy_geometry(img: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """What `netspec predict` makes of a decoded image (H, W, C) before the value steps:
    (C, H, W) float32 pixels (predict.inputs.read_image's steps)."""
    from PIL import Image

    from netspec.data.folder import image_pixels
    from netspec.data.preprocess import geometry

    im = Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)
    mode = "RGB" if pre.grayscale else str(pre.channel_order)
    pixels = image_pixels(im, mode, pre.image_size, pre.image_crop)
    x = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    x = geometry(x, grayscale=pre.grayscale, resize=pre.resize, center_crop=pre.center_crop)
    if tuple(x.shape) != tuple(pre.raw_shape):  # predict's resize of an image of another size
        x = geometry(x, resize=pre.raw_shape[1:])
    return x.astype(np.float32)


def check_against_numpy(pre: Preprocessing) -> tuple[float, float]:
    """The in-graph geometry on probe_images against netspec's numpy and Pillow steps: the
    largest and the mean difference in grey levels; ExportError over the tolerance."""
    import onnxruntime as ort

    nodes, inits = preprocessing_nodes(pre, values=False, out="pixels")
    graph = helper.make_graph(
        nodes,
        "preprocess",
        [helper.make_tensor_value_info(IMAGE_NAME, TensorProto.UINT8, ["n", "h", "w", "c"])],
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", PREPROCESS_OPSET)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    worst, total, count = 0.0, 0.0, 0
    for img in probe_images(pre):
        got = session.run(None, {IMAGE_NAME: img[None]})[0][0]
        want = numpy_geometry(img, pre)
        if got.shape != want.shape:
            raise ExportError(
                f"--preprocess: the graph makes {list(got.shape)} pixels, netspec {list(want.shape)}"
            )
        diff = np.abs(got - want)
        worst, total, count = (
            max(worst, float(diff.max())),
            total + float(diff.sum()),
            count + diff.size,
        )
    mean = total / count
    if worst > MAX_GREY_DIFF or mean > MEAN_GREY_DIFF:
        raise ExportError(
            f"--preprocess: the in-graph preprocessing differs from netspec's by up to {worst:g} "
            f"grey levels (mean {mean:.3f}; tolerance {MAX_GREY_DIFF:g}, mean {MEAN_GREY_DIFF})"
        )
    return worst, mean
