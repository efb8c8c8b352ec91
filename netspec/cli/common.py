"""What every command shares: the Typer app, its conventions and user-error exits (text or --json)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from netspec.errors import NetspecError, Problem
from netspec.jsonio import dumps

USER_ERROR = 2  # the exit code of every user error: spec, data, model or usage


# click's UsageError (a bad option, a missing argument; exit 2), whether typer vendors click
# (0.26 and later, as typer._click) or depends on it: BadParameter is public either way.
_CLICK_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class NetspecGroup(TyperGroup):
    """The app's command group: usage errors (click's, exit 2) as JSON when --json is given."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["netspec.json"] = "--json" in args  # before parsing, which may fail
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _CLICK_USAGE_ERROR as exc:
            if not ctx.meta.get("netspec.json"):
                raise
            # click's own wording; the hint is how to see the options (its text form says so too).
            name = exc.ctx.command_path if exc.ctx is not None else "netspec"
            problem = Problem(exc.format_message(), hint=f"see `{name} --help`")
            typer.echo(dumps(error_json(NetspecError([problem], kind="usage"))))
            raise typer.Exit(code=USER_ERROR) from None


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"netspec {version('netspec')}")
        except PackageNotFoundError:  # a source tree that is not installed
            from netspec.version import __version__

            typer.echo(f"netspec {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="netspec",
    cls=NetspecGroup,
    help="Describe a neural network in YAML: validate it, summarize it, train it, export it.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, pwsh)
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print netspec's version and exit."
        ),
    ] = False,
) -> None:
    """Describe a neural network in YAML: validate it, summarize it, train it, export it."""


SpecArg = Annotated[Path, typer.Argument(help="A spec file (YAML).", show_default=False)]
SpecOrRunArg = Annotated[
    Path, typer.Argument(help="A spec file (YAML), or a run directory.", show_default=False)
]


def spec_of(path: Path) -> Path:
    """A spec argument: a run directory (trained or imported) stands for its spec.yaml."""
    if not path.is_dir():  # a spec file: the run modules are not imported (start-up time)
        return path
    from netspec.runs import RunLayout, is_run

    return RunLayout(path).spec if is_run(path) else path


SetOpt = Annotated[
    list[str],
    typer.Option(
        "--set",
        help="Override a spec value, validated like the file: --set train.epochs=3, "
        "--set layers.0.dense.units=8 (repeatable).",
        show_default=False,
    ),
]

JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help='Print one JSON document instead of text; errors too, as {"error": {...}}.',
    ),
]


def report(err: NetspecError) -> str:
    """Every problem, located, then the stage that refused the input (parse ... train, data)."""
    return err.format() + (f"\n({err.stage} stage)" if err.stage else "")


def error_json(err: NetspecError) -> dict[str, Any]:
    """{"error": {kind, stage, file, line, col, path, message, hint, problems}} (exit code 2).

    kind is spec, data, model or usage (NetspecError.kind); the other fields are the first
    problem's, and `problems` lists them all.
    """
    return {"error": err.to_dict()}


def fail(err: NetspecError, as_json: bool = False) -> typer.Exit:
    """Print a user error and return the exit to raise (code 2).

    Text goes to stderr: every problem, located, and the stage. With `as_json`, one JSON object
    (error_json) goes to stdout, where the command's JSON document would have gone.
    """
    if as_json:
        typer.echo(dumps(error_json(err)))
    else:
        typer.echo(report(err), err=True)
    return typer.Exit(code=USER_ERROR)
