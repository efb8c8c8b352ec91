"""The Python API for exported models: Predictor, an .onnx file run by onnxruntime (no torch)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


class Predictor:
    """An exported model (.onnx) with onnxruntime and the preprocessing recorded in it.

    Needs neither torch nor the spec: only the .onnx file.
    """

    def __init__(self, model: str | Path, *, device: str = "auto", top_k: int = 5) -> None:
        """`device`: auto (CUDA when onnxruntime-gpu can use it), cpu or cuda, as `--device`;
        `top_k`: classes per result, as `--top-k`."""
        from netspec.backends.predict.model import OnnxModel

        self.path = Path(model)
        self.model = OnnxModel(self.path, device)
        self.top_k = top_k

    @classmethod
    def _of(cls, model: Any, top_k: int) -> Predictor:
        """A Predictor over a model opened already (Run.predict's torch ModuleModel)."""
        self = cls.__new__(cls)
        self.path, self.model, self.top_k = model.info.path, model, top_k
        return self

    def __repr__(self) -> str:
        return f"<Predictor {str(self.path)!r}>"

    @property
    def classes(self) -> tuple[str, ...] | None:
        """The class labels the model was trained with (None for regression)."""
        return self.model.info.classes

    def predict(
        self,
        inputs: str | Path | np.ndarray | Iterable[str | Path | np.ndarray],
        *,
        batch: int = 64,
        out: str | Path | None = None,
        overlap: int | None = None,
        tta: bool = False,
        keep_going: bool = False,
    ) -> list[dict[str, Any]]:
        """Results for every sample, as `netspec predict --json` prints them.

        An input is a file (image, .npy, .csv) or a numpy array of raw values (as in the files:
        the model's preprocessing is applied), one sample or a batch with a leading N; an array
        is named `inputs[k]` in the results (`inputs[k][i]` for a batch's samples). For a text
        model (its card records a tokenizer) a `str` is a text, tokenized as in training and
        named `inputs[k]`; a Path is a .txt (one text per line) or .csv file. An
        `export --preprocess` model takes image files and uint8 pixel arrays (H, W, C) or
        (N, H, W, C), of any size; arrays of other dtypes are refused (docs/export.md).
        Classification: {input, predictions: [{label, score}]}; regression: {input, values};
        segmentation: {input, mask, ...} with the mask written into the folder `out` (default: here).
        `batch` is the samples per onnxruntime call (`--batch`).
        An input that cannot be read (a file, a folder, a glob, an array) raises its
        NetspecError; with `keep_going=True` it gives {input, error} in its place instead, as
        the command line does, and the others go on.
        """
        import numpy as np

        from netspec.backends.predict.predict import PredictOptions, predict

        items: list[Any] = [inputs] if isinstance(inputs, (str, Path, np.ndarray)) else list(inputs)
        if self.model.info.tokenizer is not None:  # a text model: strings are texts
            from netspec.backends.predict.texts import Text

            items = [
                Text(item, f"inputs[{k}]") if isinstance(item, str) else item
                for k, item in enumerate(items)
            ]
        options = PredictOptions(self.top_k, batch, out, overlap, tta, keep_going)
        return list(predict(self.model, items, options))
