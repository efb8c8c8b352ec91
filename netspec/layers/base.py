"""The Layer base class and the argument types every layer kind validates with."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from netspec.shapes import Shape, prod

ACTIVATIONS: tuple[str, ...] = (
    "linear",
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "softmax",
    "gelu",
    "silu",
    "relu6",
    "hard_sigmoid",
    "hard_swish",
    "elu",
)
# The `activation:` argument of the weighted layers (dense, convolutions), described once.
ACTIVATION_DOC = (
    "Applied to the output: linear (none), "
    + ", ".join(ACTIVATIONS[1:-1])
    + f" or {ACTIVATIONS[-1]}."
)


def suggest(name: str, options: Sequence[str]) -> str | None:
    """The closest valid name to a typo (case-insensitive), or None."""
    lowered = {o.lower(): o for o in options}
    if name.lower() in lowered:
        return lowered[name.lower()]
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def _fail(message: str, hint: str | None = None) -> PydanticCustomError:
    # The hint travels in the error's context; the compiler prints it on its own line.
    return PydanticCustomError("netspec", message, {"hint": hint} if hint else None)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ints(ndim: int, minimum: int, what: str):
    """Validator for `k` or `[k1, ..., k_ndim]` (ints >= minimum); always returns an ndim-tuple."""
    shape = "[h, w]" if ndim == 2 else f"a list of {ndim}"

    def validate(v: Any) -> tuple[int, ...]:
        if _is_int(v) and v >= minimum:
            return (v,) * ndim
        if (
            isinstance(v, (list, tuple))
            and len(v) == ndim
            and all(_is_int(x) and x >= minimum for x in v)
        ):
            return tuple(v)
        raise _fail(f"expected {what} (an integer >= {minimum} or {shape})")

    item = {"type": "integer", "minimum": minimum}
    schema = {"anyOf": [item, {"type": "array", "items": item, "minItems": ndim, "maxItems": ndim}]}
    return Annotated[tuple[int, ...], PlainValidator(validate), WithJsonSchema(schema)]


def _padding(ndim: int):
    """Validator for `valid`, `same`, `p` or `[p_h, p_w]`: returns the string or an ndim-tuple."""
    shape = "[h, w]" if ndim == 2 else f"a list of {ndim}"

    def validate(v: Any) -> str | tuple[int, ...]:
        if v in ("valid", "same"):
            return v
        if isinstance(v, str):
            near = suggest(v, ["valid", "same"])
            raise _fail(
                f"expected 'valid', 'same', an integer >= 0 or {shape}",
                f"did you mean '{near}'?" if near else None,
            )
        if _is_int(v) and v >= 0:
            return (v,) * ndim
        if (
            isinstance(v, (list, tuple))
            and len(v) == ndim
            and all(_is_int(x) and x >= 0 for x in v)
        ):
            return tuple(v)
        raise _fail(f"expected 'valid', 'same', an integer >= 0 or {shape}")

    item = {"type": "integer", "minimum": 0}
    schema = {
        "anyOf": [
            {"enum": ["valid", "same"]},
            item,
            {"type": "array", "items": item, "minItems": ndim, "maxItems": ndim},
        ]
    }
    return Annotated[Any, PlainValidator(validate), WithJsonSchema(schema)]


def _choice(options: Sequence[str], what: str):
    """Validator for one name out of `options`, suggesting the nearest on a typo."""

    def validate(v: Any) -> str:
        if isinstance(v, str) and v in options:
            return v
        near = suggest(v, options) if isinstance(v, str) else None
        raise _fail(
            f"expected {what}: one of {', '.join(options)}",
            f"did you mean '{near}'?" if near else None,
        )

    return Annotated[str, PlainValidator(validate), WithJsonSchema({"enum": list(options)})]


Ints1 = _ints(1, 1, "a positive size")
Ints2 = _ints(2, 1, "a positive size")
Padding1 = _padding(1)
Padding2 = _padding(2)
ActivationName = _choice(ACTIVATIONS, "an activation")
# The `activation:` field of the weighted layers: `activation: Activation = "linear"`.
Activation = Annotated[ActivationName, Field(description=ACTIVATION_DOC)]


class ShapeError(Exception):
    """Raised by a shape rule; the compiler adds the layer's name and source location."""

    def __init__(
        self, message: str, hint: str | None = None, mismatch: tuple[int, int] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Indexes of two inputs that disagree: the compiler replaces {a} and {b} in the message
        # with their names and shapes.
        self.mismatch = mismatch


@dataclass(frozen=True)
class Params:
    """Parameter count of one layer, split as Keras does."""

    total: int = 0
    non_trainable: int = 0  # intrinsic, e.g. BatchNorm's running statistics


@dataclass(frozen=True)
class Weight:
    """One tensor a layer owns: its shape, and whether training updates it.

    The tensor's name (the key in `Layer.weights`) is the one every backend uses: the torch
    module's state_dict key after `<layer name>.`, the safetensors key, the ONNX initializer.
    """

    shape: Shape
    trainable: bool = True

    @property
    def size(self) -> int:
        return prod(self.shape)


class Layer(BaseModel):
    """A layer kind: its validated arguments, shape rule, parameter count and MACs, in one class.

    Subclasses set `kind` (the YAML key) and override `output_shape` where the shape changes, and
    `weights` (the tensors it owns; `params` is counted from them) and `macs` when the layer has
    weights. Everything here is pure integer arithmetic on per-sample shapes.
    """

    # defer_build: a kind's validator is built on first use, so startup does not pay for all kinds.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    kind: ClassVar[str]
    # (min, max) number of inputs; max None = unbounded.
    arity: ClassVar[tuple[int, int | None]] = (1, 1)
    # Fields that name other layers (resolved by the compiler, like `inputs`).
    ref_fields: ClassVar[tuple[str, ...]] = ()

    def output_shape(self, inputs: list[Shape], refs: dict[str, Shape]) -> Shape:
        return inputs[0]

    def weights(self, inputs: list[Shape], out: Shape) -> dict[str, Weight]:
        """The tensors this layer owns, by name: the one description both backends are checked
        against (tests/test_completeness.py)."""
        return {}

    def params(self, inputs: list[Shape], out: Shape) -> Params:
        """Counted from `weights`, so the summary and the backends cannot disagree."""
        ws = self.weights(inputs, out).values()
        return Params(
            total=sum(w.size for w in ws), non_trainable=sum(w.size for w in ws if not w.trainable)
        )

    def macs(self, inputs: list[Shape], out: Shape) -> int:
        return 0


T = TypeVar("T")


def table_entry(table: Mapping[type[Layer], T], cls: type[Layer]) -> T | None:
    """A backend table's entry for a layer class: its own row, else its nearest base class's.

    Both backends (LOWERINGS, EXPORTS) look a kind up through this one rule, so one row can
    serve a family (ActivationLayer) and a table never has to list each member.
    """
    for c in cls.__mro__:
        if c in table:
            return table[c]
    return None


LayerT = TypeVar("LayerT", bound=Layer)


def member(base: type[LayerT], name: str, kind: str, doc: str, **constants: object) -> type[LayerT]:
    """A family member that differs from its base only in class constants (`kind`, and e.g.
    `op`, `ndim`): declared in one line, where a class statement each would repeat the same six."""
    namespace = {"__module__": base.__module__, "__qualname__": name, "__doc__": doc}
    return type(name, (base,), {**namespace, "kind": kind, **constants})


def check_rank(layer: Layer, shape: Shape, ranks: tuple[int, ...]) -> None:
    """Raise a ShapeError explaining which input layout a layer needs."""
    if len(shape) in ranks:
        return
    layouts = {1: "[features]", 2: "[channels, length]", 3: "[channels, height, width]"}
    want = " or ".join(layouts.get(r, f"rank {r}") for r in ranks)
    raise ShapeError(
        f"{layer.kind} needs an input of shape {want}, got {tuple(shape)}",
        hint="add a reshape or flatten layer before it, or check the spec's input shape",
    )


Axis = Annotated[
    int,
    PlainValidator(
        lambda v: 0 if v == "channels" else v if _is_int(v) and v >= -4 else _raise_axis()
    ),
    WithJsonSchema({"anyOf": [{"const": "channels"}, {"type": "integer"}]}),
]


def _raise_axis() -> int:
    raise _fail("expected 'channels' or an integer axis (per sample, 0 = channels)")


def norm_axis(axis: int, rank: int, layer: str) -> int:
    if -rank <= axis < rank:
        return axis % rank
    raise ShapeError(f"{layer}: axis {axis} is out of range for a per-sample rank-{rank} input")


__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_DOC",
    "Activation",
    "ActivationName",
    "Axis",
    "Ints1",
    "Ints2",
    "Layer",
    "Padding1",
    "Padding2",
    "Params",
    "ShapeError",
    "Weight",
    "check_rank",
    "member",
    "norm_axis",
    "suggest",
    "table_entry",
]
