"""Validate stage: check the top level and the train section, expand the layers (netspec.expand), collect every problem."""

# No `from __future__ import annotations`: pydantic creates these models ~20% faster from
# evaluated annotations than from strings (`netspec summary` start-up, docs/performance.md).

from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from netspec.errors import Problem, SpecError
from netspec.expand import At, Expander, Scope
from netspec.items import INPUT, MAX_LAYERS, META_KEYS, NAME_RE, BlockDef, Decl, layer_count
from netspec.layers import KINDS
from netspec.layers.base import suggest
from netspec.pydantic_errors import found, pydantic_problems
from netspec.source import Source
from netspec.train_spec import TrainSpec


class SpecHeader(BaseModel):
    """The top level of a spec file."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$", description="The network's name.")]
    input: Annotated[
        list[PositiveInt | None],
        Field(
            min_length=1,
            max_length=4,
            description="Shape of one sample, channels first. A sequence's time axis may be "
            "null (dynamic: any length): [null] for token ids, [null, F] for [time, features], "
            "[C, null] for conv1d's [channels, length].",
        ),
    ]
    layers: Annotated[list[Any], Field(min_length=1)] = Field(
        description="The network, one layer type per item: `- conv2d: {filters: 32, kernel: 3}`."
    )
    blocks: dict[str, BlockDef] = Field(
        default_factory=dict,
        description="Reusable lists of layers with `$parameters`, used like layer types.",
    )
    description: str | None = Field(None, description="Free text about the network.")
    train: Any = Field(None, description=TrainSpec.__doc__)


@dataclass(frozen=True)
class Validated:
    name: str
    input_shape: tuple[int | None, ...]  # None: the dynamic time axis of a sequence
    decls: tuple[Decl, ...]
    train: TrainSpec | None
    description: str | None
    file: str | None


def validate(source: Source) -> Validated:
    """Check a parsed spec; raises one SpecError listing every independent problem."""
    data = source.data
    if not isinstance(data, dict):
        raise SpecError(
            [
                source.problem(
                    (), f"a spec must be a mapping with name, input and layers, {found(data)}"
                )
            ],
            stage="validate",
        )
    header, problems = _header(source, data)
    problems += _block_name_problems(source, header.blocks) + _input_problems(source, header.input)
    too_many = _size_problem(source, header)
    if too_many is not None:
        # Refused before expanding: the expansion itself is what would take the time and memory.
        _refuse([*problems, too_many])
    ex = Expander(source, header.blocks)
    ex.expand(header.layers, ("layers",), At(Scope("", INPUT)), INPUT, None)
    problems += ex.problems + _unresolved_problems(source, ex)
    train = None
    if data.get("train") is not None:
        try:
            train = TrainSpec.model_validate(data["train"])
        except ValidationError as exc:
            problems += pydantic_problems(
                source, ("train",), exc, TrainSpec, "train", key_word="key", data=data["train"]
            )
    if problems:
        _refuse(problems)
    return Validated(
        header.name,
        tuple(header.input),
        tuple(ex.decls),
        train,
        header.description,
        source.file,
    )


def _refuse(problems: list[Problem]) -> NoReturn:
    problems.sort(key=lambda p: (p.line or 0, p.col or 0))
    raise SpecError(problems, stage="validate")


def _header(source: Source, data: dict[str, Any]) -> tuple[SpecHeader, list[Problem]]:
    """The top level and its problems; with problems, a stand-in header around the spec's own
    layers and blocks, so one run reports the layers' problems too (refused if unreadable)."""
    try:
        return SpecHeader.model_validate(data), []
    except ValidationError as exc:
        problems = pydantic_problems(
            source, (), exc, SpecHeader, "a spec", key_word="key", data=data
        )
    stand_in = {
        "name": "spec",
        "input": [1],
        "layers": data.get("layers"),
        "blocks": data.get("blocks", {}),
    }
    try:
        return SpecHeader.model_validate(stand_in), problems
    except ValidationError:
        raise SpecError(problems, stage="validate") from None


def _input_problems(source: Source, shape: list[int | None]) -> list[Problem]:
    """A null (dynamic) axis anywhere but a sequence's time axis, or more than one of them."""
    nulls = [i for i, n in enumerate(shape) if n is None]
    if not nulls:
        return []
    if len(shape) > 2:
        return [
            source.problem(
                ("input", nulls[0]),
                f"a dynamic (null) axis is allowed only in a sequence input, not in a rank-"
                f"{len(shape)} input {_shape_text(shape)}",
                "sequences are [null] (token ids), [null, features] or [channels, null] "
                "(conv1d); give images a fixed height and width",
            )
        ]
    if len(nulls) > 1:
        return [
            source.problem(
                ("input", nulls[1]),
                f"only one axis may be dynamic (null), got {_shape_text(shape)}",
                "the time axis is dynamic: [null, features] or [channels, null]",
            )
        ]
    return []


def _shape_text(shape: list[int | None]) -> str:
    return "[" + ", ".join("null" if n is None else str(n) for n in shape) + "]"


def _block_name_problems(source: Source, blocks: dict[str, BlockDef]) -> list[Problem]:
    """Blocks named like a layer type or a reserved key, or not a valid name."""
    return [
        source.problem(
            ("blocks", name),
            f"'{name}' cannot name a block",
            "it is a layer type or a reserved key; pick another name",
            key=True,
        )
        for name in blocks
        if name in KINDS or name in META_KEYS or name == "layers" or not NAME_RE.match(name)
    ]


def _size_problem(source: Source, header: SpecHeader) -> Problem | None:
    """The layers expanding past MAX_LAYERS, counted without expanding them."""
    size, exact = layer_count(header.layers, header.blocks)
    if size <= MAX_LAYERS:
        return None
    reach = f"{size:,} layers" if exact else "more layers than netspec counts"
    return source.problem(
        ("layers",),
        f"the layers expand to {reach} (repeats times block uses); the limit is {MAX_LAYERS:,}",
        "lower `repeat:`, or the number of times blocks use each other",
        key=True,
    )


def _unresolved_problems(source: Source, ex: Expander) -> list[Problem]:
    """References to no earlier layer: the layer itself, a later one, or no layer at all."""
    problems = []
    for ref, path, note, known in ex.unresolved:
        later = ex.taken.get(ref)
        if later is not None and later.path and path[: len(later.path)] == later.path:
            msg, hint = f"'{ref}' is this layer itself", "refer to an earlier layer"
        elif later is not None:
            msg, hint = (
                f"'{ref}' is defined later (line {later.line})",
                "inputs must refer to earlier layers",
            )
        else:
            earlier = list(ex.taken)[:known]  # suggest only names that can be referred to
            near = suggest(ref, [n for n in earlier if "/" not in n])
            msg = f"no layer named '{ref}'"
            hint = f"did you mean '{near}'?" if near else "name a layer with `name:` to refer to it"
        problems.append(source.problem(path, msg + note, hint))
    return problems
