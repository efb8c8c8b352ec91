"""The network as one torch module: NetModule (children by layer name), build_module, count_tensors."""

# state_dict keys are `<layer name>.weight`, `<layer name>.running_mean`, ... so weights move
# between networks (and to ONNX/safetensors) by layer name.

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from netspec.ir import Graph
from netspec.items import INPUT
from netspec.shapes import batch_axis

from .activations import FusedActivation
from .layers import lower_node
from .sequence import masked_programs

Head = Literal["softmax", "sigmoid"]


def _identity(x: Tensor) -> Tensor:
    return x


# Where nn.Module keeps hooks: per module, and (module-level dicts in torch) for every module.
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOK_DICTS = tuple(f"_global{name}" for name in _HOOK_DICTS)
_torch_module = torch.nn.modules.module


def _global_hooks() -> bool:
    """Whether any global module hook is registered (True if this torch keeps them elsewhere)."""
    for name in _GLOBAL_HOOK_DICTS:
        hooks = getattr(_torch_module, name, None)
        if hooks is None or hooks:
            return True
    return False


# (callable, input slots, output slot, slots to drop after this step); slot 0 is the input.
Step = tuple[Callable[..., Tensor], tuple[int, ...], int, tuple[int, ...]]


class NetModule(nn.Module):
    """A netspec graph as a torch module.

    Every IR node is a child module registered under its layer name, so `state_dict()` keys are
    `<layer name>.weight` etc.; `layers` is a (non-registered) ModuleDict view of the same
    children. A name torch cannot use as a module name (one with '.', or one that is an attribute
    of the module such as 'train') gets a key with '.' -> '_' and a trailing '_';
    `module_keys` maps every layer name to its key.
    """

    graph: Graph
    head: Head | None
    head_dim: int | None
    module_keys: dict[str, str]

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        # The output's softmax/sigmoid (graph.head) that forward_logits skips; a softmax's torch dim.
        act = graph.head
        self.head = None if act is None else act.fn  # type: ignore[assignment]
        rank = len(graph.output.shape)
        self.head_dim = batch_axis(act.axis, rank) if act and act.fn == "softmax" else None
        self.input_shape = tuple(graph.input_shape)
        self.module_keys = {}
        # Every attribute exists before the children are named, so no layer name can clash with one.
        # [forward, forward fast, logits, logits fast]: Steps, or the callables when sequential
        self._programs: list[Any] = []
        self._hook_dicts: list[dict[Any, Any]] = []
        self._sequential = False
        self._n_slots = 0
        self._stale = True
        self._return_logits = False  # forward skips the head too (build_module(logits=True))
        self.__dict__["_layers"] = nn.ModuleDict()
        taken = {n.name for n in graph.nodes}
        for node in graph.nodes:
            module = lower_node(node)
            if not node.trainable:
                for p in module.parameters():
                    p.requires_grad_(False)
            key = self._key_for(node.name, taken)
            taken.add(key)
            self.module_keys[node.name] = key
            self.add_module(key, module)
        self._sync()

    def _sync(self) -> None:
        """(Re)build the `layers` view and the run programs from the registered children."""
        layers = nn.ModuleDict()
        for key in self.module_keys.values():
            layers._modules[key] = self._modules[key]  # keys already safe; skips ModuleDict's check
        self.__dict__["_layers"] = layers  # a view, not a second registration
        self._build_plans()
        self.__dict__["_stale"] = False

    # A child replaced after the build (SyncBatchNorm conversion, quantization, DataParallel
    # replicas) marks the programs stale; the next forward rebuilds them.
    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if isinstance(value, nn.Module):
            self.__dict__["_stale"] = True

    def __delattr__(self, name: str) -> None:
        super().__delattr__(name)
        self.__dict__["_stale"] = True

    def add_module(self, name: str, module: nn.Module | None) -> None:
        super().add_module(name, module)
        self.__dict__["_stale"] = True

    def _replicate_for_data_parallel(self) -> NetModule:
        replica = super()._replicate_for_data_parallel()
        replica.__dict__["_stale"] = True
        return replica

    def _key_for(self, name: str, taken: set[str]) -> str:
        def clashes(k: str) -> bool:
            return (
                hasattr(type(self), k)
                or k in self.__dict__
                or hasattr(nn.ModuleDict, k)
                or k in self._modules
            )

        if "." not in name and not clashes(name):
            return name
        key = name.replace(".", "_")
        while clashes(key) or (key != name and key in taken):
            key += "_"
        return key

    def _build_plans(self) -> None:
        nodes = self.graph.nodes
        masked = masked_programs(self.graph, self.layer, self._logits_fn())
        if masked is not None:  # padding masks: lengths travel in slots of their own
            plan_, logits_, self._n_slots = masked
            self._programs, self._hook_dicts = [plan_, plan_, logits_, logits_], []
            self._sequential = False
            return
        slot = {INPUT: 0} | {n.name: i + 1 for i, n in enumerate(nodes)}
        last_use = {i + 1: i for i in range(len(nodes))}  # unread outputs are dropped at once
        for step, node in enumerate(nodes):
            for name in node.inputs:
                last_use[slot[name]] = step
        last_use.pop(len(nodes))  # the output is returned, never dropped
        plan: list[Step] = []
        for step, node in enumerate(nodes):
            frees = tuple(s for s, last in last_use.items() if last == step and s != 0)
            module = self.layer(node.name)
            plan.append((module, tuple(slot[i] for i in node.inputs), step + 1, frees))
        logits_plan = [*plan[:-1], (self._logits_fn(), *plan[-1][1:])]

        # Stateless layers (activations, merges, crops...) are what a hand-written forward calls
        # as plain functions; calling their `forward` directly skips nn.Module.__call__'s cost.
        # That is only done while no hook is registered on them (or globally), so hooks still run.
        direct: dict[int, Callable[..., Tensor]] = {}
        hook_dicts: list[dict[Any, Any]] = []
        for module, *_ in plan:
            dicts = [getattr(module, a, None) for a in _HOOK_DICTS]
            stateless = (
                next(module.parameters(), None) is None and next(module.buffers(), None) is None
            )
            if stateless and all(isinstance(d, dict) for d in dicts):
                direct[id(module)] = module.forward
                hook_dicts += dicts  # type: ignore[arg-type]

        def fast(p: list[Step]) -> list[Step]:
            return [(direct.get(id(fn), fn), *rest) for fn, *rest in p]  # type: ignore[misc]

        programs = [plan, fast(plan), logits_plan, fast(logits_plan)]
        self._sequential = self.graph.sequential
        if self._sequential:
            self._programs = [[fn for fn, *_ in p] for p in programs]
        else:
            self._programs = programs
        self._hook_dicts = hook_dicts
        self._n_slots = len(nodes) + 1

    def _logits_fn(self) -> Callable[..., Tensor]:
        last = self.layer(self.graph.output.name)
        if self.head is None:
            return last
        if isinstance(last, FusedActivation):
            return last.forward_linear
        return _identity  # a bare softmax/sigmoid/activation layer

    @property
    def layers(self) -> nn.ModuleDict:
        """The submodules keyed like the state_dict (the layer name, unless `module_keys` maps it)."""
        if self._stale:
            self._sync()
        return self.__dict__["_layers"]

    def layer(self, name: str) -> nn.Module:
        """The submodule of a layer, by its name in the spec/summary."""
        return self._modules[self.module_keys[name]]  # type: ignore[return-value]

    def _check(self, x: Tensor) -> None:
        got = tuple(x.shape[1:])
        if len(got) != len(self.input_shape) or any(
            want is not None and want != n for want, n in zip(self.input_shape, got)
        ):  # None: the dynamic time axis takes any length
            raise ValueError(
                f"network '{self.graph.name}' expects input of shape (N, "
                f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )

    def _run(self, x: Tensor, logits: int) -> Tensor:
        self._check(x)
        if self._stale:
            self._sync()
        hooked = _global_hooks() or any(self._hook_dicts)
        program: Any = self._programs[2 * logits + (not hooked)]
        if self._sequential:
            for fn in program:
                x = fn(x)
            return x
        slots: list[Tensor | None] = [None] * self._n_slots
        slots[0] = x
        for fn, ins, out, frees in program:
            if len(ins) == 1:
                slots[out] = fn(slots[ins[0]])
            else:
                slots[out] = fn(*[slots[i] for i in ins])
            for f in frees:
                slots[f] = None
        return slots[-1]  # type: ignore[return-value]

    def forward(self, x: Tensor) -> Tensor:
        """(N, *input_shape) -> (N, *output_shape); probabilities if the spec ends in one (unless
        built with `logits=True`: then as forward_logits)."""
        return self._run(x, int(self._return_logits))

    def forward_logits(self, x: Tensor) -> Tensor:
        """Like forward, without the final softmax/sigmoid named by `head` (for the loss)."""
        return self._run(x, 1)

    @torch.no_grad()
    def trace_shapes(self, x: Tensor) -> dict[str, tuple[int, ...]]:
        """Every node's output shape without the batch axis, by layer name (for tests)."""
        self._check(x)
        values: dict[str, Tensor] = {INPUT: x}
        shapes: dict[str, tuple[int, ...]] = {}
        for node in self.graph.nodes:
            y = self.layer(node.name)(*[values[i] for i in node.inputs])
            values[node.name] = y
            shapes[node.name] = tuple(y.shape[1:])
        return shapes


def build_module(graph: Graph, *, logits: bool = False) -> NetModule:
    """Lower a compiled graph (netspec.compile_file/compile_text) to a torch module; `logits`:
    its forward stops before the output's softmax or sigmoid (graph.head), as forward_logits."""
    module = NetModule(graph)
    module._return_logits = logits
    return module


def count_tensors(module: nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable) element counts, comparable with the IR's parameter counts.

    Trainable: parameters with requires_grad. Non-trainable: frozen parameters plus buffers
    (running statistics), except batchnorm's `num_batches_tracked` counter.
    """
    trainable = frozen = 0
    for p in module.parameters():
        if p.requires_grad:
            trainable += p.numel()
        else:
            frozen += p.numel()
    for sub in module.modules():
        for name, buf in sub.named_buffers(recurse=False):
            if name == "num_batches_tracked" and isinstance(sub, nn.modules.batchnorm._NormBase):
                continue
            frozen += buf.numel()
    return trainable, frozen
