"""The Python API: load_spec -> Network (summary, to_torch, train), load_run -> Run, Predictor."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netspec.errors import DataError, Problem, SpecError

# Nothing heavy at the top: `import netspec; netspec.load_spec` loads the compiler (pydantic),
# never torch; torch comes with to_torch(), train(), Run.module; onnxruntime with Predictor.
if TYPE_CHECKING:
    import numpy as np
    import torch

    from netspec.ir import Graph
    from netspec.source import Source
    from netspec.summary import Row, Totals

Echo = Callable[[str], None]


def set_lines(sets: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Keyword overrides as `--set` lines: `train__epochs=3` and `{"train.epochs": 3}` are both
    `train.epochs=3` (`__` stands for a dot); values go as JSON, which YAML reads as written."""
    lines = []
    for key, value in sets.items():
        if isinstance(value, Path):
            value = str(value)
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise SpecError(
                [
                    Problem(
                        f"{key}={value!r}: a spec value is a number, string, bool, None, "
                        "or a list or dict of them",
                    )
                ],
                stage="parse",
            ) from None
        lines.append(f"{prefix}{key.replace('__', '.')}={text}")
    return lines


def load_spec(spec: str | Path, /, **sets: Any) -> Network:
    """Compile a spec: a file path, or YAML text (a str holding a newline).

    Keyword arguments override spec values as `--set` does, validated like the file:
    `load_spec("net.yaml", train__epochs=3)` or `load_spec("net.yaml", **{"train.epochs": 3})`
    (`__` stands for a dot). Raises NetspecError (SpecError) naming file:line:col on any problem.
    """
    from netspec.compiler import compile_source
    from netspec.source import apply_overrides, parse, read

    source = parse(spec) if isinstance(spec, str) and "\n" in spec else read(spec)
    if sets:
        source = apply_overrides(source, set_lines(sets))
    return Network(compile_source(source), source)


class Summary:
    """A network's summary: `rows` and `totals` as data; prints as the CLI's table.

    `str()` is the text table, rich renders a rich table (`rich.print(net.summary())`), and
    Jupyter shows an HTML table.
    """

    def __init__(self, graph: Graph) -> None:
        from netspec.summary import rows, totals

        self.graph = graph
        self.rows: tuple[Row, ...] = rows(graph)
        self.totals: Totals = totals(self.rows)

    def to_dict(self) -> dict[str, Any]:
        """The same object `netspec summary --json` prints."""
        from netspec.summary import to_dict

        return to_dict(self.graph)

    def __str__(self) -> str:
        from netspec.summary import render

        return render(self.graph)

    __repr__ = __str__

    def __rich__(self) -> Any:
        from netspec.summary import rich_table

        return rich_table(self.graph)

    def _repr_html_(self) -> str:
        from netspec.summary import render_html

        return render_html(self.graph)


