"""`netspec train --nproc N`: the checks before starting, then N workers started by torchrun."""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from netspec.data.cache_choice import cores
from netspec.errors import NetspecError, SpecError

if TYPE_CHECKING:
    from netspec.runs import TrainOptions


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NetspecError.one(
            f"--rdzv-endpoint {endpoint!r} is not HOST:PORT",
            hint="the address and a free port of the node with --node-rank 0, "
            "e.g. --rdzv-endpoint node001:29500",
        )
    return host, int(port)


def check_launch(
    nproc: int, nnodes: int, node_rank: int, endpoint: str | None, *, batch_size: int, device: str
) -> None:
    """Refuse what cannot start before any worker does (`nproc` ranks on node `node_rank` of
    `nnodes`, meeting at `endpoint`): each problem located, exit 2."""
    import torch  # after the spec checks (the CLI's rule): spec errors come without torch

    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    have = torch.cuda.device_count() if cuda else cores()
    what = "GPUs" if cuda else "CPU cores"
    if nproc < 1 or nproc > have:
        raise NetspecError.one(
            f"--nproc {nproc}: expected 1 to {have}, one process per "
            f"{'GPU' if cuda else 'CPU core'} (this machine has {have} {what})",
            hint="--nproc is the number of processes on each node",
        )
    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise NetspecError.one(
            f"--nnodes {nnodes} --node-rank {node_rank}: expected nnodes >= 1 and "
            f"0 <= node-rank < nnodes"
        )
    if nnodes > 1 and endpoint is None:
        raise NetspecError.one(
            f"--nnodes {nnodes}: the nodes need a meeting point",
            hint="pass --rdzv-endpoint HOST:PORT of the node with --node-rank 0",
        )
    world = nproc * nnodes
    if batch_size % world:
        raise SpecError.one(
            f"batch_size {batch_size} does not divide by the {world} processes "
            f"({nnodes} node(s) x {nproc}): each takes an equal part of every batch",
            path="train.batch_size",
            hint=f"use a multiple of {world}, e.g. --set train.batch_size="
            f"{max(world, batch_size // world * world)}",
        )
    if endpoint is not None:
        _, port = split_endpoint(endpoint)
        if node_rank == 0:  # node 0 hosts the rendezvous store on that port
            with socket.socket() as s:
                try:
                    s.bind(("", port))
                except OSError as exc:
                    taken = exc.errno == errno.EADDRINUSE
                    raise NetspecError.one(
                        f"--rdzv-endpoint {endpoint}: port {port} "
                        + ("is in use" if taken else f"cannot be opened: {exc.strerror}"),
                        hint="choose a free port (another run may be using this one)",
                    ) from None


# How long the nodes wait for each other at the start, unless --rdzv-timeout says otherwise.
RDZV_TIMEOUT = 300


def torchrun_args(
    worker_args: list[str],
    *,
    nproc: int,
    nnodes: int,
    node_rank: int,
    endpoint: str | None,
    timeout: int = RDZV_TIMEOUT,
) -> list[str]:
    """The torchrun command line that starts `netspec train WORKER_ARGS` in every process."""
    args = ["--nproc-per-node", str(nproc), "--nnodes", str(nnodes)]
    if endpoint is None:  # one node: a rendezvous on a free local port, no collisions
        args.append("--standalone")
    else:
        # Static rendezvous: node 0 hosts the store; `timeout` bounds the wait for the others.
        host, port = split_endpoint(endpoint)
        args += ["--node-rank", str(node_rank), "--master-addr", host, "--master-port", str(port)]
        args += ["--rdzv-conf", f"timeout={timeout}"]
    return [*args, "--module", "netspec", "train", *worker_args]


def _quiet_torch() -> None:
    """Import torch with its C++ log at FATAL: a rendezvous that waits prints a warning and a
    C++ stack at every retry, and its end is said once, by `launch`. Workers keep the default
    (the variable is read when torch loads, and put back before any worker starts)."""
    before = os.environ.get("TORCH_CPP_LOG_LEVEL")
    os.environ["TORCH_CPP_LOG_LEVEL"] = "FATAL"
    try:
        import torch  # noqa: F401
    finally:
        if before is None:
            del os.environ["TORCH_CPP_LOG_LEVEL"]
        else:
            os.environ["TORCH_CPP_LOG_LEVEL"] = before


def launch(
    args: list[str], nproc: int, *, nnodes: int = 1, endpoint: str | None = None, timeout: int = 0
) -> int:
    """Run torchrun with `args` (see torchrun_args); the exit code of the first failed worker.
    Nodes that do not meet at `endpoint` within `timeout` seconds are one error (exit 2)."""
    from torch.distributed import DistError
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # torchrun would set 1 thread per process (and warn); share this node's cores instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores() // nproc)))
    try:
        run(parse_args(args))
    except ChildFailedError as exc:
        # Each worker has printed its own error; say which failed, not torch's traceback.
        rank, failure = exc.get_first_failure()
        print(f"error: worker {rank} exited with code {failure.exitcode}", file=sys.stderr)
        return failure.exitcode if failure.exitcode > 0 else 1
    except DistError as exc:  # the launcher's own store: the nodes never met, or lost node 0
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NetspecError.one(
            f"the {nnodes} nodes did not all meet at --rdzv-endpoint {endpoint} within "
            f"{timeout} s ({first})",
            hint="start `netspec train` with the same --nnodes and --rdzv-endpoint on every "
            "node, each with its own --node-rank (0 hosts the endpoint); check that the port "
            "is open between them; --rdzv-timeout SECONDS waits longer",
        ) from None
    return 0


def launch_train(
    spec: Path,
    sets: list[str],
    out: Path | None,
    options: TrainOptions,
    nproc: int,
    nnodes: int,
    node_rank: int,
    *,
    endpoint: str | None,
    rdzv_timeout: int = RDZV_TIMEOUT,
) -> int:
    """`netspec train --nproc N`: compile the spec and pick the run directory here, check the
    launch, then run `netspec train` in `nproc` ranks on that directory; their exit code."""
    from netspec.runs import prepare_run

    graph, run_dir, *_ = prepare_run(spec, sets, out, options.resume)
    if rdzv_timeout < 1:
        raise NetspecError.one(f"--rdzv-timeout must be 1 second or more, not {rdzv_timeout}")
    _quiet_torch()
    check_launch(
        nproc, nnodes, node_rank, endpoint, batch_size=graph.train.batch_size, device=options.device
    )
    worker = [str(spec), *(a for s in sets for a in ("--set", s)), "--out", str(run_dir)]
    worker += ["--device", options.device, *(["--resume"] if options.resume else [])]
    worker += ["--force"] if options.force else []
    if options.progress is not None:
        worker.append("--progress" if options.progress else "--no-progress")
    args = torchrun_args(
        worker,
        nproc=nproc,
        nnodes=nnodes,
        node_rank=node_rank,
        endpoint=endpoint,
        timeout=rdzv_timeout,
    )
    return launch(args, nproc, nnodes=nnodes, endpoint=endpoint, timeout=rdzv_timeout)
