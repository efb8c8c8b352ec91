"""IR stage and the two passes over it: the graph of named nodes, then shapes, then parameters."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from netspec.errors import Problem, SpecError
from netspec.items import INPUT, Origin
from netspec.layers import Layer, ShapeError, Weight
from netspec.layers.activations import Act, activation_of
from netspec.shapes import Shape, dynamic, filled
from netspec.source import format_path
from netspec.spec import Validated


@dataclass(frozen=True)
class Node:
    """One layer of the network: resolved arguments, inputs, and (after the passes) shape and size."""

    name: str
    layer: Layer
    inputs: tuple[str, ...]  # node names, or INPUT for the network input
    trainable: bool
    origin: Origin
    input_shapes: tuple[Shape, ...] = ()
    shape: Shape = ()
    params: int = 0
    trainable_params: int = 0
    macs: int = 0

    @property
    def kind(self) -> str:
        return self.layer.kind

    @property
    def non_trainable_params(self) -> int:
        return self.params - self.trainable_params

    @property
    def weights(self) -> dict[str, Weight]:
        """The tensors this node owns, by name (needs the shapes pass)."""
        return self.layer.weights(list(self.input_shapes), self.shape)


@dataclass(frozen=True)
class Graph:
    """The whole network: nodes in topological (file) order; the last one is the output."""

    name: str
    input_shape: Shape
    nodes: tuple[Node, ...]
    train: Any = None
    description: str | None = None
    file: str | None = None
    # The length the dynamic time axis is measured at (MACs, memory); None: no dynamic axis.
    length: int | None = None

    @property
    def dynamic(self) -> bool:
        """True when the input has a dynamic (null) time axis: shapes then carry None."""
        return dynamic(self.input_shape)

    @property
    def output(self) -> Node:
        return self.nodes[-1]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def head(self) -> Act | None:
        """The output's final softmax or sigmoid (None for a linear or other output).

        Class losses take the logits before it; model.json and the ONNX metadata record it.
        """
        act = activation_of(self.output.layer, len(self.output.shape))
        return act if act is not None and act.fn in ("softmax", "sigmoid") else None

    @property
    def sequential(self) -> bool:
        """True when every node reads only the one before it (no branches or skips)."""
        prev = INPUT
        for n in self.nodes:
            if n.inputs != (prev,) or n.layer.ref_fields:
                return False
            prev = n.name
        return True


def _problem(node: Node, message: str, hint: str | None = None) -> Problem:
    o = node.origin
    via = f" (in {o.via[-1]})" if o.via else ""
    return Problem(
        f"layer '{node.name}' ({node.kind}): {message}{via}",
        None,
        o.line,
        o.col,
        format_path(o.path) or None,
        hint,
    )


def build_ir(validated: Validated) -> Graph:
    """Turn validated declarations into a graph; checks that every layer's output is used."""
    nodes = tuple(Node(d.name, d.layer, d.inputs, d.trainable, d.origin) for d in validated.decls)
    graph = Graph(
        validated.name,
        validated.input_shape,
        nodes,
        validated.train,
        validated.description,
        validated.file,
    )
    used = {INPUT} | {i for n in nodes for i in n.inputs}
    used |= {getattr(n.layer, f) for n in nodes for f in n.layer.ref_fields}
    dangling = [n for n in nodes[:-1] if n.name not in used]
    if dangling:
        raise SpecError(
            [
                _problem(
                    n,
                    "its output is never used: only the last layer is the network's output",
                    "feed it into a later layer with `inputs:`, or remove it",
                )
                for n in dangling
            ],
            stage="ir",
        ).located(validated.file)
    return graph


def infer_shapes(graph: Graph) -> Graph:
    """Shape pass: every node's per-sample output shape, with the arithmetic explained on failure.

    Independent failures are all reported; nodes downstream of a failure are skipped.
    """
    shapes: dict[str, Shape] = {INPUT: graph.input_shape}
    out: list[Node] = []
    problems: list[Problem] = []
    for node in graph.nodes:
        if any(i not in shapes for i in node.inputs) or any(
            getattr(node.layer, f) not in shapes for f in node.layer.ref_fields
        ):
            continue  # an upstream layer already failed
        ins = [shapes[i] for i in node.inputs]
        refs = {
            getattr(node.layer, f): shapes[getattr(node.layer, f)] for f in node.layer.ref_fields
        }
        try:
            shape = _output_shape(node.layer, ins, refs)
        except ShapeError as exc:
            message = exc.message
            if exc.mismatch is not None:
                a, b = exc.mismatch
                message = message.replace("{a}", f"'{node.inputs[a]}' {tuple(ins[a])}").replace(
                    "{b}", f"'{node.inputs[b]}' {tuple(ins[b])}"
                )
            if exc.mismatch is None:
                message += f" (input shape {_shapes_text(ins)})"
            problems.append(_problem(node, message, exc.hint))
            continue
        shapes[node.name] = shape
        out.append(replace(node, input_shapes=tuple(tuple(s) for s in ins), shape=shape))
    if problems:
        raise SpecError(problems, stage="shapes").located(graph.file)
    return replace(graph, nodes=tuple(out))


