"""Keras models (.keras, Keras 2 and Keras 3 legacy .h5) read into a netspec spec and weights.

The one place Keras' conventions become netspec's: channels-last image tensors become
channels-first (HWIO kernels to OIHW, a Flatten's H, W, C order undone in the dense kernel after
it), dense kernels transposed, GRU gates (z, r, h) reordered to (r, z, n), attention heads
flattened, Rescaling/Normalization at the input moved to the preprocessing record. A layer or
option netspec cannot express is refused, every one of them in one error (read_keras).
The file is read by keras_file.py (h5py, zipfile, json; no TensorFlow, no Keras), each layer
class converted by keras_layers.py, its weights by keras_weights.py.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import DataError, Problem, SpecError

from . import keras_convs, keras_layers, keras_ops
from .keras_file import KLayer, model_layers, read_keras_file
from .keras_layers import Refuse, T
from .keras_weights import keras_tensors
from .model import Imported

PREPROCESSING = ("Rescaling", "Normalization")
CONVERTERS = {**keras_layers.CONVERTERS, **keras_convs.CONVERTERS, **keras_ops.CONVERTERS}


def _unsupported(unsupported: dict[str, list[str]], path: Path) -> Problem:
    """The one problem that lists every layer class the import has no converter for."""
    listed = "; ".join(
        f"{cls} x{len(names)} ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})"
        for cls, names in sorted(unsupported.items())
    )
    return Problem(
        f"{sum(map(len, unsupported.values()))} layer(s) netspec cannot import: {listed}",
        str(path),
        hint="netspec imports the layers docs/import.md lists; nothing was written",
    )


def read_keras(path: Path, input_shape: tuple[int, ...] | None = None) -> Imported:
    """A Keras model file as a netspec spec and weights; `input_shape` (netspec's channels-first
    order) fixes the dimensions the file leaves open. Everything unsupported is refused at once."""
    path = Path(path)
    kf = read_keras_file(path)
    layers, inp, _out, shape = model_layers(kf.model, str(path))
    consumers: dict[str, list[KLayer]] = {}
    for layer in layers:
        for name in layer.inputs:
            consumers.setdefault(name, []).append(layer)
    # An image (H, W, C) becomes channels-first; a sequence (time, features) keeps its axes
    # (a Conv1D on it gets a permute: Keras' Conv1D reads it as (length, channels)).
    layout = {3: "cl", 2: "seq", 1: "flat"}.get(len(shape))
    if layout is None:
        raise DataError.one(f"the model's input {list(shape)} has rank {len(shape)}", str(path))
    ns_shape = _netspec_input(shape, layout, input_shape, str(path))
    state = _State(path, consumers, layers)
    state.producer = kf.producer  # Keras 2 and 3 differ in what some names compute
    state.tensors[inp] = T("input", layout, len(shape))
    problems: list[Problem] = []
    unsupported: dict[str, list[str]] = {}
    # Layers after one that failed: their layouts are guesses, so only their own options count.
    doubtful: set[str] = set()
    for layer in layers:
        first = state.tensors.get(layer.inputs[0]) if layer.inputs else None
        guessed = first or T("input", layout, len(shape))
        after_failure = any(n in doubtful for n in layer.inputs)
        try:
            missing = [n for n in layer.inputs if n not in state.tensors]
            if missing or not layer.inputs:
                raise Refuse(f"reads {missing or 'nothing'}, which no layer of the model gives")
            if layer.cls in PREPROCESSING and first is not None and first.ns == "input":
                state.preprocess(
                    layer, kf.weights(layer.name, layer.cls, layer.index, layer.scope), inp
                )
                continue
            convert = CONVERTERS.get(layer.cls)
            if convert is None:
                unsupported.setdefault(layer.cls, []).append(layer.name)
                state.tensors[layer.name] = guessed
                doubtful.add(layer.name)
                continue
            w = kf.weights(layer.name, layer.cls, layer.index, layer.scope)
            state.tensors[layer.name] = convert(
                state, layer, [state.tensors[n] for n in layer.inputs], w
            )
            if after_failure:
                doubtful.add(layer.name)
        except Refuse as why:
            if not (after_failure and why.layout):
                problems.append(
                    Problem(
                        f"layer '{layer.name}' ({layer.cls}): {why.message}",
                        str(path),
                        hint=why.hint,
                    )
                )
            state.tensors[layer.name] = guessed
            doubtful.add(layer.name)
    if unsupported:
        problems.insert(0, _unsupported(unsupported, path))
    if problems:
        raise SpecError(problems, kind="model")
    spec = {"name": _name(kf.model), "input": list(ns_shape), "layers": state.spec}
    weights = state.finish(spec)
    pre = state.preprocessing(ns_shape)
    input_layout = "NHWC" if layout == "cl" else None
    return Imported(
        spec=spec,
        weights=weights,
        source=path,
        producer=kf.producer,
        input_layout=input_layout,
        preprocessing=pre,
        notes=state.notes,
    )


class _State:
    """What the conversion has built so far: spec items, weights, each Keras tensor's place."""

    def __init__(self, path: Path, consumers: dict[str, list[KLayer]], layers: list[KLayer]):
        self.path = path
        self.consumers = consumers
        self.spec: list[dict[str, Any]] = []
        self.weights: dict[str, np.ndarray] = {}
        self.tensors: dict[str, T] = {}
        self.names: set[str] = {"input"}
        self.notes: list[str] = []
        self.flatten_dense: list[tuple[str, str]] = []  # (dense, flatten) kernels to reorder
        self.scale, self.mean, self.std = 1.0, None, None  # the preprocessing so far
        self.last = "input"
        self.producer = ""
        self.absorbed: set[str] = set()  # layers a pattern already converted (hard_sigmoid)

    def name(self, keras_name: str) -> str:
        """A netspec layer name for a Keras one: kept when valid and free."""
        name = keras_name
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", name) or name == "input":
            name = "l_" + re.sub(r"[^A-Za-z0-9_.\-]", "_", name)
        base, n = name, 1
        while name in self.names:
            name, n = f"{base}_{n}", n + 1
        self.names.add(name)
        return name

    def add(self, kind: str, args: dict[str, Any] | None, name: str, inputs: list[T]) -> str:
        """Append a spec item (its `inputs:` only where it does not follow its input)."""
        item: dict[str, Any] = {kind: args or None, "name": name}
        refs = [t.ns for t in inputs]
        if refs != [self.last]:
            item["inputs"] = refs
        self.spec.append(item)
        self.last = name
        return name

    def put(self, name: str, tensors: dict[str, np.ndarray]) -> None:
        for key, value in tensors.items():
            self.weights[f"{name}.{key}"] = np.ascontiguousarray(value, dtype=np.float32)

    def preprocess(self, layer: KLayer, w: list[np.ndarray], inp: str) -> None:
        """A Rescaling or Normalization at the input, folded into the record's
        x * scale, then (x - mean) / std per channel."""
        cfg = layer.config
        if len(self.consumers.get(layer.inputs[0], [])) != 1:
            raise Refuse("the model input also feeds other layers, so it cannot be preprocessed")
        mean = np.zeros(1) if self.mean is None else np.asarray(self.mean)
        std = np.ones(1) if self.std is None else np.asarray(self.std)
        if layer.cls == "Rescaling":
            s, o = cfg.get("scale", 1.0), cfg.get("offset", 0.0)
            if not isinstance(s, (int, float)) or not isinstance(o, (int, float)) or s == 0:
                raise Refuse("a per-channel or zero scale", "netspec records one scale factor")
            if self.mean is None and self.scale == 1.0:
                self.scale, mean = float(s), -np.asarray([o], float)
            else:  # ((x*a - M)/S)*s + o = (x*a - (M - o*S/s)) / (S/s)
                mean, std = mean - o * std / s, std / s
        else:
            if cfg.get("invert"):
                raise Refuse("invert: true", "only a normalization at the input is imported")
            if self.tensors[inp].layout == "seq":
                raise Refuse(
                    "a normalization of a sequence's features",
                    "netspec's preprocessing record normalizes axis 0 (channels)",
                )
            if len(w) >= 2:
                m, v = w[0].ravel(), w[1].ravel()
            else:
                m = np.asarray(cfg.get("mean"), float).ravel()
                v = np.asarray(cfg.get("variance"), float).ravel()
            sd = np.maximum(np.sqrt(v), 1e-7)  # Keras divides by max(sqrt(var), epsilon)
            mean, std = mean + m * std, std * sd  # ((x*a - M)/S - m)/sd
        self.mean = tuple(
            float(x) for x in np.broadcast_to(mean, np.broadcast_shapes(mean.shape, std.shape))
        )
        self.std = tuple(
            float(x) for x in np.broadcast_to(std, np.broadcast_shapes(mean.shape, std.shape))
        )
        self.tensors[layer.name] = self.tensors[inp]

    def preprocessing(self, input_shape: tuple[int | None, ...]) -> dict[str, Any] | None:
        if self.mean is not None and not any(self.mean) and all(s == 1 for s in self.std or ()):
            self.mean = self.std = None  # a Rescaling without an offset
        if self.scale == 1.0 and self.mean is None:
            return None
        return {
            "input_shape": list(input_shape),
            "raw_shape": list(input_shape),
            "scale": self.scale,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
        }

    def finish(self, spec: dict[str, Any]) -> dict[str, np.ndarray]:
        """The weights, with each dense kernel after a channels-last Flatten reordered from
        Keras' (H, W, C) flattening to netspec's (C, H, W)."""
        if not self.flatten_dense:
            return self.weights
        import yaml

        from netspec.compiler import compile_text

        graph = compile_text(yaml.safe_dump(spec, sort_keys=False), str(self.path))
        shapes = {n.name: n.input_shapes[0] for n in graph.nodes}
        for dense, flatten in self.flatten_dense:
            chw = shapes[flatten]
            # Keras' feature j is netspec's perm[j]: netspec order (C, H, W) read as (H, W, C).
            order = np.arange(math.prod(chw)).reshape(chw)
            perm = np.moveaxis(order, 0, -1).ravel()
            kernel = self.weights[f"{dense}.weight"]
            fixed = np.empty_like(kernel)
            fixed[:, perm] = kernel
            self.weights[f"{dense}.weight"] = fixed
        return self.weights


