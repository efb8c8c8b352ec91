"""Streamed splits on the torch side: batches decoded on demand by DataLoader worker processes,
in the order the Trainer asks (its seeded permutation), pinned and prefetched on CUDA.

The order never depends on the workers: the Trainer draws each epoch's batches of indices from
its own generator, exactly as for data in memory, and the loader only decodes them (in order),
so the same seed gives the same batches whatever `workers` is, and a resume continues the same
way. The decoding is netspec.data.stream's `Lazy`, the in-memory loaders' own code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data._utils import signal_handling

from netspec.data.arraydata import ArrayData
from netspec.data.cache_choice import default_workers
from netspec.data.stream import Lazy, is_streamed
from netspec.errors import DataError, NetspecError, Problem

from .worker_watch import awaiting, ended_worker, stop_workers_with

Index = slice | torch.Tensor | np.ndarray
PREFETCH = 4  # batches each worker decodes ahead


@dataclass
class _Failed:
    """A user error raised in a worker, carried back to be raised in the training process."""

    kind: type[NetspecError]
    problems: list[Problem]
    stage: str | None

    def error(self) -> NetspecError:
        return self.kind(self.problems, stage=self.stage)


class _Splits(Dataset):
    """(split name, sample indices) -> that batch decoded, as a CPU tensor."""

    def __init__(self, splits: dict[str, Lazy]) -> None:
        self.splits = splits

    def __len__(self) -> int:
        return sum(len(x) for x in self.splits.values())

    def __getitem__(self, job: tuple[str, np.ndarray]) -> torch.Tensor | _Failed:
        name, idx = job
        try:
            return torch.from_numpy(self.splits[name][idx])
        except NetspecError as e:
            return _Failed(type(e), list(e.problems), e.stage)


class _Jobs(Sampler):
    """The batches of the current pass, set before each one (the DataLoader's workers persist)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, np.ndarray]] = []

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)


def _numpy(idx: Index, n: int) -> np.ndarray:
    if isinstance(idx, slice):
        return np.arange(n)[idx]
    if isinstance(idx, torch.Tensor):
        return idx.cpu().numpy()
    return np.asarray(idx)


class Feeder:
    """One run's streamed splits and the worker processes that decode their batches."""

    def __init__(self, splits: dict[str, Lazy], workers: int | None, pin: bool) -> None:
        self.splits = splits
        self.workers = default_workers() if workers is None else workers
        self.jobs = _Jobs()
        self.loader: DataLoader | None = None
        self._stopper: Any = None  # stops the workers when this Feeder is garbage
        decoded = {k: v for k, v in splits.items() if not v.in_place}  # the rest: read here
        if self.workers > 0 and decoded:
            # torch's SIGCHLD handler raises a dead worker's error wherever this process is (in
            # a forward, in a log call). Marked as set, it is never installed: ours
            # (worker_watch.awaiting) raises it only while a batch is awaited, as a DataError.
            signal_handling._SIGCHLD_handler_set = True
            self.loader = DataLoader(
                _Splits(decoded),
                batch_size=None,  # each job is a whole batch
                sampler=self.jobs,
                num_workers=self.workers,
                pin_memory=pin,
                prefetch_factor=PREFETCH,
                persistent_workers=True,
                # Its own: the workers' seeds would otherwise be drawn from torch's global
                # generator, shifting the run's dropout stream by the worker count.
                generator=torch.Generator().manual_seed(0),
            )

    def name_of(self, x: Lazy) -> str | None:
        return next((k for k, v in self.splits.items() if v is x), None)

    def run(self, name: str, parts: Sequence[np.ndarray]) -> Iterator[torch.Tensor]:
        """The batches of split `name` at each of `parts`, decoded in order."""
        if self.loader is None or self.splits[name].in_place:
            x = self.splits[name]
            yield from (torch.from_numpy(x[p]) for p in parts)
            return
        self.jobs.jobs = [(name, p) for p in parts]
        try:
            with awaiting(self.loader):
                it = iter(self.loader)
            if self._stopper is None:
                self._stopper = stop_workers_with(self, it)
            for _ in parts:
                with awaiting(self.loader):
                    batch = next(it)
                if isinstance(batch, _Failed):
                    raise batch.error()
                yield batch
        except (RuntimeError, EOFError, ConnectionError) as e:  # a worker killed (OOM, a signal)
            why = ended_worker(self.loader) or f"{type(e).__name__}: {e}"
            raise DataError.one(
                f"a data worker process stopped while decoding {name} batches ({why})",
                hint="see the system log (out of memory?), lower train.data.workers, then "
                "`--resume` continues from the last saved epoch",
                stage="data",
            ) from None


class Streamed:
    """A streamed split where the Trainer and the scorer hold a tensor: `x[idx]` decodes those
    samples now and puts them on the device; `batches` decodes many through the Feeder."""

    def __init__(
        self,
        x: Lazy,
        device: torch.device,
        feeder: Feeder | None = None,
        *,
        name: str | None = None,
        offset: int = 0,
    ) -> None:
        self.x, self.device, self.offset = x, device, offset
        # The feeder's split this one is (or is a part of, from `offset` on).
        self.name = name or (feeder.name_of(x) if feeder is not None else None)
        self.feeder = feeder if self.name is not None else None
        self.shape = x.shape

    def __len__(self) -> int:
        return len(self.x)

    @property
    def ndim(self) -> int:
        return self.x.ndim

    def _on_device(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(self.device, non_blocking=batch.is_pinned())

    def __getitem__(self, idx: Index) -> torch.Tensor:
        return self._on_device(torch.from_numpy(self.x[_numpy(idx, len(self))]))

    def part(self, span: slice) -> Streamed:
        """The samples of `span` (a rank's share), still streamed."""
        start = self.offset + (span.start or 0)
        return Streamed(self.x.view(span), self.device, self.feeder, name=self.name, offset=start)

    def batches(self, parts: Iterable[Index]) -> Iterator[torch.Tensor]:
        """Each of `parts` decoded, in order, on the device (workers ahead of the consumer)."""
        n = len(self)
        idx = [_numpy(p, n) for p in parts]
        if self.feeder is None or self.name is None:
            yield from (self[i] for i in idx)
            return
        for batch in self.feeder.run(self.name, [i + self.offset for i in idx]):
            yield self._on_device(batch)


def rows(x: torch.Tensor | Streamed, span: slice) -> torch.Tensor | Streamed:
    """x's samples in span: a view of a Streamed split, a slice of a tensor."""
    return x.part(span) if isinstance(x, Streamed) else x[span]


def batched(x: torch.Tensor | Streamed, parts: Sequence[Index]) -> Iterable[torch.Tensor]:
    """x's batches at each of parts, in order: streamed ones decoded ahead by the workers."""
    return x.batches(parts) if isinstance(x, Streamed) else (x[p] for p in parts)


def held_bytes(data: ArrayData | None) -> int:
    """The bytes of a split that training holds in memory (a streamed split's labels only)."""
    if data is None:
        return 0
    return data.y.nbytes + (0 if is_streamed(data.x) else data.x.nbytes)


def feeder_of(data: Any, workers: int | None, device: torch.device) -> Feeder | None:
    """The Feeder of a run's streamed splits (a Prepared's train, val, test), None if none is."""
    splits = {
        name: split.x
        for name in ("train", "val", "test")
        if (split := getattr(data, name)) is not None and is_streamed(split.x)
    }
    return Feeder(splits, workers, device.type == "cuda") if splits else None
