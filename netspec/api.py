"""The Python API for specs: load_spec (path, YAML text or dict) -> Network (summary, to_torch, export_onnx, train)."""

from __future__ import annotations

import json
import numbers
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netspec.errors import SpecError

# Nothing heavy at the top: `import netspec; netspec.load_spec` loads the compiler (pydantic),
# never torch; torch comes with to_torch() and train().
if TYPE_CHECKING:
    import torch

    from netspec.ir import Graph
    from netspec.run_api import Run
    from netspec.runs import TrainOptions
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
            raise SpecError.one(
                f"{key}={value!r}: a spec value is a number, string, bool, None, "
                "or a list or dict of them",
                stage="parse",
            ) from None
        lines.append(f"{prefix}{key.replace('__', '.')}={text}")
    return lines


TEXT, DICT = "<yaml text>", "<dict>"  # where errors say a spec given as a str or a dict came from


def load_spec(spec: str | Path | Mapping[str, Any], /, **sets: Any) -> Network:
    """Compile a spec: a file path, YAML text, or a dict (as `yaml.safe_load` gives).

    A `Path` is always a file; a `str` is a file when one exists at that path, else YAML text
    (its errors are located in `<yaml text>`, a dict's in `<dict>`). Keyword arguments override
    spec values as `--set` does, validated like the file: `load_spec("net.yaml", train__epochs=3)`
    or `load_spec("net.yaml", **{"train.epochs": 3})` (`__` stands for a dot). Raises
    NetspecError (SpecError) naming file:line:col on any problem.
    """
    from netspec.compiler import compile_source
    from netspec.source import apply_overrides, read

    if isinstance(spec, Mapping):
        source, label = _from_text(dict_yaml(spec), DICT), DICT
    elif isinstance(spec, str) and not _is_file(spec):
        source, label = _from_text(spec, TEXT), TEXT
    elif isinstance(spec, (str, Path)):
        source, label = read(spec), None
    else:
        raise SpecError.one(
            f"load_spec takes a path, YAML text or a dict, not {type(spec).__name__}",
            stage="parse",
        )
    try:
        if sets:
            source = apply_overrides(source, set_lines(sets))
        return Network(compile_source(source), source)
    except SpecError as exc:
        raise exc.located(label) from None


def _is_file(text: str) -> bool:
    try:
        return "\n" not in text and Path(text).is_file()
    except (OSError, ValueError):  # a name too long or with a NUL byte: no file
        return False


def _from_text(text: str, label: str) -> Source:
    """Parse YAML text given in Python; a one-line text that is no mapping was meant as a path."""
    from netspec.source import parse

    try:
        source = parse(text)
    except SpecError as exc:
        raise exc.located(label) from None
    if not isinstance(source.data, dict) and label == TEXT and "\n" not in text.strip():
        raise SpecError.one(
            "no such file, and not a spec as YAML text either",
            text,
            hint="a str is read as a file when one exists at that path, else as YAML text "
            "(`name: ...`, `input: ...`, `layers: ...`); pass a Path to mean a file",
            stage="parse",
        )
    return source


def dict_yaml(spec: Mapping[str, Any]) -> str:
    """A spec given as a dict, as YAML text (block style, the keys in their order), so that it
    goes through the same parser as a file; tuples count as lists, Paths as strings."""
    import yaml

    def plain(value: Any, where: str) -> Any:
        if isinstance(value, Mapping):
            return {str(k): plain(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, Path):
            return str(value)
        if value is None or isinstance(value, (str, bool)):
            return value
        if isinstance(value, numbers.Integral):  # numpy integers too
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)
        raise SpecError.one(
            f"{where}: {value!r}: a spec value is a number, string, bool, None, "
            "or a list or dict of them",
            DICT,
            stage="parse",
        )

    return yaml.safe_dump(plain(spec, ""), sort_keys=False, allow_unicode=True)


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
        """The spec's `name`."""
        return self.graph.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape, without the batch axis."""
        return tuple(self.graph.input_shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The last layer's output shape, without the batch axis."""
        return tuple(self.graph.output.shape)

    @property
    def params(self) -> int:
        """Parameters in all (trainable or not)."""
        return sum(n.params for n in self.graph.nodes)

    def summary(self, length: int | None = None) -> Summary:
        """The summary table (`print(net.summary())`), with its rows and totals as data.

        `length`: of a network with a dynamic time axis (`input: [null, F]`), the length its
        MACs and memory are counted at (`netspec summary --length`); default 100."""
        if length is None:
            return Summary(self.graph)
        from netspec.spec_report import measured

        return Summary(measured(self.graph, length))

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def __repr__(self) -> str:
        return f"<Network {self.name!r}: input {self.input_shape}, output {self.output_shape}>"

    def to_torch(self, *, logits: bool = False) -> torch.nn.Module:
        """A plain torch.nn.Module of the network, freshly initialized, in training mode.

        It takes a batch (N, *input_shape) and returns (N, *output_shape). `logits=True` stops
        before the output's softmax or sigmoid, for a loop of your own: torch's
        `CrossEntropyLoss` (softmax) and `BCEWithLogitsLoss` (sigmoid) apply it themselves.
        The weights are the same either way (`export_onnx` exports the spec, head included).
        """
        from netspec.backends.lowering import build_module

        return build_module(self.graph, logits=logits)

    def export_onnx(
        self,
        module: torch.nn.Module,
        path: str | Path,
        *,
        opset: int | None = None,
        batch_dim: int | None = None,
        fp16: bool = False,
        check: bool = True,
    ) -> Path:
        """Export a module of this network trained in a loop of your own (`to_torch()`, with or
        without `logits`) to ONNX at `path`, with its JSON sidecar, checked against PyTorch on
        random inputs as `netspec export` does (no data or preprocessing is recorded: the
        model takes model inputs). `opset`, `batch_dim`, `fp16`: as `Run.export_onnx`."""
        from netspec.backends.export.run import ExportOptions, export_module

        options = ExportOptions(opset=opset, batch=batch_dim, fp16=fp16, check=check)
        return export_module(self.graph, module, Path(path), options).path

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
        from netspec.runs import TrainOptions

        run_dir, _ = train_spec(
            self.source,
            set_lines(sets, "train."),
            None if out is None else Path(out),
            TrainOptions(device, resume, progress, force),
            echo or _stderr,
        )
        from netspec.run_api import Run

        return Run(run_dir)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def train_spec(
    spec: Path | Source,
    sets: Sequence[str],
    out: Path | None,
    options: TrainOptions,
    echo: Echo,
) -> tuple[Path, dict[str, Any] | None]:
    """Train a spec (file or parsed) with `--set` lines: the run directory and the result
    (None on a data-parallel rank that does not write). `netspec train` and Network.train."""
    from netspec.runs import prepare_run

    run = prepare_run(spec, sets, out, options.resume)
    # Imported after the spec checks, so a spec error is reported without loading torch.
    from netspec.backends.training.run import train_run

    return run.run_dir, train_run(run, options, echo)
