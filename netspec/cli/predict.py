"""`netspec predict`: an exported model run with onnxruntime on files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from netspec.cli.common import app, fail
from netspec.errors import NetspecError


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="An .onnx file.", show_default=False)],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Images (png, jpg, bmp, tiff), .npy arrays (one sample or a batch) or .csv rows; "
            "for segmentation, scenes of any size: images, multi-band .tif, .npy (C, H, W).",
            show_default=False,
        ),
    ],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes shown per input.")] = 5,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document instead of text.")
    ] = False,
    provider: Annotated[
        str, typer.Option(help="auto (CUDA when onnxruntime-gpu can use it), cpu or cuda.")
    ] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per run.")] = 64,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", help="Where segmentation masks go (default: here)."),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(
            "--overlap",
            help="Segmentation: pixels by which tiles overlap when a scene is predicted tile by "
            "tile (blended across the overlap); 0 or more, below the tile side. "
            "Default: a quarter of the tile side.",
            show_default=False,
        ),
    ] = None,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="Segmentation: test-time augmentation, averaging each tile's class "
            "probabilities over its 8 rotations and mirrors (4 for tiles that are not square).",
        ),
    ] = False,
    ensemble: Annotated[
        list[Path] | None,
        typer.Option(
            "--ensemble",
            help="Another exported model of the same task (repeatable): print the mean of the "
            "models' class probabilities (values for regression).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run an exported model with onnxruntime on inputs, preprocessed as the model records."""
    # onnxruntime only: predict never imports torch (a test checks it).
    from netspec.backends.predict.outputs import text_lines
    from netspec.backends.predict.predict import predict as run_predict

    results = []
    try:
        for i, result in enumerate(
            run_predict(
                model,
                inputs,
                top_k=top_k,
                provider=provider,
                batch_size=batch_size,
                out_dir=out_dir,
                overlap=overlap,
                tta=tta,
                ensemble=ensemble or (),
            )
        ):
            if as_json:
                results.append(result)
            else:
                typer.echo(("\n" if i else "") + "\n".join(text_lines(result)))
    except NetspecError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(results, indent=2))
