"""Keras model files as plain data: the model's layers (name, class, config, inputs by layer
name, from a Sequential or functional config, Keras 2's or Keras 3's) and each layer's weights
in Keras' order.

`.keras` (Keras 3: a zip of config.json, metadata.json and model.weights.h5, whose weight groups
are named by class and counter, `layers/conv2d_1/vars/0`, each `vars` group carrying the layer's
name) and `.h5` (Keras 2 and Keras 3's legacy format: the root attribute `model_config`, weights
under `model_weights/<layer>/` in the order of the group's `weight_names` attribute). h5py,
zipfile and json only: neither TensorFlow nor Keras is imported.

Over 400 lines: both file formats' weight lookups and the config's layer walk (nested models
inlined) share KLayer and its scope, the one contract between reading a file and converting it.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
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


# The models a layer sits in, outermost first: (name, class, index among its class).
Scope = tuple[tuple[str, str, int], ...]


@dataclass
class KerasFile:
    """A Keras file read: the model's config (`{"class_name": ..., "config": ...}`), what wrote
    it, and `weights(layer_name, class_name, index, scope)`: a layer's arrays in Keras' order
    (`scope`: the nested models it sits in)."""

    model: dict[str, Any]
    producer: str
    weights: Callable[[str, str, int, Scope], list[np.ndarray]]


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

    def weights(name: str, class_name: str, index: int, scope: Scope = ()) -> list[np.ndarray]:
        if store is None:
            return []
        # Keras names the groups by class and counter (saving_lib._save_container_state);
        # newer versions also record the layer's name, which wins when present. A nested
        # model's layers are in its group's `layers/`, counted within it.
        key = (None if scope else by_name.get(name)) or _counter_name(class_name, index)
        outer = "".join(f"{_counter_name(c, i)}/layers/" for _, c, i in scope)
        group = store.get(f"layers/{outer}{key}")
        if group is None:
            return []
        out: list[np.ndarray] = []
        for part in _KERAS_PARTS.get(class_name, ("",)):
            out += _vars(group.get(f"{part}/vars" if part else "vars"))
        return out

    return KerasFile(config, f"keras {version} (.keras)", weights)


def _counter_name(class_name: str, index: int) -> str:
    """The group name Keras gave the `index`-th layer of this class: keras.src.utils.naming's
    to_snake_case of the class name, then `_<index>` after the first."""
    snake = re.sub(r"\W+", "", class_name)
    snake = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", snake)
    snake = re.sub("([a-z])([A-Z])", r"\1_\2", snake).lower()
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

    def weights(name: str, class_name: str, index: int, scope: Scope = ()) -> list[np.ndarray]:
        group = root.get(scope[0][0] if scope else name)
        if group is None:
            return []
        names = [
            n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("weight_names", [])
        ]
        if scope:  # the outermost nested model's group lists its layers' weights as `layer/w`
            names = [n for n in names if n.split("/")[-2:-1] == [name]]
        return [np.asarray(group[n][()], dtype=np.float32) for n in names]

    return KerasFile(model, f"keras {version} (.h5)", weights)


MODELS = ("Sequential", "Functional", "Model")


@dataclass
class KLayer:
    """One layer of the Keras config: its inputs by layer name, and the call's keyword options."""

    name: str
    cls: str
    config: dict[str, Any]
    inputs: list[str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    index: int = 0  # the how-many-th layer of its class (the .keras weight group's counter)
    constants: list[float] = field(default_factory=list)  # an op's numbers (`x + 3.0`: [3.0])
    scope: Scope = ()  # the nested models it was inlined from


def model_layers(
    model: Any, file: str, nested: bool = False
) -> tuple[list[KLayer], str, str, tuple[int | None, ...]]:
    """The config's layers (only those the output depends on; a nested model's inlined), the
    input layer's name, the output layer's name and the input's per-sample shape in Keras'
    order (`nested`: a model inside another, whose input shape is the outer one's)."""
    if not isinstance(model, dict) or "class_name" not in model:
        raise DataError.one("the Keras config is not a model", file)
    cls, cfg = model["class_name"], model.get("config")
    if cls not in MODELS or not isinstance(cfg, (dict, list)):
        raise DataError.one(
            f"a subclassed model (class {cls}) without a layer config: its layers are Python "
            "code, which netspec does not run",
            file,
            hint="netspec imports Sequential and functional models",
        )
    raw = cfg if isinstance(cfg, list) else cfg.get("layers")
    if not isinstance(raw, list) or not raw:
        raise DataError.one(f"the {cls} model's config lists no layers", file)
    if cls == "Sequential":
        layers, shape = _sequential(cfg, raw, file, nested)
        inp, out = "input", layers[-1].name if layers else "input"
    else:
        layers, inp, out = _functional(cfg, raw, file)
        shape = None
        for la in layers:
            if la.name == inp:
                shape = la.config.get("batch_shape") or la.config.get("batch_input_shape")
        if shape is None and not nested:
            raise DataError.one(f"the input layer '{inp}' has no shape", file)
        shape = tuple(shape[1:]) if shape else ()
        layers = [la for la in layers if la.cls != "InputLayer"]
    layers, out = _inline(layers, out, file)
    needed, stack = {out}, [out]
    by_name = {la.name: la for la in layers}
    while stack:
        for n in by_name[stack.pop()].inputs:
            if n in by_name and n not in needed:
                needed.add(n)
                stack.append(n)
    return [la for la in layers if la.name in needed], inp, out, shape


def _count(layers: list[KLayer]) -> list[KLayer]:
    seen: Counter[str] = Counter()
    for la in layers:
        la.index = seen[la.cls]
        seen[la.cls] += 1
    return layers


def _entry_name(entry: dict[str, Any]) -> str:
    cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    return str(entry.get("name") or cfg.get("name") or entry.get("class_name"))


def _inline(layers: list[KLayer], out: str, file: str) -> tuple[list[KLayer], str]:
    """Each nested Sequential or functional model replaced by its layers (read from the input
    it is called on; its name, for the layers after it, by its output layer), their weights
    looked up in its scope."""
    done: list[KLayer] = []
    rename: dict[str, str] = {}
    for la in layers:
        la.inputs = [rename.get(n, n) for n in la.inputs]
        if la.cls not in MODELS:
            done.append(la)
            continue
        inner, inp, last, _ = model_layers({"class_name": la.cls, "config": la.config}, file, True)
        if len(la.inputs) != 1:
            raise DataError.one(f"the nested model '{la.name}' reads {len(la.inputs)} inputs", file)
        for x in inner:
            x.inputs = [la.inputs[0] if n == inp else n for n in x.inputs]
            x.scope = ((la.name, la.cls, la.index), *x.scope)
        done += inner
        rename[la.name] = last
    names = Counter(la.name for la in done)
    twice = sorted(n for n, k in names.items() if k > 1)
    if twice:
        raise DataError.one(
            f"a nested model's layer has the name of another layer: {', '.join(twice)}",
            file,
            hint="give the layers distinct names (netspec inlines nested models)",
        )
    return done, rename.get(out, out)


def _sequential(
    cfg: Any, raw: list[Any], file: str, nested: bool = False
) -> tuple[list[KLayer], tuple[int | None, ...]]:
    shape = cfg.get("build_input_shape") if isinstance(cfg, dict) else None
    layers, prev = [], "input"
    for entry in raw:
        c = entry.get("config") or {}
        shape = c.get("batch_shape") or c.get("batch_input_shape") or shape
        if entry.get("class_name") == "InputLayer":
            continue
        name = _entry_name(entry)
        layers.append(KLayer(name, entry.get("class_name", "?"), c, [prev]))
        prev = name
    if shape is None and not nested:
        raise DataError.one(
            "the Sequential model was never built: its config has no input shape",
            file,
            hint="save it after calling it once, or give it a keras.Input",
        )
    # Keras 3 counts Sequential's layers without the InputLayer (Sequential.layers).
    return _count(layers), tuple(shape[1:]) if shape else ()


def _functional(cfg: dict[str, Any], raw: list[Any], file: str) -> tuple[list[KLayer], str, str]:
    def single(refs: Any, what: str) -> str:
        if isinstance(refs, list) and refs and isinstance(refs[0], str):
            refs = [refs]
        if not isinstance(refs, list) or len(refs) != 1:
            raise DataError.one(
                f"the model has {len(refs) if isinstance(refs, list) else 'no'} {what}s: netspec "
                f"networks have one input and one output",
                file,
            )
        return str(refs[0][0])

    inp = single(cfg.get("input_layers"), "input")
    out = single(cfg.get("output_layers"), "output")
    layers = []
    for entry in raw:
        nodes = entry.get("inbound_nodes") or []
        name = _entry_name(entry)
        if len(nodes) > 1:
            raise DataError.one(
                f"layer '{name}' is called {len(nodes)} times (a shared layer): netspec layers "
                "have one set of inputs each",
                file,
            )
        refs, kwargs = _inbound(nodes[0]) if nodes else ([], {})
        cls = entry.get("class_name", "?")
        constants: list[float] = []
        if str(entry.get("module", "")).startswith("keras.src.ops"):
            # A Keras 3 op on a tensor (`x + 3.0`), not the layer of the same class name.
            cls = f"ops.{cls}"
            args = nodes[0].get("args", []) if nodes and isinstance(nodes[0], dict) else []
            constants = [float(a) for a in args if isinstance(a, (int, float))]
        layers.append(
            KLayer(name, cls, entry.get("config") or {}, refs, kwargs, constants=constants)
        )
    return _count(layers), inp, out


def _inbound(node: Any) -> tuple[list[str], dict[str, Any]]:
    """The layer names one call reads (Keras 3's {args, kwargs} or Keras 2's [[name, 0, 0,
    kwargs], ...]) and its plain keyword options."""
    refs: list[str] = []
    kwargs: dict[str, Any] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            refs.append(value["config"]["keras_history"][0])
        elif (
            isinstance(value, list)
            and len(value) >= 3
            and isinstance(value[0], str)
            and isinstance(value[1], int)
        ):
            refs.append(value[0])  # Keras 2: [name, node_index, tensor_index, kwargs]
            if len(value) > 3 and isinstance(value[3], dict):
                for k, v in value[3].items():
                    before = len(refs)
                    walk(v)
                    if len(refs) == before:
                        kwargs[k] = v
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    if isinstance(node, dict):
        walk(node.get("args", []))
        for k, v in (node.get("kwargs") or {}).items():
            if k == "mask":  # Keras 3 spells out the padding mask; netspec derives it itself
                continue
            before = len(refs)
            walk(v)
            if len(refs) == before:
                kwargs[k] = v
    else:
        walk(node)
    return refs, kwargs
