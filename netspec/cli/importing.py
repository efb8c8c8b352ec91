"""`netspec import`: a Keras (.keras, .h5) or ONNX model file as a spec and a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from netspec.cli.common import JsonOpt, app, fail
from netspec.errors import NetspecError, UsageError
from netspec.jsonio import dumps

SUFFIXES = (".keras", ".h5", ".hdf5", ".onnx")


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """`--input-shape 3,224,224` (netspec's order, channels first) as integers."""
    if text is None:
        return None
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise UsageError.one(
            f"--input-shape {text!r}: expected positive sizes separated by commas",
            hint="e.g. --input-shape 3,224,224 (channels first, no batch axis)",
        )
    return dims


def read_model(path: Path, input_shape: tuple[int, ...] | None) -> Any:
    """The importer for the file's suffix (each imported here, only when used)."""
    suffix = path.suffix.lower()
    if suffix in (".keras", ".h5", ".hdf5"):
        from netspec.backends.importing.keras_import import read_keras

        return read_keras(path, input_shape)
    if suffix == ".onnx":
        from netspec.backends.importing.onnx_import import read_onnx

        return read_onnx(path, input_shape)
    raise UsageError.one(
        f"netspec import reads {', '.join(SUFFIXES)} files, not '{suffix or path.name}'",
        str(path),
        hint="export the model from its framework as ONNX, or save a Keras model as .keras",
    )


@app.command("import")
def import_(
    source: Annotated[
        Path,
        typer.Argument(help="A Keras .keras/.h5 or an ONNX .onnx model file.", show_default=False),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "-o", "--out", help="The run directory to write (new or empty).", show_default=False
        ),
    ],
    input_shape: Annotated[
        str | None,
        typer.Option(
            "--input-shape",
            help="The input's sizes, channels first (C,H,W), where the file leaves them open.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a Keras or ONNX model as a readable spec and a run every command accepts."""
    try:
        from netspec.backends.importing.blocks import with_blocks
        from netspec.backends.importing.write import write_import

        imported = with_blocks(read_model(source, parse_input_shape(input_shape)))
        run = write_import(imported, out)
    except NetspecError as err:
        raise fail(err, as_json) from None
    from netspec.run_record import RunLayout

    layout = RunLayout(run)
    if as_json:
        typer.echo(
            dumps(
                {
                    "run": str(run),
                    "source": str(source),
                    "producer": imported.producer,
                    "input_layout": imported.input_layout,
                    "preprocessing": imported.preprocessing,
                    "notes": imported.notes,
                    "files": [
                        str(layout.directory / n)
                        for n in (layout.SPEC, layout.META, layout.WEIGHTS, layout.SUMMARY)
                    ],
                }
            )
        )
        return
    typer.echo(layout.summary.read_text(encoding="utf-8"), nl=False)
    for note in imported.notes:
        typer.echo(f"note: {note}")
    typer.echo(
        f"imported {source} ({imported.producer}) into {run}: {layout.SPEC}, {layout.WEIGHTS}"
    )
