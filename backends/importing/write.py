"""An imported model written as a run directory every command accepts: model.json, spec.yaml,
summary.txt and model.safetensors (names from RunLayout, every write atomic)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from netspec.compiler import compile_text
from netspec.data.preprocess import Preprocessing
from netspec.errors import NetspecError, SpecError
from netspec.fileio import check_own_folder, write_bytes
from netspec.ir import Graph
from netspec.run_record import RunLayout, RunMeta, SourceModel, write_start
from netspec.runs import check_weights
from netspec.summary import render
from netspec.version import __version__

from .blocks import with_blocks
from .model import Imported

# What `netspec import` writes into its folder (check_own_folder refuses anything else there).
OWN = (RunLayout.META, RunLayout.SPEC, RunLayout.SUMMARY, RunLayout.WEIGHTS)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def spec_text(imported: Imported, sha256: str) -> str:
    """spec.yaml: a header saying where it came from, then the spec, layer names kept."""
    head = [
        f"# Imported by netspec {__version__} from {imported.source.name} ({imported.producer})",
        f"# sha256 {sha256}",
    ]
    if imported.input_layout:
        head.append(
            f"# The source took {imported.input_layout} inputs; this network is channels-first "
            "(the run records the transposition)."
        )
    head += [f"# {note}" for note in imported.notes]
    return "\n".join(head) + "\n" + yaml.dump(imported.spec, Dumper=_Dumper, sort_keys=False)


class _Dumper(yaml.SafeDumper):
    """The spec as a person writes it: `input: [3, 32, 32]`, `- flatten:` (no `null`), every
    value written out (block uses with equal arguments share no YAML anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(type(None), lambda d, _: d.represent_scalar("tag:yaml.org,2002:null", ""))
_Dumper.add_representer(
    dict,  # a layer's arguments on one line: `- conv2d: {filters: 16, kernel: 3}`
    lambda d, v: d.represent_mapping(
        "tag:yaml.org,2002:map",
        v,
        flow_style=bool(v)
        and all(
            not isinstance(x, dict)
            and not (isinstance(x, list) and any(isinstance(i, (dict, list)) for i in x))
            for x in v.values()
        )
        and "name" not in v
        and None not in v.values(),
    ),
)
_Dumper.add_representer(
    list,
    lambda d, v: d.represent_sequence(
        "tag:yaml.org,2002:seq", v, flow_style=all(not isinstance(x, (dict, list)) for x in v)
    ),
)


def compile_import(imported: Imported, text: str, where: str) -> Graph:
    """The spec compiled (every stage) and the weights checked against it: an importer's bug
    never reaches the disk."""
    try:
        graph = compile_text(text, where)
    except NetspecError as err:
        raise SpecError(err.problems, stage=err.stage, kind="model") from None
    check_weights(graph, imported.weights, strict=True, file=str(imported.source))
    return graph


def image_input(
    pre: dict[str, Any] | None, layout: str | None, shape: tuple[int | None, ...]
) -> dict[str, Any] | None:
    """The preprocessing record of an image model (channels last in Keras, 1 or 3 channels, a
    fixed size) says so: predict and visualize then take image files, decoded (0..255) and
    resized to the input as a folder's images are in training, which is what Keras' image
    loaders give such a model."""
    if layout != "NHWC" or len(shape) != 3 or shape[0] not in (1, 3) or None in shape:
        return pre
    c, h, w = shape
    record = dict(pre or {"input_shape": list(shape), "raw_shape": list(shape)})
    record.update(channel_order="RGB" if c == 3 else "L", image_size=[h, w], raw_range=[0.0, 255.0])
    return record


def task_of(head: str | None, output: tuple[int | None, ...]) -> str | None:
    """What a source model's head says it is: a softmax over classes, one sigmoid unit for two
    classes (saliency and reports need to know); anything else is left unknown."""
    if len(output) == 1 and head == "softmax" and (output[0] or 0) > 1:
        return "multiclass"
    if output == (1,) and head == "sigmoid":
        return "binary"
    return None


def write_import(imported: Imported, out: Path) -> Path:
    """Write the run directory `out` (new, empty, or an earlier import's); return it. The
    model's repeated structures are written as blocks (`with_blocks`, done here if the caller
    has not)."""
    out = Path(out)
    imported = with_blocks(imported)
    check_own_folder(out, lambda name: name in OWN, "netspec import")
    layout = RunLayout(out)
    sha256 = sha256_of(imported.source)
    text = spec_text(imported, sha256)
    graph = compile_import(imported, text, str(layout.spec))
    head = graph.head
    pre = image_input(imported.preprocessing, imported.input_layout, tuple(graph.input_shape))
    if pre is not None:  # a scaling at the input of a table or sequence model
        shape = list(graph.input_shape)
        pre = {"input_shape": shape, "raw_shape": shape, **pre}
    meta = RunMeta(
        name=graph.name,
        netspec_version=__version__,
        spec_sha256=hashlib.sha256(text.encode()).hexdigest(),
        task=task_of(head.fn if head is not None else None, tuple(graph.output.shape)),
        classes=imported.classes,
        input_shape=tuple(graph.input_shape),
        output_shape=tuple(graph.output.shape),
        head=head.fn if head is not None else None,
        preprocessing=None if pre is None else Preprocessing.from_dict(pre, str(imported.source)),
        input_layout=imported.input_layout,
        imported_from=SourceModel(imported.source.name, sha256, imported.producer),
    )
    meta.check(graph.input_shape, graph.output.shape, str(imported.source))
    write_start(layout, meta, text, render(graph))
    from safetensors.numpy import save

    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in imported.weights.items()}
    write_bytes(layout.weights, save(tensors, metadata={"netspec": meta.to_json()}))
    return out
