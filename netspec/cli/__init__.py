"""The `netspec` command line: thin Typer commands over the library, one module per group."""

from __future__ import annotations

import importlib
import sys

from netspec.cli.common import app

# Each module registers its commands when imported; this order is the order `--help` lists them.
COMMAND_MODULES = ("spec", "train", "export", "predict", "visual")
for _name in COMMAND_MODULES:
    importlib.import_module(f"netspec.cli.{_name}")

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
