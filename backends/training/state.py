"""The resumable state of a run: what changes each epoch, saved to and restored from checkpoint/last."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netspec.errors import DataError, SpecError
from netspec.ir import Graph
from netspec.runs import MODEL_PREFIX, model_part

from ..lowering import NetModule
from ..weights import load_weights, weights
from . import checkpoint
from .augment import Augmenter

RESUME_HINT = "resume with the spec the run was started with (its spec.yaml)"


@dataclass
class RunState:
    """Everything that changes from epoch to epoch (saved in the checkpoint's metadata)."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    plateau_bad: int = 0
    plateau_best: float | None = None
    stopped: str | None = None


def spec_hash(graph: Graph) -> str:
    """Hash of the resolved network (not of the training settings): what the weights fit."""
    payload = json.dumps(
        [
            graph.input_shape,
            [
                (
                    n.name,
                    n.kind,
                    n.inputs,
                    {f: getattr(n.layer, f) for f in type(n.layer).model_fields},
                    n.shape,
                )
                for n in graph.nodes
            ],
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def jsonable(v: Any) -> Any:
    """json.dumps' `default` for the numbers a run records (numpy scalars, tensors)."""
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if torch.is_tensor(v):
        return v.tolist()
    raise TypeError(f"cannot store {type(v).__name__} in a checkpoint")


@dataclass
class Resumable:
    """The live objects whose state an exact resume needs, besides the RunState."""

    module: NetModule
    opt: torch.optim.Optimizer
    sched: Any  # a torch lr_scheduler, or None
    shuffle: torch.Generator
    crops: torch.Generator
    augment: Augmenter
    device: torch.device


def save_state(
    path: Path,
    live: Resumable,
    st: RunState,
    hash_: str,
    ranks: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write weights, optimizer, schedule, every random generator and `st` to one file.

    `ranks`: the generator states of every process of a distributed run (`rng/rank<r>/...`);
    the plain `rng/` keys are rank 0's, so any run can resume from the file.
    """
    tensors = {f"{MODEL_PREFIX}{k}": v for k, v in weights(live.module).items()}
    tensors.update(ranks or {})
    opt_tensors, opt_rest = checkpoint.optimizer_state(live.opt)
    tensors.update(opt_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/shuffle"] = live.shuffle.get_state()
    tensors["rng/crops"] = live.crops.get_state()
    tensors.update({f"rng/augment/{k}": v for k, v in live.augment.state_dict().items()})
    if live.device.type == "cuda":
        tensors["rng/cuda"] = torch.cuda.get_rng_state(live.device)
    state = {
        "run": st.__dict__,
        "optimizer": opt_rest,
        "scheduler": live.sched.state_dict() if live.sched is not None else None,
        "spec_sha256": hash_,
    }
    checkpoint.save(path, tensors, {checkpoint.STATE_KEY: json.dumps(state, default=jsonable)})


def restore_state(path: Path, live: Resumable, hash_: str) -> RunState:
    """Load what `save_state` wrote into `live`; refuse a checkpoint of another network or optimizer."""
    if not path.is_file():
        run_dir = path.parent.parent
        raise DataError.one(
            f"--resume: no checkpoint in {run_dir}",
            hint="train without --resume, or point --out at an earlier run",
        )
    tensors, meta = checkpoint.load(path)
    state = json.loads(meta[checkpoint.STATE_KEY])
    if state["spec_sha256"] != hash_:
        raise SpecError.one(
            f"--resume: the network in the spec differs from the one in {path}", hint=RESUME_HINT
        )
    load_weights(live.module, model_part(tensors))
    # Another optimizer, or other trainable (frozen) layers than the run's, would not fit.
    saved_groups = [sorted(g) for g in state["optimizer"]["param_groups"]]
    same_kind = saved_groups == [sorted(g) for g in live.opt.state_dict()["param_groups"]]
    try:
        if not same_kind:
            raise ValueError("it was made by another optimizer")
        checkpoint.load_optimizer_state(live.opt, tensors, state["optimizer"])
    except (ValueError, KeyError) as exc:
        raise SpecError.one(
            f"--resume: the optimizer state in {path} does not fit this spec's "
            f"optimizer and trainable layers: {exc}",
            hint=RESUME_HINT,
        ) from None
    if live.sched is not None and state["scheduler"] is not None:
        live.sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng/torch"])
    live.shuffle.set_state(tensors["rng/shuffle"])
    if "rng/crops" in tensors:
        live.crops.set_state(tensors["rng/crops"])
    prefix = "rng/augment/"
    live.augment.load_state_dict(
        {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    )
    if live.device.type == "cuda" and "rng/cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng/cuda"], live.device)
    return RunState(**state["run"])
