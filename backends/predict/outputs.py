"""Predict's outputs: scores and labels, values, segmentation masks as palette PNGs, text lines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from netspec.fileio import atomic_path
from netspec.palette import mask_palette

from .errors import error
from .inputs import Failed, Sample
from .model import ModelInfo, kind_of

if TYPE_CHECKING:  # for the annotation only: classifiers never load the tiling code
    from netspec.data.scenes import Segmentation


def is_mask_name(name: str) -> bool:
    """A file name predict writes a mask under: `<stem>_mask.png`."""
    return name.endswith("_mask.png") and len(name) > len("_mask.png")


# Written into every mask's PNG text: predict replaces a file only if it carries this.
MASK_SOFTWARE = "netspec predict"


def _mask_info() -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", MASK_SOFTWARE)
    return info


def is_own_mask(path: Path) -> bool:
    """Whether the file is a mask netspec predict wrote (its PNG text names the software)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get("Software") == MASK_SOFTWARE
    except Exception:  # not an image Pillow reads: not one of ours
        return False


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def probabilities(y: np.ndarray, info: ModelInfo) -> np.ndarray:
    """Outputs (one row or a batch) as probabilities: softmax or sigmoid unless the model ends in
    it; other kinds as they are."""
    kind = kind_of(info)
    if kind == "multiclass" and info.head != "softmax":
        return _softmax(y)
    if kind == "binary" and info.head != "sigmoid":
        return _sigmoid(y)
    return y


class Interpreter:
    """Turns output rows into result dicts (and mask files for segmentation)."""

    def __init__(self, info: ModelInfo, top_k: int = 5, out_dir: Path | None = None) -> None:
        if top_k < 1:
            raise error(f"--top-k {top_k}: expected a positive number")
        self.info = info
        self.kind = kind_of(info)
        self.top_k = top_k
        self.out_dir = Path(out_dir) if out_dir is not None else Path()
        self.written: set[str] = set()

    def label(self, i: int) -> str:
        classes = self.info.classes
        return classes[i] if classes is not None and i < len(classes) else str(i)

    def failed(self, sample: Sample, y: np.ndarray) -> Failed | None:
        """A Failed when the model's output for a (finite) sample is NaN or infinite (an overflow
        inside the network): a result would print `NaN`, which is not JSON, or a wrong class."""
        if np.isfinite(y).all():
            return None
        return Failed(
            sample.name,
            error(
                "the model's output for this input is NaN or infinite (an overflow inside the "
                "network)",
                sample.name,
                hint="check that the input is in the range the model was trained on",
            ),
        )

    def __call__(self, sample: Sample, y: np.ndarray) -> dict[str, Any]:
        if self.kind == "multiclass":
            p = probabilities(y, self.info)
            order = np.argsort(-p, kind="stable")[: self.top_k]
            preds = [{"label": self.label(int(i)), "score": float(p[i])} for i in order]
            return {"input": sample.name, "predictions": preds}
        if self.kind == "binary":
            p = float(probabilities(y, self.info)[0])
            pred = (
                {"label": self.label(1), "score": p}
                if p >= 0.5
                else {
                    "label": self.label(0),
                    "score": 1.0 - p,
                }
            )
            return {"input": sample.name, "predictions": [pred]}
        if self.kind == "segmentation":
            return self.mask(sample, y)
        return {"input": sample.name, "values": y.tolist()}

    def mask(self, sample: Sample, y: np.ndarray) -> dict[str, Any]:
        """Argmax over the classes (K, H, W) -> a palette PNG `<stem>_mask.png` in out_dir."""
        k = y.shape[0]
        if k == 1:
            cut = 0.5 if self.info.head == "sigmoid" else 0.0
            classes = (y[0] >= cut).astype(np.uint8)
        else:
            classes = y.argmax(axis=0)
        return self.write_mask(sample, classes, k)

    def scene(self, sample: Sample, seg: Segmentation) -> dict[str, Any]:
        """A segmented scene -> its mask file, and how many tiles and TTA variants made it."""
        result = self.write_mask(sample, seg.mask, seg.probs.shape[0])
        return {**result, "tiles": seg.tiles, "tta": seg.tta}

    def write_mask(self, sample: Sample, classes: np.ndarray, k: int) -> dict[str, Any]:
        """Class ids (H, W) of K classes -> a palette PNG `<stem>_mask.png` in out_dir."""
        from PIL import Image

        if k > 256:
            raise error(f"{k} classes: a palette mask holds at most 256", self.info.path)
        name = f"{sample.stem}_mask.png"
        n = 1
        while name in self.written:
            name = f"{sample.stem}_{n}_mask.png"
            n += 1
        self.written.add(name)
        path = self.out_dir / name
        h, w = classes.shape
        img = Image.frombytes("P", (w, h), np.ascontiguousarray(classes, dtype=np.uint8).tobytes())
        img.putpalette(mask_palette(k))  # the colours of training's predictions.png
        if path.exists() and not is_own_mask(path):
            raise error(
                f"will not replace {path}: a file netspec predict did not write",
                path,
                hint="move it, or give --out a new folder for the masks",
                kind="usage",
            )
        try:
            with atomic_path(path) as tmp:
                img.save(tmp, format="PNG", pnginfo=_mask_info())
        except OSError as exc:
            raise error(f"cannot write the mask: {exc.strerror or exc}", path) from None
        ids, counts = np.unique(classes, return_counts=True)
        return {
            "input": sample.name,
            "mask": str(path),
            "size": [int(classes.shape[0]), int(classes.shape[1])],
            "pixels": {self.label(int(i)): int(c) for i, c in zip(ids, counts)},
        }


def text_lines(result: dict[str, Any]) -> list[str]:
    """One result as label_image.py prints it: the input, then `label (score = 0.98659)` lines."""
    lines = [result["input"]]
    if "predictions" in result:
        lines += [f"{p['label']} (score = {p['score']:.5f})" for p in result["predictions"]]
    elif "mask" in result:
        lines.append(result["mask"])
    else:
        flat = np.asarray(result["values"], dtype=np.float64).ravel()
        lines.append(" ".join(f"{v:.6g}" for v in flat))
    return lines
