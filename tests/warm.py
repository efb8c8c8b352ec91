"""`netspec` commands forked from a process that has imported the training stack once.

A `python -m netspec train` spends its first ~2.5 s of CPU importing torch and torch._dynamo
(which the first optimizer step needs) before it reads the spec. A test that starts five runs to
kill them at chosen points pays that five times for nothing it checks. `Warm` starts one
process that imports what a run imports and then forks each command from there: the child is a
real process (its own pid, files, signals; SIGKILL ends it as it ends any), running
`netspec.cli.main` as `python -m netspec` does, with torch on one thread (OMP_NUM_THREADS=1 in
the environment given: no thread pool is ever forked).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# The process that forks: imports, then one command at a time from stdin (a JSON argv); it
# prints the child's pid, waits for it, and prints its exit status as subprocess does (-N for
# signal N). A child's stdout and stderr go to /dev/null, its stdin is closed.
_SERVER = r"""
import json, os, sys
import netspec.cli, netspec.cli.train, netspec.backends.training.run, torch._dynamo, safetensors
print("ready", flush=True)
for line in sys.stdin:
    argv = json.loads(line)
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        sys.argv = ["netspec", *argv]
        code = 0
        try:
            netspec.cli.main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            code = 1
        os._exit(code)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
"""


class Forked:
    """One command forked by `Warm`: poll, send_signal and wait as subprocess.Popen's."""

    def __init__(self, warm: Warm, pid: int) -> None:
        self.warm, self.pid, self.returncode = warm, pid, None

    def poll(self) -> int | None:
        if self.returncode is None and self.warm.ready_to_read(0):
            self.returncode = int(self.warm.readline())
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        if self.returncode is None:
            if not self.warm.ready_to_read(timeout):
                raise subprocess.TimeoutExpired(f"netspec (pid {self.pid})", timeout)
            self.returncode = int(self.warm.readline())
        return self.returncode


class Warm:
    """The forking process; a context manager that kills it and anything it runs on exit."""

    def __init__(self, env: Mapping[str, str], timeout: float = 120) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,  # unbuffered: select() sees every line that has arrived
            env=dict(env),
            start_new_session=True,
        )
        if not self.ready_to_read(timeout) or self.readline() != "ready":
            self.close()
            raise RuntimeError("the warm netspec process did not start")

    def run(self, args: Sequence[str | Path]) -> Forked:
        """`netspec ARGS` forked; returns at once (the command runs on)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps([str(a) for a in args]) + "\n").encode())
        self.proc.stdin.flush()
        if not self.ready_to_read(30):
            raise RuntimeError("the warm netspec process did not fork")
        return Forked(self, int(self.readline()))

    def ready_to_read(self, timeout: float) -> bool:
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select(
                [self.proc.stdout], [], [], max(0.0, end - time.monotonic())
            )
            if ready or time.monotonic() >= end:
                return bool(ready)

    def readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the warm netspec process ended")
        return line.decode().strip()

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # it and a command still running
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self.proc.wait()

    def __enter__(self) -> Warm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
