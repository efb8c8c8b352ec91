"""How fast is `netspec summary`? Prints two markdown tables.

1. Wall time of `netspec summary SPEC` as a new process (interpreter start and imports included)
   for every spec in specs/, next to `python -c pass` as the floor; all commands interleaved in
   one run (round-robin, rotated each round) so machine noise hits them alike.
2. In-process compile time (`netspec.compile_text`: parse, validate, IR, shapes, params) of
   generated specs of 500 to 16,000 layers, to show it grows linearly (ms per layer).

Targets: summary < 0.5 s wall for every spec; a 2,000-layer spec compiles in < 2 s.

    python benchmarks/bench_summary.py [--repeats 15] [--compile-runs 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUMMARY_TARGET_S = 0.5
COMPILE_TARGET_S = 2.0  # for 2,000 layers
SIZES = (500, 1000, 2000, 4000, 16000)


def netspec_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m netspec`."""
    script = Path(sys.executable).with_name("netspec")
    return [str(script)] if script.exists() else [sys.executable, "-m", "netspec"]


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    return time.perf_counter() - start


def p90(values: list[float]) -> float:
    """The nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, -(-9 * len(ordered) // 10) - 1)]


def bench_summary(specs: list[Path], repeats: int) -> dict[str, list[float]]:
    commands = {"python -c pass": [sys.executable, "-c", "pass"]}
    for spec in specs:
        commands[spec.stem] = [*netspec_command(), "summary", str(spec.relative_to(REPO))]
    for command in commands.values():  # warm-up, not counted: file cache, bytecode
        wall_time(command)
    times: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(wall_time(commands[name]))
    return times


def generated_spec(n_layers: int) -> str:
    """A deep plain convnet written out layer by layer (no `repeat`): parse cost included."""
    cycle = [
        "  - conv2d: {filters: 16, kernel: 3, padding: same}",
        "  - batchnorm",
        "  - relu",
    ]
    lines = ["name: deep", "input: [16, 32, 32]", "layers:"]
    lines += [cycle[i % 3] for i in range(n_layers - 2)]
    lines += ["  - global_avgpool2d", "  - dense: {units: 10, activation: softmax}"]
    return "\n".join(lines) + "\n"


def bench_compile(sizes: tuple[int, ...], runs: int) -> dict[int, list[float]]:
    from netspec import compile_text

    texts = {n: generated_spec(n) for n in sizes}
    for n, text in texts.items():  # warm-up: pydantic builds each validator on first use
        assert len(compile_text(text).nodes) == n
    times: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(runs):
        for n, text in texts.items():
            start = time.perf_counter()
            compile_text(text)
            times[n].append(time.perf_counter() - start)
    return times


def layer_count(spec: Path) -> str:
    """The compiled layer count; a search spec (`{search: ...}` values) does not compile alone."""
    from netspec import compile_file
    from netspec.search import find_search
    from netspec.source import read

    if find_search(read(spec)):
        return "search"
    return str(len(compile_file(spec).nodes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=15, help="runs of each command")
    parser.add_argument("--compile-runs", type=int, default=5, help="runs of each compile")
    args = parser.parse_args()

    specs = sorted((REPO / "specs").glob("*.yaml"))
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.repeats} interleaved runs each; bytecode writing "
        f"{'off' if sys.dont_write_bytecode else 'on'}\n"
    )

    times = bench_summary(specs, args.repeats)
    floor = statistics.median(times["python -c pass"])
    print("| command | layers | median (s) | p90 (s) | median - floor (s) | p90 < 0.5 s |")
    print("|---|---:|---:|---:|---:|:---:|")
    print(f"| `python -c pass` (floor) | | {floor:.3f} | {p90(times['python -c pass']):.3f} | | |")
    for spec in specs:
        t = times[spec.stem]
        median = statistics.median(t)
        ok = "yes" if p90(t) < SUMMARY_TARGET_S else "**no**"
        print(
            f"| `netspec summary specs/{spec.name}` | {layer_count(spec)} | {median:.3f} "
            f"| {p90(t):.3f} | {median - floor:.3f} | {ok} |"
        )

    compile_times = bench_compile(SIZES, args.compile_runs)
    print("\n| generated layers | compile median (ms) | ms per layer | runs |")
    print("|---:|---:|---:|---:|")
    for n, t in compile_times.items():
        median = statistics.median(t)
        target = ""
        if n == 2000:
            target = (
                " (target < 2 s: " + ("met" if median < COMPILE_TARGET_S else "**missed**") + ")"
            )
        print(f"| {n:,} | {median * 1e3:.1f}{target} | {median * 1e3 / n:.3f} | {len(t)} |")


if __name__ == "__main__":
    main()
