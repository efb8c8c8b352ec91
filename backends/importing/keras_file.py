"""Keras model files as plain data: the model's config and each layer's weights in Keras' order.

`.keras` (Keras 3: a zip of config.json, metadata.json and model.weights.h5, whose weight groups
are named by class and counter, `layers/conv2d_1/vars/0`, each `vars` group carrying the layer's
name) and `.h5` (Keras 2 and Keras 3's legacy format: the root attribute `model_config`, weights
under `model_weights/<layer>/` in the order of the group's `weight_names` attribute). h5py,
zipfile and json only: neither TensorFlow nor Keras is imported.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import DataError

# Where a recurrent, bidirectional or attention layer keeps its variables in a .keras file, in
# the order of the layer's `weights` (the order legacy .h5 files list them in `weight_names`).
_KERAS_PARTS = {
    "LSTM": ("cell",),
    "GRU": ("cell",),
    "SimpleRNN": ("cell",),
    "Bidirectional": ("forward_layer/cell", "backward_layer/cell"),
    "MultiHeadAttention": ("query_dense", "key_dense", "value_dense", "output_dense"),
}


@dataclass
class KerasFile:
    """A Keras file read: the model's config (`{"class_name": ..., "config": ...}`), what wrote
    it, and `weights(layer_name, class_name, index)`: a layer's arrays in Keras' order."""

    model: dict[str, Any]
    producer: str
    weights: Callable[[str, str, int], list[np.ndarray]]


def read_keras_file(path: Path) -> KerasFile:
    """A .keras or .h5 file as config and weights; DataError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise DataError.one("no such file", str(path))
    if path.suffix.lower() == ".keras":
        return _read_zip(path)
    return _read_h5(path)


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is the `import` extra
        raise DataError.one(
            "reading Keras files needs h5py", hint="pip install 'netspec[import]'"
        ) from None
    return h5py


def _read_zip(path: Path) -> KerasFile:
    h5py = _h5py()
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "config.json" not in names:
                raise DataError.one(
                    f"a zip file, but not a Keras model: it has no config.json "
                    f"(it holds {', '.join(sorted(names)[:4]) or 'nothing'})",
                    str(path),
                    hint="save the model with model.save('model.keras')",
                )
            config = _json(zf.read("config.json"), path, "config.json")
            meta = (
                _json(zf.read("metadata.json"), path, "metadata.json")
                if ("metadata.json" in names)
                else {}
            )
            blob = zf.read("model.weights.h5") if "model.weights.h5" in names else None
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as exc:
        raise DataError.one(
            f"not a readable .keras file (a zip archive): {exc}",
            str(path),
            hint="the file is truncated or is not a Keras 3 model: save it again",
        ) from None
    version = meta.get("keras_version", "3") if isinstance(meta, dict) else "3"
    store = None
    if blob is not None:
        try:
            store = h5py.File(io.BytesIO(blob), "r")
        except OSError as exc:
            raise DataError.one(
                f"the .keras file's model.weights.h5 is not readable HDF5: {exc}", str(path)
            ) from None
    by_name = {}
    if store is not None and "layers" in store:
        for key, group in store["layers"].items():
            vars_ = group.get("vars")
            name = vars_.attrs.get("name") if vars_ is not None else None
            if isinstance(name, bytes):
                name = name.decode()
            if isinstance(name, str):
                by_name[name] = key

    def weights(name: str, class_name: str, index: int) -> list[np.ndarray]:
        if store is None:
            return []
        # Keras names the groups by class and counter (saving_lib._save_container_state);
        # newer versions also record the layer's name, which wins when present.
        key = by_name.get(name) or _counter_name(class_name, index)
        group = store.get(f"layers/{key}")
        if group is None:
            return []
        out: list[np.ndarray] = []
        for part in _KERAS_PARTS.get(class_name, ("",)):
            out += _vars(group.get(f"{part}/vars" if part else "vars"))
        return out

    return KerasFile(config, f"keras {version} (.keras)", weights)


def _counter_name(class_name: str, index: int) -> str:
    """The group name Keras gave the `index`-th layer of this class (0: none, else `_<index>`)."""
    snake = re.sub(r"(?<!^)(?=[A-Z][a-z])|(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()
    return snake if index == 0 else f"{snake}_{index}"


def _vars(group: Any) -> list[np.ndarray]:
    if group is None:
        return []
    keys = sorted((k for k in group if k.isdigit()), key=int)
    return [np.asarray(group[k][()], dtype=np.float32) for k in keys]


def _json(data: bytes | str, path: Path, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise DataError.one(f"{what} is not valid JSON ({exc})", str(path)) from None


def _read_h5(path: Path) -> KerasFile:
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError.one(
            f"not a readable HDF5 file: {exc}",
            str(path),
            hint="expected a Keras .h5 model (model.save('model.h5')) or a .keras file",
        ) from None
    config = f.attrs.get("model_config")
    if config is None:
        weights_only = "layer_names" in f.attrs or "model_weights" in f or "layers" in f
        if weights_only:
            raise DataError.one(
                "no model found in the file: it holds weights only (no model_config), as "
                "model.save_weights() writes them",
                str(path),
                hint="save the whole model with model.save('model.h5') or model.save('model.keras')",
            )
        raise DataError.one(
            "an HDF5 file, but not a Keras model: it has no model_config attribute",
            str(path),
            hint="expected a file written by Keras' model.save()",
        )
    if isinstance(config, bytes):
        config = config.decode("utf-8")
    model = _json(config, path, "the model_config attribute")
    version = f.attrs.get("keras_version", "2")
    if isinstance(version, bytes):
        version = version.decode()
    root = f.get("model_weights", f)

    def weights(name: str, class_name: str, index: int) -> list[np.ndarray]:
        group = root.get(name)
        if group is None:
            return []
        names = group.attrs.get("weight_names", [])
        return [
            np.asarray(group[n.decode() if isinstance(n, bytes) else n][()], dtype=np.float32)
            for n in names
        ]

    return KerasFile(model, f"keras {version} (.h5)", weights)