def _output_shape(layer: Layer, ins: list[Shape], refs: dict[str, Shape]) -> Shape:
    """The layer's shape rule, and with a dynamic input the checks that it can take one."""
    if not any(dynamic(x) for x in ins):
        return tuple(layer.output_shape(ins, refs))
    try:
        shape = tuple(layer.output_shape(ins, refs))
    except TypeError:  # a rule doing arithmetic on the unknown length
        raise ShapeError(
            f"{layer.kind} needs the length of the dynamic time axis (null)", hint=STATIC_HINT
        ) from None
    _check_static_weights(layer, ins, shape)
    return shape


def _check_static_weights(layer: Layer, ins: list[Shape], shape: Shape) -> None:
    """Parameter counts never depend on the dynamic axis: a layer whose tensors would (dense,
    layernorm, a recurrent layer's features on the time axis) is refused."""
    try:
        sizes = [(k, w.shape) for k, w in layer.weights(ins, shape).items()]
    except TypeError:  # arithmetic on the unknown length
        sizes = [("weights", (None,))]
    for name, size in sizes:
        if None in size:
            raise ShapeError(
                f"its {name} would need the length of the dynamic time axis (null): the axis it "
                "acts on is the time axis",
                hint=STATIC_HINT,
            )


STATIC_HINT = (
    "dense, layernorm and recurrent layers act on the last axis and convolutions on the first: "
    "`permute: {dims: [1, 0]}` puts the features where the layer reads them"
)


def _shapes_text(shapes: list[Shape]) -> str:
    return ", ".join(str(tuple(s)) for s in shapes)


# MACs and the memory estimate of a dynamic-length network are counted at this length, unless
# asked for another (`netspec summary --length`) or a position_embedding's max_length is shorter.
DEFAULT_LENGTH = 100


def max_length(graph: Graph) -> int | None:
    """The longest sequence a dynamic-length network runs on: its shortest position_embedding's
    max_length (None: no limit, or no dynamic axis)."""
    if not graph.dynamic:
        return None
    caps = [n.layer.max_length for n in graph.nodes if n.kind == "position_embedding"]
    return min(caps, default=None)


def default_length(graph: Graph) -> int:
    """The length a dynamic network is measured at by default: 100, or the shortest
    position_embedding's max_length if that is less (a longer sequence could not run), or the
    shortest length the network runs on if that is more (its windows must fit)."""
    cap = max_length(graph)
    length = min(DEFAULT_LENGTH, cap or DEFAULT_LENGTH)
    try:
        at_length(replace(graph, length=length))
    except SpecError:
        return shortest_length(graph, limit=cap or MAX_SHORTEST) or length
    return length


def at_length(graph: Graph) -> Graph:
    """The graph with its dynamic axis set to `graph.length`: every shape a number (counts kept).

    The memory estimate and the MACs read these; a graph without a dynamic axis is itself.
    """
    if graph.length is None or not graph.dynamic:
        return graph
    return infer_shapes(replace(graph, input_shape=filled(graph.input_shape, graph.length)))


MAX_SHORTEST = 4096  # the longest length `shortest_length` tries


def shortest_length(graph: Graph, limit: int = MAX_SHORTEST) -> int | None:
    """The shortest length of the dynamic time axis the network runs on (its windows must fit),
    or None if none up to `limit` does."""
    for t in range(1, limit + 1):
        try:
            at_length(replace(graph, length=t))
        except SpecError:
            continue
        return t
    return None


def at_data_length(graph: Graph, sample_shape: tuple[int, ...]) -> Graph:
    """A dynamic graph measured at its data's length (a sample's size on the time axis).

    The shapes pass at that length refuses what it cannot run (a sequence longer than a
    position_embedding's max_length) as a located SpecError.
    """
    return count_params(graph, sample_shape[graph.input_shape.index(None)])


def count_params(graph: Graph, length: int | None = None) -> Graph:
    """Parameter pass: total, trainable and MACs per node (frozen layers are non-trainable).

    Parameters never depend on a dynamic axis; MACs do, and are counted at `length` (default:
    `default_length`), which the graph records.
    """
    if graph.dynamic:
        graph = replace(graph, length=length or default_length(graph))
    fixed = at_length(graph)
    out = []
    for node, at in zip(graph.nodes, fixed.nodes):
        p = node.layer.params(list(node.input_shapes), node.shape)
        trainable = p.total - p.non_trainable if node.trainable else 0
        macs = at.layer.macs(list(at.input_shapes), at.shape)
        out.append(replace(node, params=p.total, trainable_params=trainable, macs=macs))
    return replace(graph, nodes=tuple(out))
