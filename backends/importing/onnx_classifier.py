"""A classifier's label output as converters write it (skl2onnx, onnxmltools): besides the
probabilities (through a ZipMap or an Identity), a second output that is the class label of
their ArgMax (ArrayFeatureExtractor of a constant list of labels, then Reshape or Cast). netspec
keeps the probabilities as the network's one output and the labels as the run's classes, the
names `netspec predict` answers with."""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import numpy_helper

PASS = ("Identity", "Reshape", "Cast", "Flatten", "Squeeze", "Unsqueeze")


@dataclass(frozen=True)
class LabelHead:
    probabilities: str  # the tensor that becomes the network's output
    classes: tuple[str, ...]
    dropped: frozenset[str]  # outputs of the nodes that compute only the label and the map


def label_head(model: onnx.ModelProto) -> LabelHead | None:
    """The label output and its probabilities, or None when the graph has no such pair."""
    graph = model.graph
    outputs = [o.name for o in graph.output]
    if len(outputs) != 2:
        return None
    made = {o: n for n in graph.node for o in n.output if o}
    tables = {t.name: t for t in graph.initializer}

    def back(name: str, ops: tuple[str, ...]) -> str:
        while name in made and made[name].op_type in ops and made[name].input:
            name = made[name].input[0]
        return name

    for label, probs in (outputs, outputs[::-1]):
        pick = made.get(back(label, PASS))
        if pick is None or pick.op_type != "ArrayFeatureExtractor" or pick.input[0] not in tables:
            continue
        argmax = made.get(back(pick.input[1], PASS))
        if argmax is None or argmax.op_type != "ArgMax":
            continue
        axis = next((a.i for a in argmax.attribute if a.name == "axis"), 0)
        source = probs
        if source in made and made[source].op_type == "ZipMap":
            source = made[source].input[0]
        source = back(source, ("Identity",))
        if axis not in (1, -1) or back(argmax.input[0], ("Identity",)) != source:
            continue
        values = numpy_helper.to_array(tables[pick.input[0]]).reshape(-1)
        classes = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist())
        needed, todo = set(), [source]
        while todo:  # the nodes the probabilities need: every other node is dropped
            node = made.get(todo.pop())
            if node is not None and id(node) not in needed:
                needed.add(id(node))
                todo.extend(i for i in node.input if i)
        dropped = {o for n in graph.node if id(n) not in needed for o in n.output if o}
        return LabelHead(source, classes, frozenset(dropped))
    return None
