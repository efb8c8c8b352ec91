"""`netspec` commands forked from a process that has imported the training stack once.

A `python -m netspec train` spends its first ~2.5 s of CPU importing torch and torch._dynamo
(which the first optimizer step needs) before it reads the spec. A test that starts five runs to
kill them at chosen points pays that five times for nothing it checks. `warm_netspec` starts one
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
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from subprocess import PIPE

from helpers import spawned

# The process that forks: imports, then one command at a time from stdin (a JSON argv); it
# prints the child's pid, waits for it, and prints its exit status as subprocess does (-N for
# signal N). A child's stdin, stdout and stderr are /dev/null.
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
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class Forked:
    """One command forked by `Warm`: poll, send_signal and wait as subprocess.Popen's."""

    def __init__(self, warm: Warm, pid: int) -> None:
        self.warm, self.pid, self.returncode = warm, pid, None

    def poll(self) -> int | None:
        self._collect(0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        if not self._collect(timeout):
            raise subprocess.TimeoutExpired(f"netspec (pid {self.pid})", timeout)
        assert self.returncode is not None
        return self.returncode

    def _collect(self, timeout: float) -> bool:
        """Whether it has ended, its exit status read if it ended within `timeout` seconds."""
        if self.returncode is None and (line := self.warm.line(timeout)) is not None:
            self.returncode = int(line)
        return self.returncode is not None


class Warm:
    """The forking process (started by `warm_netspec`): `run` forks a command from it."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def run(self, args: Sequence[str | Path]) -> Forked:
        """`netspec ARGS` forked; returns at once (the command runs on)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps([str(a) for a in args]) + "\n").encode())
        pid = self.line(30)
        if pid is None:
            raise RuntimeError("the warm netspec process did not fork")
        return Forked(self, int(pid))

    def line(self, timeout: float) -> str | None:
        """Its next line, or None if none came within `timeout` seconds."""
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            return None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the warm netspec process ended")
        return line.decode().strip()


@contextlib.contextmanager
def warm_netspec(env: Mapping[str, str], timeout: float = 120) -> Iterator[Warm]:
    """The forking process, ready; on leaving, it and a command still running are killed
    (helpers.spawned)."""
    cmd = [sys.executable, "-c", _SERVER]
    # Unbuffered pipes: select() sees every line that has arrived.
    with spawned(cmd, stdin=PIPE, stdout=PIPE, bufsize=0, env=dict(env)) as proc:
        warm = Warm(proc)
        if warm.line(timeout) != "ready":
            raise RuntimeError("the warm netspec process did not start")
        yield warm
