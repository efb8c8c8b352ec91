"""netspec: describe a neural network in YAML; get it validated, shape-checked, trained and exported."""

from __future__ import annotations

from typing import TYPE_CHECKING

from netspec.lazy import lazy_attributes

if TYPE_CHECKING:
    from netspec.api import Network, Summary, load_spec
    from netspec.compiler import compile_file, compile_source, compile_text
    from netspec.errors import DataError, NetspecError, Problem, SpecError
    from netspec.ir import Graph, Node
    from netspec.predictor import Predictor
    from netspec.run_api import Run, load_run

from netspec.version import __version__

# Each public name and the module it lives in. Imported on first use (PEP 562), so that commands
# needing neither the compiler nor pydantic (`netspec predict`, `netspec inspect`) start fast,
# and `netspec.load_spec` never loads torch (a test checks both).
_LAZY = {
    "load_spec": "netspec.api",
    "load_run": "netspec.run_api",
    "Network": "netspec.api",
    "Predictor": "netspec.predictor",
    "Run": "netspec.run_api",
    "Summary": "netspec.api",
    "compile_file": "netspec.compiler",
    "compile_source": "netspec.compiler",
    "compile_text": "netspec.compiler",
    "DataError": "netspec.errors",
    "NetspecError": "netspec.errors",
    "Problem": "netspec.errors",
    "SpecError": "netspec.errors",
    "Graph": "netspec.ir",
    "Node": "netspec.ir",
}

__all__ = [
    "DataError",
    "Graph",
    "NetspecError",
    "Network",
    "Node",
    "Predictor",
    "Problem",
    "Run",
    "SpecError",
    "Summary",
    "__version__",
    "compile_file",
    "compile_source",
    "compile_text",
    "load_run",
    "load_spec",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
