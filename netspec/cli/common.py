"""What every command shares: the Typer app, the spec and --set arguments, and user-error exits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netspec.errors import NetspecError

app = typer.Typer(
    name="netspec",
    help="Describe a neural network in YAML: validate it, summarize it, train it, export it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[Path, typer.Argument(help="A spec file (YAML).", show_default=False)]


def report(err: NetspecError) -> str:
    """Every problem, located, then the stage that refused the input (parse ... train, data)."""
    return err.format() + (f"\n({err.stage} stage)" if err.stage else "")


def fail(err: NetspecError) -> typer.Exit:
    """Print a user error (every problem, located) and return the exit to raise: code 2."""
    typer.echo(report(err), err=True)
    return typer.Exit(code=2)


SetOpt = Annotated[
    list[str],
    typer.Option(
        "--set",
        help="Override a spec value, validated like the file: --set train.epochs=3 (repeatable).",
        show_default=False,
    ),
]