class Network:
    """A compiled spec: `graph` (the IR: every layer's shape, parameters and MACs), its summary,
    a torch module of it, and training."""

    def __init__(self, graph: Graph, source: Source) -> None:
        self.graph = graph
        self.source = source  # the parsed spec, overrides applied: train() starts from it

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape, without the batch axis."""
        return tuple(self.graph.input_shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.graph.output.shape)

    @property
    def params(self) -> int:
        """Parameters in all (trainable or not)."""
        return sum(n.params for n in self.graph.nodes)

    def summary(self) -> Summary:
        """The summary table (`print(net.summary())`), with its rows and totals as data."""
        return Summary(self.graph)

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def __repr__(self) -> str:
        return f"<Network {self.name!r}: input {self.input_shape}, output {self.output_shape}>"

    def to_torch(self) -> torch.nn.Module:
        """A plain torch.nn.Module of the network, freshly initialized, in training mode.

        It takes a batch (N, *input_shape) and returns (N, *output_shape).
        """
        from netspec.backends.lowering import build_module

        return build_module(self.graph)

    def train(
        self,
        out: str | Path | None = None,
        *,
        resume: bool = False,
        device: str = "auto",
        progress: bool | None = False,
        force: bool = False,
        echo: Echo | None = None,
        **sets: Any,
    ) -> Run:
        """Train on the data of the spec's `train:` section, into the run directory `out`
        (default: runs/<name>/<timestamp>); returns the Run.

        Keyword arguments set values inside `train:`: `net.train(epochs=3, optimizer__lr=0.01)`
        is `--set train.epochs=3 --set train.optimizer.lr=0.01`. Lines the run tells (epochs,
        test scores) go to `echo`, default stderr; pass `echo=lambda line: None` for silence.
        """
        run_dir, _ = train_spec(
            self.source,
            set_lines(sets, "train."),
            out=None if out is None else Path(out),
            resume=resume,
            device=device,
            progress=progress,
            force=force,
            echo=echo or _stderr,
        )
        return Run(run_dir)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def train_spec(
    spec: Path | Source,
    sets: Sequence[str],
    *,
    out: Path | None,
    resume: bool,
    device: str,
    progress: bool | None,
    force: bool,
    echo: Echo,
) -> tuple[Path, dict[str, Any] | None]:
    """Train a spec (file or parsed) with `--set` lines: the run directory and the result
    (None on a data-parallel rank that does not write). `netspec train` and Network.train."""
    from netspec.runs import prepare_run

    graph, run_dir, spec_text, summary_text = prepare_run(spec, sets, out, resume)
    # Imported after the spec checks, so a spec error is reported without loading torch.
    from netspec.backends.training.run import train_run

    result = train_run(
        graph,
        run_dir,
        device=device,
        resume=resume,
        spec_text=spec_text,
        summary_text=summary_text,
        progress=progress,
        force=force,
        echo=echo,
    )
    return run_dir, result


def load_run(path: str | Path) -> Run:
    """A run directory made by `netspec train` (or its weights file): metrics, history, module."""
    return Run(path)


class Run:
    """A trained run: its metrics and history, its torch module, export and evaluation.

    Reads lazily: nothing but the directory is checked until an attribute is used.
    """

    def __init__(self, path: str | Path) -> None:
        from netspec.runs import find_run

        self.dir, self.weights_path, self.notes = find_run(Path(path))
        self._source = Path(path)

    def __repr__(self) -> str:
        return f"<Run {str(self.dir)!r}>"

    @cached_property
    def graph(self) -> Graph:
        """The network the run trained, compiled from its recorded spec.yaml."""
        from netspec.compiler import compile_source
        from netspec.runs import run_source

        return compile_source(run_source(self.dir))

    @cached_property
    def meta(self) -> dict[str, Any]:
        """model.json: task, classes, head, preprocessing, shapes ({} if absent)."""
        from netspec.runs import META_FILE

        return _json(self.dir / META_FILE) or {}

    @property
    def metrics(self) -> dict[str, Any]:
        """metrics.json without its history: epochs, best epoch's row, test scores, stopped.

        {} for a run whose training did not finish (its history is in metrics.csv).
        """
        data = _json(self.dir / "metrics.json") or {}
        return {k: v for k, v in data.items() if k != "history"}

    @property
    def history(self) -> list[dict[str, float | int | None]]:
        """One dict per finished epoch (epoch, loss, metrics, val_*, lr, time_s), from metrics.csv."""
        return read_history(self.dir / "metrics.csv")

    def history_frame(self) -> Any:
        """The history as a pandas DataFrame indexed by epoch (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("history_frame() needs pandas: pip install pandas") from None
        return pd.DataFrame(self.history).set_index("epoch")

    @cached_property
    def module(self) -> torch.nn.Module:
        """The trained network as a torch module, in eval mode (built on first use)."""
        from netspec.backends.weights import load_module
        from netspec.runs import load_run as load

        run = load(self._source)
        self.__dict__.setdefault("graph", run.graph)
        return load_module(run.graph, run.weights)

    def export_onnx(
        self,
        path: str | Path | None = None,
        *,
        opset: int = 17,
        batch: int | None = None,
        fp16: bool = False,
        check: bool = True,
    ) -> Path:
        """Export to ONNX (default <run>/model.onnx), checked against PyTorch as `netspec export
        --onnx` does; `batch` None is a dynamic batch size. Returns the file's path."""
        from netspec.backends.export.run import export_run

        report = export_run(
            self._source, None if path is None else Path(path), opset=opset, batch=batch,
            fp16=fp16, check=check,
        )  # fmt: skip
        return report.path

    def evaluate(
        self, data: str | Path | None = None, *, device: str = "auto", echo: Echo | None = None
    ) -> dict[str, Any]:
        """Scores of the final weights on the run's test split, or on all of `data` (same kind
        of data as the run's): the dict `netspec evaluate` prints."""
        from netspec.backends.training.evaluate import evaluate_run

        return evaluate_run(
            self.dir, data=None if data is None else Path(data), device=device, log=echo
        )


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError([Problem(f"cannot read: {exc}", str(path))]) from None


def read_history(path: Path) -> list[dict[str, float | int | None]]:
    """metrics.csv as rows of numbers: `epoch` an int, an empty cell None (a value some epochs
    lack), NaN as written."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [
            {k: _number(k, v) for k, v in row.items() if k is not None} for row in csv.DictReader(f)
        ]


def _number(key: str, cell: str | None) -> float | int | None:
    if cell is None or cell == "":
        return None
    value = float(cell)
    return int(value) if key == "epoch" and math.isfinite(value) else value


class Predictor:
    """An exported model (.onnx) with onnxruntime and the preprocessing recorded in it.

    Needs neither torch nor the spec: only the .onnx file.
    """

    def __init__(self, model: str | Path, *, provider: str = "auto", top_k: int = 5) -> None:
        from netspec.backends.predict.model import Predictor as Session

        self.path = Path(model)
        self.session = Session(self.path, provider)
        self.top_k = top_k

    def __repr__(self) -> str:
        return f"<Predictor {str(self.path)!r}>"

    @property
    def classes(self) -> tuple[str, ...] | None:
        """The class labels the model was trained with (None for regression)."""
        return self.session.info.classes

    def predict(
        self,
        inputs: str | Path | np.ndarray | Iterable[str | Path | np.ndarray],
        *,
        batch_size: int = 64,
        out_dir: str | Path | None = None,
        overlap: int | None = None,
        tta: bool = False,
    ) -> list[dict[str, Any]]:
        """Results for every sample, as `netspec predict --json` prints them.

        An input is a file (image, .npy, .csv) or a numpy array of raw values (as in the files:
        the model's preprocessing is applied), one sample or a batch with a leading N; an array
        is named `inputs[k]` in the results (`inputs[k][i]` for a batch's samples).
        Classification: {input, predictions: [{label, score}]}; regression: {input, values};
        segmentation: {input, mask, ...} with the mask written into `out_dir`.
        """
        import numpy as np

        from netspec.backends.predict.predict import predict

        items = [inputs] if isinstance(inputs, (str, Path, np.ndarray)) else list(inputs)
        return list(
            predict(
                self.session,
                items,
                top_k=self.top_k,
                batch_size=batch_size,
                out_dir=out_dir,
                overlap=overlap,
                tta=tta,
            )
        )
