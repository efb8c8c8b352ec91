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
from netspec.data.parallel import forking
from netspec.data.stream import Lazy, is_streamed
from netspec.data.tiles import windows
from netspec.errors import DataError, NetspecError, Problem

from .worker_watch import awaiting, ended_worker, stop_workers_with

Index = slice | torch.Tensor | np.ndarray
Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # samples, or samples and labels
Cut = tuple[np.ndarray, np.ndarray, tuple[int, int]]  # random tiles' tops, lefts, (h, w)
PREFETCH = 4  # batches each worker decodes ahead


@dataclass
class _Failed:
    """A user error raised in a worker, carried back to be raised in the training process."""

    kind: type[NetspecError]
    problems: list[Problem]
    stage: str | None

    def error(self) -> NetspecError:
        return self.kind(self.problems, stage=self.stage)


@dataclass(frozen=True)
class Job:
    """One batch to decode: split `name`'s samples `idx`, with their labels (`labels`: a split
    whose masks stream too) and cut into random tiles (`cut`: tops, lefts, (h, w)), or not."""

    name: str
    idx: np.ndarray
    labels: bool = False
    cut: Cut | None = None


def _take(x: Lazy, job: Job) -> torch.Tensor:
    if job.cut is None:
        return torch.from_numpy(x[job.idx])
    return torch.from_numpy(windows(x, job.idx, *job.cut))


class _Splits(Dataset):
    """A Job -> that batch decoded (and its labels, as a pair), as CPU tensors."""

    def __init__(self, splits: dict[str, Lazy], labels: dict[str, Lazy]) -> None:
        self.splits, self.labels = splits, labels

    def __len__(self) -> int:
        return sum(len(x) for x in self.splits.values())

    def __getitem__(self, job: Job) -> Batch | _Failed:
        try:
            x = _take(self.splits[job.name], job)
            return (x, _take(self.labels[job.name], job)) if job.labels else x
        except NetspecError as e:
            return _Failed(type(e), list(e.problems), e.stage)


class _Jobs(Sampler):
    """The batches of the current pass, set before each one (the DataLoader's workers persist)."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def __iter__(self) -> Iterator[Job]:
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
    """One run's streamed splits (and their streamed labels: a mask folder's class masks) and
    the worker processes that decode their batches."""

    def __init__(
        self,
        splits: dict[str, Lazy],
        workers: int | None,
        pin: bool,
        labels: dict[str, Lazy] | None = None,
    ) -> None:
        self.splits, self.labels = splits, labels or {}
        self.workers = default_workers() if workers is None else workers
        self.jobs = _Jobs()
        self.loader: DataLoader | None = None
        self._stopper: Any = None  # stops the workers when this Feeder is garbage
        self.dataset = _Splits(splits, self.labels)
        if self.workers > 0 and any(not self._here(k) for k in splits):  # the rest: read here
            # torch's SIGCHLD handler raises a dead worker's error wherever this process is (in
            # a forward, in a log call). Marked as set, it is never installed: ours
            # (worker_watch.awaiting) raises it only while a batch is awaited, as a DataError.
            signal_handling._SIGCHLD_handler_set = True
            self.loader = DataLoader(
                self.dataset,
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

    def _here(self, name: str) -> bool:
        """Whether split `name` is read in this process (memory-mapped, nothing to decode)."""
        label = self.labels.get(name)
        return self.splits[name].in_place and (label is None or label.in_place)

    def name_of(self, x: Lazy) -> str | None:
        """The split x is (its samples or its labels)."""
        for table in (self.splits, self.labels):
            found = next((k for k, v in table.items() if v is x), None)
            if found is not None:
                return found
        return None

    def run(self, jobs: Sequence[Job]) -> Iterator[Batch]:
        """Each job's batch (a pair with its labels where the job asks), decoded in order."""
        if not jobs:
            return
        name = jobs[0].name
        if self.loader is None or self._here(name):
            for job in jobs:
                batch = self.dataset[job]
                if isinstance(batch, _Failed):
                    raise batch.error()
                yield batch
            return
        self.jobs.jobs = list(jobs)
        try:
            with awaiting(self.loader), forking():  # the workers start here
                it = iter(self.loader)
            if self._stopper is None:
                self._stopper = stop_workers_with(self, it)
            for _ in jobs:
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
        for batch in self._decoded(parts):
            yield self._on_device(batch)  # type: ignore[arg-type]

    def pairs(
        self, labels: Streamed, parts: Sequence[Index], cuts: Sequence[Cut] | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Each of `parts` with its labels (this split's streamed masks), decoded together in
        order, on the device; cut into random tiles at `cuts` (one per part) if given."""
        for x, y in self._decoded(parts, labels, cuts):  # type: ignore[misc]
            yield self._on_device(x), self._on_device(y)

    def _decoded(
        self,
        parts: Iterable[Index],
        labels: Streamed | None = None,
        cuts: Sequence[Cut] | None = None,
    ) -> Iterator[Batch]:
        """Each part's batch (with `labels`' as a pair): by the Feeder's workers, or in this
        process when there is none (scoring a run) or the labels are not this split's on it."""
        n = len(self)
        idx = [_numpy(p, n) for p in parts]
        paired = labels is not None
        workers = self.feeder is not None and self.name is not None
        if labels is not None:  # its jobs carry the labels only where they are this split's
            workers = workers and (labels.feeder, labels.name, labels.offset) == (
                self.feeder,
                self.name,
                self.offset,
            )
        if not workers:
            for k, i in enumerate(idx):
                job = Job("", i, paired, cuts[k] if cuts else None)
                x = _take(self.x, job)
                yield x if labels is None else (x, _take(labels.x, job))
            return
        jobs = [
            Job(self.name, i + self.offset, paired, cuts[k] if cuts else None)
            for k, i in enumerate(idx)
        ]
        yield from self.feeder.run(jobs)


def rows(x: torch.Tensor | Streamed, span: slice) -> torch.Tensor | Streamed:
    """x's samples in span: a view of a Streamed split, a slice of a tensor."""
    return x.part(span) if isinstance(x, Streamed) else x[span]


def batched(x: torch.Tensor | Streamed, parts: Sequence[Index]) -> Iterable[torch.Tensor]:
    """x's batches at each of parts, in order: streamed ones decoded ahead by the workers."""
    return x.batches(parts) if isinstance(x, Streamed) else (x[p] for p in parts)


def batched_pairs(
    x: torch.Tensor | Streamed, y: torch.Tensor | Streamed, parts: Sequence[Index]
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """x's and y's batches at each of parts, in order: streamed labels decoded with their
    samples, in one job each."""
    if isinstance(x, Streamed) and isinstance(y, Streamed):
        return x.pairs(y, parts)
    return zip(batched(x, parts), batched(y, parts))


def held_bytes(data: ArrayData | None) -> int:
    """The bytes of a split that training holds in memory (nothing of a streamed part)."""
    if data is None:
        return 0
    return sum(0 if is_streamed(a) else a.nbytes for a in (data.x, data.y))


def feeder_of(data: Any, workers: int | None, device: torch.device) -> Feeder | None:
    """The Feeder of a run's streamed splits (a Prepared's train, val, test) and their streamed
    labels, None if none is."""
    held = [
        (name, split)
        for name in ("train", "val", "test")
        if (split := getattr(data, name)) is not None and is_streamed(split.x)
    ]
    if not held:
        return None
    labels = {name: split.y for name, split in held if is_streamed(split.y)}
    splits = {name: split.x for name, split in held}
    return Feeder(splits, workers, device.type == "cuda", labels)
