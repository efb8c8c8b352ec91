"""The lowest opset each emitted ONNX op needs, and the export's opset: the graph's need or the user's."""

from __future__ import annotations

from collections.abc import Iterable

from .emitter import ExportError

# netspec writes every op in its opset-13 form (Softmax on one axis, Clip/Pad/Slice/Resize bounds
# as inputs, per-axis QuantizeLinear), so 13 is the floor; a few ops only exist later.
BASELINE_OPSET = 13
NEWER_OPS: dict[str, int] = {
    "LayerNormalization": 17,
    "Gelu": 20,  # emitted only when asked for opset >= 20; below, GELU is written with Erf
    "HardSwish": 14,  # emitted only when asked for opset >= 14; below, x * HardSigmoid(x)
}


def needed_opset(op_types: Iterable[str]) -> tuple[int, str | None]:
    """The lowest opset that has every op, and the op that forces it (None: the baseline)."""
    best, why = BASELINE_OPSET, None
    for op in op_types:
        if NEWER_OPS.get(op, 0) > best:
            best, why = NEWER_OPS[op], op
    return best, why


def parse_opset(text: str | int | None) -> int | None:
    """`auto` (or None) -> None: the lowest the graph needs; else an opset number."""
    if text is None or text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise ExportError(f"--opset {text}: expected 'auto' or an opset number") from None


def choose_opset(asked: int | None, op_types: Iterable[str], newest: int) -> int:
    """The opset to declare: `asked` when it has every op, else the graph's lowest (asked None)."""
    need, why = needed_opset(op_types)
    if asked is None:
        return need
    if not BASELINE_OPSET <= asked <= newest:
        raise ExportError(
            f"opset {asked} is not supported: use {BASELINE_OPSET} to {newest} "
            f"(netspec writes opset-{BASELINE_OPSET} ops; this onnx package knows up to {newest})"
        )
    if asked < need:
        raise ExportError(
            f"opset {asked} is too old for this network: {why} needs opset {need} "
            f"(use --opset {need} or higher, or --opset auto)"
        )
    return asked
