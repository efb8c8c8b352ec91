"""`export --preprocess` against `netspec predict` on real photos: grey levels before the net, outputs after.

    python benchmarks/preprocess_agreement.py RUN IMAGES [--limit N] [--gray]

RUN is a trained image run, IMAGES a folder of photos (searched recursively). The run is
exported twice (plain and `--preprocess`, into a temporary folder); each photo goes through
`netspec predict`'s own reading (Pillow, EXIF, the recorded steps) into the plain model, and as
decoded uint8 pixels (H, W, C) into the preprocessing model. `--gray` feeds the photos as
1-channel images (an `L` model's grayscale photos). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def _top(o: np.ndarray) -> int:
    return int(o[0] >= 0.5) if o.size == 1 else int(o.argmax())


def main() -> None:
    import onnxruntime as ort
    from PIL import Image, ImageOps

    from netspec.backends.export.preprocess_check import numpy_geometry
    from netspec.backends.export.preprocess_graph import (
        IMAGE_NAME,
        PREPROCESS_OPSET,
        preprocessing_nodes,
    )
    from netspec.backends.export.run import ExportOptions, export_run
    from netspec.backends.predict.inputs import read_image
    from netspec.backends.predict.model import OnnxModel

    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--gray", action="store_true")
    args = ap.parse_args()
    files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    files = files[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        plain_path, pre_path = Path(tmp) / "plain.onnx", Path(tmp) / "pre.onnx"
        export_run(args.run, plain_path)
        export_run(args.run, pre_path, ExportOptions(preprocess=True))
        plain = OnnxModel(plain_path, "cpu")
        inside = ort.InferenceSession(str(pre_path), providers=["CPUExecutionProvider"])
        pre = plain.info.pre
        assert pre is not None
        from onnx import TensorProto, helper

        nodes, inits = preprocessing_nodes(pre, values=False, out="pixels")
        graph = helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info(IMAGE_NAME, TensorProto.UINT8, None)],
            [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, None)],
            initializer=inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", PREPROCESS_OPSET)])
        model.ir_version = 8
        geometry = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        grey_max, grey_sum, grey_n, out_max, same = 0.0, 0.0, 0, 0.0, 0
        for f in files:
            with Image.open(f) as im:
                im = ImageOps.exif_transpose(im)
                pixels = np.asarray(im.convert("L" if args.gray else "RGB"))
            hwc = pixels[..., None] if pixels.ndim == 2 else pixels
            want = plain.run(read_image(f, plain.info)[None])[0]
            got = inside.run(None, {IMAGE_NAME: hwc[None]})[0][0]
            g = geometry.run(None, {IMAGE_NAME: hwc[None]})[0][0]
            d = np.abs(g - numpy_geometry(hwc, pre))
            grey_max, grey_sum, grey_n = (
                max(grey_max, float(d.max())),
                grey_sum + float(d.sum()),
                grey_n + d.size,
            )
            out_max = max(out_max, float(np.abs(got - want).max()))
            same += _top(got) == _top(want)
    print(
        json.dumps(
            {
                "run": str(args.run),
                "images": len(files),
                "grey_max": grey_max,
                "grey_mean": round(grey_sum / max(grey_n, 1), 4),
                "output_max_abs_diff": out_max,
                "top1_agreement": f"{same}/{len(files)}",
            }
        )
    )


if __name__ == "__main__":
    main()
