"""Data-parallel training inside a torchrun worker: the process group, shards, exact sums, per-rank RNG."""

# One worker per process, started by torchrun (netspec/cli/train.py `train --nproc`, or torchrun itself).
# Every rank holds the whole in-memory dataset and draws the same permutation; each global batch
# is split across the ranks (tensor_split), so the global batches are those of a single-process
# run. Weights and optimizer state are replicated; only the random augmentation differs per rank.

from __future__ import annotations

import ctypes
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from torch import Tensor, nn

from netspec.data.cache_choice import cores
from netspec.errors import NetspecError, SpecError
from netspec.train_spec import TrainSpec

from ..lowering import NetModule
from ..lowering.weighted import FrozenBatchNorm1d, FrozenBatchNorm2d
from .augment import Augmenter
from .device import pick_device

# Rank r > 0 seeds its own random streams `seed + RANK_SEED * r` apart; rank 0 keeps the
# single-process seeds, so a 1-process torchrun run is the plain run.
RANK_SEED = 1_000_003
RANK_KEY = "rng/rank{}/"  # per-rank generator states in checkpoint/last.safetensors


def in_worker() -> bool:
    """Whether this process was started by torchrun (or another launcher with the env:// variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def _die_with_the_launcher() -> None:
    """Ask Linux to end this worker when its parent (torchrun's agent) dies.

    torchrun starts each worker in a session of its own, so a launcher killed with SIGKILL
    (which it cannot forward) would leave the workers training on, writing into the run.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class Dist:
    """This process's place in the group: its rank, the world size and its device."""

    rank: int
    world: int
    device: torch.device
    nodes: int = 1  # the machines the `world` processes run on

    @classmethod
    def from_env(cls, device: str) -> Dist:
        """Join the process group torchrun describes: NCCL on CUDA (one GPU per local rank), else gloo."""
        if "TORCHELASTIC_RUN_ID" in os.environ:
            _die_with_the_launcher()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        want = pick_device(device)
        if want.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise NetspecError.one(
                    f"local rank {local_rank} has no GPU: this node has "
                    f"{torch.cuda.device_count()}",
                    hint="start at most one process per GPU on each node",
                )
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
            dist.init_process_group("nccl", device_id=dev)
        else:
            dev = torch.device("cpu")
            # The processes of a node share its cores: N processes with all cores each would
            # oversubscribe them N times over.
            torch.set_num_threads(max(1, cores() // local_world))
            dist.init_process_group("gloo")
        world = dist.get_world_size()
        nodes = int(os.environ.get("GROUP_WORLD_SIZE") or max(1, world // local_world))
        return cls(dist.get_rank(), world, dev, nodes)

    def describe(self) -> str:
        """The world, as the log says it: `2 processes on 2 nodes`."""
        procs = f"{self.world} process{'es' if self.world != 1 else ''}"
        return f"{procs} on {self.nodes} node{'s' if self.nodes != 1 else ''}"

    @property
    def writer(self) -> bool:
        """Rank 0 alone writes the run directory and talks."""
        return self.rank == 0

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def agree(self, value: object) -> object:
        """Rank 0's `value` on every rank (the run directory, picked from each node's clock)."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()

    def shard(self, idx: Tensor) -> Tensor:
        """This rank's slice of a global batch of indices (the first ranks take one more)."""
        return idx.tensor_split(self.world)[self.rank]

    def span(self, n: int) -> slice:
        """This rank's contiguous part of `n` evaluation samples."""
        bounds = torch.arange(n).tensor_split(self.world)[self.rank]
        if len(bounds) == 0:
            return slice(0, 0)
        return slice(int(bounds[0]), int(bounds[-1]) + 1)

    def sum(self, values: list[float | Tensor]) -> list[float]:
        """Element-wise sums over the ranks, in float64 (loss totals and sample counts)."""
        t = torch.stack([torch.as_tensor(v, dtype=torch.float64).to(self.device) for v in values])
        dist.all_reduce(t)
        return t.tolist()

    def rank0_buffers(self, module: nn.Module) -> None:
        """Rank 0's batchnorm running statistics everywhere: each rank updated its own copy in
        the last step, and evaluation and the saved weights must use the same ones."""
        for b in module.buffers():
            dist.broadcast(b, src=0)

    def all_reduce(self, t: Tensor) -> None:
        dist.all_reduce(t)

    # --- per-rank random state ----------------------------------------------------------------

    def gather_rng(self, states: dict[str, Tensor]) -> dict[str, Tensor] | None:
        """Every rank's generator states, keyed `rng/rank<r>/<name>`, on rank 0 (None elsewhere)."""
        out: list[dict[str, Tensor]] | None = (
            [{} for _ in range(self.world)] if self.writer else None
        )
        dist.gather_object({k: v.cpu() for k, v in states.items()}, out, dst=0)
        if out is None:
            return None
        return {RANK_KEY.format(r) + k: v for r, s in enumerate(out) for k, v in s.items()}

    def rank_rng(self, path: Path) -> tuple[dict[str, Tensor], int]:
        """This rank's saved generator states (empty if the checkpoint has none for it), and the
        number of processes the checkpoint was made with."""
        prefix = RANK_KEY.format(self.rank)
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            mine = {k[len(prefix) :]: f.get_tensor(k) for k in keys if k.startswith(prefix)}
        return mine, saved_world(keys)


def lost_peer(exc: BaseException) -> NetspecError | None:
    """The error to show when `exc` means another process of the run is gone (its node died,
    was killed or lost the network), else None."""
    text = str(exc)
    lost = isinstance(exc, dist.DistError) or (
        isinstance(exc, RuntimeError)
        and any(w in text for w in ("Connection closed", "Connection reset", "Broken pipe", "gloo"))
    )
    if not lost:
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]  # no C++ source location
    return NetspecError.one(
        f"lost another process of this data-parallel run ({first[:200]})",
        hint="a node stopped, was killed or lost its network; the run directory holds the last "
        "finished epoch: start it again with --resume (any --nproc, any --nnodes)",
    )


def rank_rng(crops: torch.Generator, augment: Augmenter, device: torch.device) -> dict[str, Tensor]:
    """This process's generator states: dropout (torch), random tiles, augmentation."""
    states = {"torch": torch.get_rng_state(), "crops": crops.get_state()}
    states.update({f"augment/{k}": v for k, v in augment.state_dict().items()})
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rank_rng(
    states: dict[str, Tensor], crops: torch.Generator, augment: Augmenter, device: torch.device
) -> None:
    """Put back what `rank_rng` saved."""
    torch.set_rng_state(states["torch"])
    crops.set_state(states["crops"])
    prefix = "augment/"
    augment.load_state_dict(
        {k[len(prefix) :]: v for k, v in states.items() if k.startswith(prefix)}
    )
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


def saved_world(keys: list[str]) -> int:
    """How many processes wrote a checkpoint, from its keys (1 for a single-process run)."""
    return sum(1 for k in keys if k.startswith("rng/rank") and k.endswith("/torch")) or 1


def checkpoint_world(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return saved_world(list(f.keys()))


def resume_note(saved: int, world: int) -> str | None:
    """What a resume with another number of processes cannot carry over, or None."""
    if saved == world:
        return None
    if saved < world:
        return (
            f"the checkpoint holds the random state of {saved} process(es); ranks "
            f"{saved}..{world - 1} start new augmentation and dropout streams"
        )
    return (
        f"the checkpoint was made by {saved} processes; the augmentation and dropout streams "
        f"of ranks {world}..{saved - 1} are not continued"
    )


# --- the module -------------------------------------------------------------------------------

_FROZEN = (FrozenBatchNorm1d, FrozenBatchNorm2d)


def sync_batchnorm(module: NetModule) -> list[str]:
    """Make every trainable batchnorm a SyncBatchNorm (statistics over the global batch).

    Frozen batchnorms stay: they normalize with their running statistics and never compute
    batch statistics, and convert_sync_batchnorm would turn them back into training ones.
    Returns the converted layer names.
    """
    done = []
    for name, key in module.module_keys.items():
        child = module.layer(name)
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, _FROZEN):
            module.add_module(key, nn.SyncBatchNorm.convert_sync_batchnorm(child))
            done.append(name)
    return done


class TrainForward(nn.Module):
    """What the training step calls, as one module DDP can wrap: logits or outputs of `net`."""

    def __init__(self, net: NetModule, logits: bool) -> None:
        super().__init__()
        self.net = net
        self.logits = logits

    def forward(self, x: Tensor) -> Tensor:
        return self.net.forward_logits(x) if self.logits else self.net(x)


def data_parallel(net: NetModule, logits: bool, d: Dist) -> nn.Module:
    """The training forward with gradients averaged over the ranks (rank 0's weights to start)."""
    ids = [d.device.index] if d.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(TrainForward(net, logits), device_ids=ids)


def wrap_data_parallel(
    module: NetModule, logits: bool, d: Dist, sync: bool, log: Callable[[str], None]
) -> nn.Module:
    """The training forward of one rank in DDP (batchnorms in SyncBatchNorm when `sync`)."""
    if sync:
        if d.device.type != "cuda":
            raise SpecError.one(
                "sync_batchnorm needs CUDA: torch's SyncBatchNorm has no CPU kernel",
                path="train.sync_batchnorm",
                hint="train on GPUs, or set train.sync_batchnorm: false (each "
                "process then normalizes with its own part of the batch)",
            )
        synced = sync_batchnorm(module)
        log(f"sync_batchnorm: {len(synced)} batchnorm layers synchronized")
    return data_parallel(module, logits, d)


def restore_rank_rng(
    d: Dist | None,
    last: Path,
    crops: torch.Generator,
    augment: Augmenter,
    spec: TrainSpec,
    epoch: int,
    log: Callable[[str], None],
) -> Augmenter:
    """This rank's own generator states from the checkpoint `last` (a note where there are
    none); the augmenter to go on with."""
    if d is None:
        note = resume_note(checkpoint_world(last), 1)
    else:
        mine, saved = d.rank_rng(last)
        note = resume_note(saved, d.world)
        if mine:
            set_rank_rng(mine, crops, augment, d.device)
        elif d.rank > 0:  # new streams, not the ones this rank started the run with
            seed = spec.seed + RANK_SEED * d.rank + epoch
            torch.manual_seed(seed)
            crops.manual_seed(seed + 2)
            augment = Augmenter(spec.augment, seed=seed + 1, device=d.device)
    if note:
        log(f"note: {note}")
    return augment
