"""`netspec predict`: an exported model run with onnxruntime on files, folders and globs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from netspec.cli.common import USER_ERROR, JsonOpt, app, fail
from netspec.errors import NetspecError, Problem
from netspec.jsonio import dumps

InputsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Images (png, jpg, bmp, tiff), .npy arrays (one sample or a batch) or .csv rows "
        "(numbers, or rows in the training CSV's format); folders of them and glob patterns "
        "('scans/*.png'); for segmentation, scenes of any size: images, multi-band .tif, "
        ".npy (C, H, W); for a text model, .txt files (one text per line) and .csv files "
        "with the training file's text column.",
        show_default=False,
    ),
]

TextOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--text",
        help='A text for a text model (repeatable): --text "Bonjour" --text "Hello"; named '
        "text[0], text[1], ... in the results, after the input files.",
        show_default=False,
    ),
]

OverlapOpt = Annotated[
    int | None,
    typer.Option(
        "--overlap",
        help="Segmentation: pixels by which tiles overlap when a scene is predicted tile by "
        "tile (blended across the overlap); 0 or more, below the tile side. "
        "Default: a quarter of the tile side.",
        show_default=False,
    ),
]

TtaOpt = Annotated[
    bool,
    typer.Option(
        "--tta",
        help="Segmentation: test-time augmentation, averaging each tile's class "
        "probabilities over its 8 rotations and mirrors (4 for tiles that are not square).",
    ),
]

EnsembleOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--ensemble",
        help="Another exported model of the same task (repeatable): print the mean of the "
        "models' class probabilities (values for regression).",
        show_default=False,
    ),
]


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="An .onnx file.", show_default=False)],
    inputs: InputsArg = None,
    text: TextOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Classes shown per input.")] = 5,
    as_json: JsonOpt = False,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when onnxruntime-gpu can use it), cpu or cuda.")
    ] = "auto",
    batch: Annotated[int, typer.Option("--batch", help="Samples per call of the model.")] = 64,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="Folder for segmentation masks (default: here)."),
    ] = None,
    overlap: OverlapOpt = None,
    tta: TtaOpt = False,
    ensemble: EnsembleOpt = None,
) -> None:
    """Run an exported model with onnxruntime on inputs, preprocessed as the model records.

    An input that fails is reported in its place, the others still run; then the exit is 2.
    """
    # onnxruntime only: predict never imports torch (a test checks it).
    from netspec.backends.predict.outputs import text_lines
    from netspec.backends.predict.predict import PredictOptions
    from netspec.backends.predict.predict import predict as run_predict
    from netspec.backends.predict.texts import Text

    items: list[Path | Text] = [
        *(inputs or []),
        *(Text(t, f"text[{i}]") for i, t in enumerate(text or [])),
    ]

    options = PredictOptions(top_k=top_k, batch=batch, out=out, overlap=overlap, tta=tta)
    results = []
    failed = shown = 0
    try:
        for result in run_predict(
            model,
            items,
            options,
            device=device,
            note=lambda text: typer.echo(f"note: {text}", err=True),
            ensemble=ensemble or (),
        ):
            failed += "error" in result
            if as_json:
                results.append(result)
            elif "error" in result:
                problems = [Problem(**p) for p in result["error"]["problems"]]
                typer.echo(NetspecError(problems).format(), err=True)
            else:
                typer.echo(("\n" if shown else "") + "\n".join(text_lines(result)))
                shown += 1
    except NetspecError as err:
        raise fail(err, as_json) from None
    if as_json:
        typer.echo(dumps(results))
    if failed:
        if not as_json:
            typer.echo(f"{failed} of {failed + shown} inputs failed", err=True)
        raise typer.Exit(code=USER_ERROR)
