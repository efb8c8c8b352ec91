"""The `netspec` command line: thin Typer commands over the library, one module per group."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from netspec.gcpause import collect_less

# The module that defines each command. A module registers its commands when imported; this
# order is the order `--help` lists them.
COMMANDS = {
    "summary": "spec",
    "validate": "spec",
    "schema": "spec",
    "train": "train",
    "evaluate": "train",
    "tune": "train",
    "export": "export",
    "inspect": "export",
    "bench": "export",
    "predict": "predict",
    "import": "importing",
    "graph": "visual",
    "visualize": "visual",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))
# The commands that decode images and TIFF scenes (a spec's data, predict's inputs).
READS_DATA = frozenset({"train", "evaluate", "tune", "export", "bench", "predict", "visualize"})

__all__ = ["COMMANDS", "app", "main", "register"]


def register(command: str | None = None) -> Any:
    """The Typer app with the module of `command` registered, or every module (None).

    Typer turns the signature of every registered command into click options at each call, so
    `netspec predict ...` registering predict alone starts ~10 ms sooner (of ~160 ms).
    """
    from netspec.cli.common import app

    modules = [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES
    for name in modules:
        importlib.import_module(f"netspec.cli.{name}")
    return app


def quiet_decoders() -> None:
    """Pillow's warnings and tifffile's log lines about the damaged parts of a file, kept off
    the terminal: neither names the file (Pillow's name its own source line), and netspec
    reports a file it cannot read in its one located error. Only the commands that read data
    set them (importing logging costs `netspec summary` ~10 ms of its start)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    logging.getLogger("tifffile").setLevel(logging.CRITICAL + 1)


def __getattr__(name: str) -> Any:
    if name == "app":  # `from netspec.cli import app`: every command (tests, documentation)
        return register()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point."""
    args = sys.argv[1:]
    collect_less()  # this process's imports stay until it ends (gcpause.collect_less)
    # netspec uses no pydantic plugin, and looking for them (an entry-point scan of every
    # installed distribution, at the first validation) took 10-30 ms of `netspec summary`'s
    # start (docs/performance.md). A value the user set is kept.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    # A command's name first needs its module only; --help, --version and shell completion
    # (the *_COMPLETE variable) list or search every command.
    completing = any(k.endswith("_COMPLETE") for k in os.environ)
    command = args[0] if args and not completing else None
    if command in READS_DATA:
        quiet_decoders()
    try:
        register(command)()
    except KeyboardInterrupt:
        sys.exit(130)
