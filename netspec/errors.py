"""Error types: every user-facing failure carries where it happened and how to fix it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace


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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (at most 200 characters), or its type's name."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def few(items: Sequence[str], limit: int = 5) -> str:
    """Up to `limit` items for a message, then how many there are in all."""
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


class NetspecError(Exception):
    """Base class for errors caused by user input (exit code 2, no traceback).

    `stage` names the step that refused the input (parse, validate, ir, shapes, train, data);
    the CLI prints it after the problems.
    """

    def __init__(self, problems: list[Problem] | str, *, stage: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems = list(problems)
        self.stage = stage
        super().__init__(self.format())

    def format(self) -> str:
        return "\n".join(p.format() for p in self.problems)

    def located(self, file: str | None) -> NetspecError:
        """The same error with `file` filled in where a problem has none."""
        if file is None:
            return self
        problems = [p if p.file else replace(p, file=file) for p in self.problems]
        return type(self)(problems, stage=self.stage)


class SpecError(NetspecError):
    """The spec file is malformed, invalid, or describes impossible shapes."""


class DataError(NetspecError):
    """A data file is missing, corrupt, or does not match what the spec expects."""


class Interrupted(NetspecError):
    """Ctrl-C during training: the last completed epoch is saved and resumable (exit code 130)."""
