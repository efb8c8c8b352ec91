"""Error types: every user-facing failure carries where it happened and how to fix it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

# The JSON form's key order (--json, predict's per-input errors): where, then what.
_PROBLEM_KEYS = ("file", "line", "col", "path", "message", "hint")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input, located as precisely as we can."""

    message: str
    file: str | None = None
    line: int | None = None  # 1-based
    col: int | None = None  # 1-based
    path: str | None = None  # path inside the spec, e.g. "layers[3].conv2d.kernel"
    hint: str | None = None

    def format(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line, self.col) if p is not None)
        head = f"{where}: " if where else ""
        at = f"{self.path}: " if self.path else ""
        text = f"{head}error: {at}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Every field, where first (file, line, col, path in the spec), then message and hint;
        None where unknown."""
        return {name: getattr(self, name) for name in _PROBLEM_KEYS}


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (at most 200 characters), or its type's name."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def few(items: Sequence[str], limit: int = 5) -> str:
    """Up to `limit` items for a message, then how many there are in all."""
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


# What `--json` errors call the kind of a failure, by the stage that refused the input.
STAGE_KINDS = {
    **dict.fromkeys(("parse", "validate", "ir", "shapes", "params", "train", "search"), "spec"),
    "data": "data",
    "usage": "usage",
}


E = TypeVar("E", bound="NetspecError")


class NetspecError(Exception):
    """Base class for errors caused by user input (exit code 2, no traceback).

    `stage` names the step that refused the input (parse, validate, ir, shapes, train, data);
    the CLI prints it after the problems. `kind` (spec, data, model or usage) is what `--json`
    reports: given, else the stage's (STAGE_KINDS), else the class's `default_kind`.
    """

    default_kind = "model"

    def __init__(
        self,
        problems: list[Problem] | str,
        *,
        stage: str | None = None,
        kind: str | None = None,
    ) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems = list(problems)
        self.stage = stage
        self._kind = kind
        super().__init__(self.format())

    @classmethod
    def one(
        cls: type[E],
        message: str,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        path: str | None = None,
        hint: str | None = None,
        *,
        stage: str | None = None,
        kind: str | None = None,
    ) -> E:
        """The error of one problem: `SpecError.one(message, file, path=..., hint=...)`."""
        return cls([Problem(message, file, line, col, path, hint)], stage=stage, kind=kind)

    @property
    def kind(self) -> str:
        return self._kind or STAGE_KINDS.get(self.stage or "", self.default_kind)

    def format(self) -> str:
        return "\n".join(p.format() for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        """What `--json` prints: {kind, stage, <the first problem's fields>, problems: [all]}."""
        problems = [p.to_dict() for p in self.problems] or [Problem(str(self)).to_dict()]
        return {"kind": self.kind, "stage": self.stage, **problems[0], "problems": problems}

    def located(self, file: str | None) -> NetspecError:
        """The same error with `file` filled in where a problem has none."""
        if file is None:
            return self
        problems = [p if p.file else replace(p, file=file) for p in self.problems]
        return type(self)(problems, stage=self.stage, kind=self._kind)


class SpecError(NetspecError):
    """The spec file is malformed, invalid, or describes impossible shapes."""

    default_kind = "spec"


class DataError(NetspecError):
    """A data file is missing, corrupt, or does not match what the spec expects."""

    default_kind = "data"


class UsageError(NetspecError):
    """A command-line option has a value the command cannot use."""

    default_kind = "usage"


class Interrupted(NetspecError):
    """Ctrl-C during training: the last completed epoch is saved and resumable (exit code 130)."""
