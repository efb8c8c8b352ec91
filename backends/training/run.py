"""One `netspec train` process: the whole run, or one rank of a run that torchrun launched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspec.ir import Graph

from .distributed import Dist, in_worker
from .loop import Trainer


def train_run(
    graph: Graph,
    run_dir: Path,
    *,
    device: str,
    resume: bool,
    spec_text: str,
    summary_text: str,
    progress: bool | None,
    force: bool,
    echo: Callable[[str], None],
) -> dict[str, Any] | None:
    """Train `graph` into `run_dir`; the result on the process that writes, None on other ranks.

    `echo` gets every line the run tells (run directory, notes, epochs, test scores).

    Under torchrun (RANK, WORLD_SIZE, ... in the environment) this process joins the group as
    one rank, and every rank takes rank 0's run directory.
    """
    dist = None
    try:
        if in_worker():
            dist = Dist.from_env(device)
            run_dir = dist.agree(run_dir)  # type: ignore[assignment] (rank 0's, on every node)
        if dist is None or dist.writer:
            echo(f"run directory: {run_dir}")
        trainer = Trainer(
            graph,
            graph.train,
            run_dir,
            device=device,
            resume=resume,
            spec_text=spec_text,
            summary_text=summary_text,
            progress=progress,
            force=force,
            log=echo,
            dist=dist,
        )
        trainer.setup()
        result = trainer.fit()
        if dist is not None:
            dist.barrier()  # all ranks finish before any tears the process group down
    finally:
        if dist is not None:
            dist.close()
    return result if dist is None or dist.writer else None
