"""netspec: describe a neural network in YAML; get it validated, shape-checked, trained and exported."""

from netspec.compiler import compile_file, compile_source, compile_text
from netspec.errors import DataError, NetspecError, Problem, SpecError
from netspec.ir import Graph, Node

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "Graph",
    "NetspecError",
    "Node",
    "Problem",
    "SpecError",
    "__version__",
    "compile_file",
    "compile_source",
    "compile_text",
]