def _name(model: dict[str, Any]) -> str:
    cfg = model.get("config")
    name = cfg.get("name") if isinstance(cfg, dict) else None
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", name) if isinstance(name, str) and name else "imported"
    return name


def _netspec_input(
    shape: tuple[int | None, ...], layout: str, given: tuple[int, ...] | None, file: str
) -> tuple[int | None, ...]:
    """The network's input in netspec's order, the open dimensions filled from `given`."""
    ours = (shape[-1], *shape[:-1]) if layout == "cl" else tuple(shape)
    if given is not None:
        if len(given) != len(ours) or any(o is not None and o != g for o, g in zip(ours, given)):
            raise DataError.one(
                f"--input-shape {','.join(map(str, given))} does not fit the model's input "
                f"{list(ours)} (netspec's order{', channels first' if layout == 'cl' else ''})",
                file,
            )
        return tuple(given)
    open_ = [i for i, n in enumerate(ours) if n is None]
    if (
        open_
        and not (layout == "seq" and open_ == [0])
        and not (layout == "flat" and len(ours) == 1 and open_ == [0])
    ):
        raise DataError.one(
            f"the model's input {list(ours)} has open dimensions (null) netspec needs fixed",
            file,
            hint=f"give them with --input-shape (netspec's order{', channels first: C,H,W' if layout == 'cl' else ''})",
        )
    return ours


__all__ = ["keras_tensors", "read_keras"]
