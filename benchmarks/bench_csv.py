"""How fast is a CSV table read? load_csv (the in-memory table) and stream_csv's first pass
(`train.data.cache` disk and none), in rows/s, against two C floors on the same file: the csv
module splitting it into rows (`list(csv.reader(f))`, no cell read) and `np.loadtxt` reading
its numeric columns.

The benchmark writes its own table in a temporary folder (nothing is committed): `--rows` rows
(default 400,000) of 8 numeric features (5 decimals), a text feature (4 colours) and an integer
class (3 classes), about 73 bytes a row (29 MB at 400,000). Each measurement is one Python
process (imports not timed; the disk cache emptied before each), interleaved: every round runs
each contender once, in an order that rotates. Reported: the medians over `--rounds` of wall
time, CPU time (the process's own; steadier on a busy machine), rows/s of the wall time, and
the process's peak RSS above what it held before the read (numpy and netspec imported).

`--before DIR` also times, in the same rounds, an older netspec source tree: its load_csv and
first passes (`git archive d898c0c netspec | tar -x -C DIR` for the per-cell pass; 19e204b for
load_csv reading the whole file's rows before its chunked pass).

    python benchmarks/bench_csv.py                            # 400,000 rows, 3 rounds (~2 min)
    python benchmarks/bench_csv.py --before /tmp/old --rounds 3   # with the per-cell pass (~6 min)
    python benchmarks/bench_csv.py --quick                    # 50,000 rows, 1 round

Measured 2026-12-07 (`--before` d898c0c, 3 rounds, a 2-core machine shared with other jobs,
load 3.3-4.1), 400,000 rows, wall / CPU s: load_csv 4.01 / 2.47 (before 9.11 / 7.60), first
pass disk 2.24 / 2.07 (before 6.70 / 6.23), none 2.49 / 2.02 (before 6.41 / 6.02): 3.0-3.1x in
CPU time; csv module 1.30 / 0.90, np.loadtxt (8 numeric columns) 0.95 / 0.65. Later that day
(`--before` 19e204b, an idle machine): load_csv reading a block at a time 1.97 s and 107 MB
of peak RSS over its start, against 2.48 s and 376 MB reading the whole file's rows first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FEATURES = 8

# One measurement, in a fresh process: argv = contender, csv path, cache folder, source tree.
_MEASURE = """
import json, sys, time
kind, path, cache, tree = sys.argv[1:5]
if tree:
    sys.path.insert(0, tree)  # ahead of the working tree and the editable install
import os
os.environ["NETSPEC_CACHE_DIR"] = cache
import csv
import numpy as np
from netspec.data.table import load_csv
from netspec.data.table_stream import stream_csv
jobs = {
    "load_csv": lambda: load_csv(path, target="label"),
    "stream disk": lambda: stream_csv(path, target="label", cache="disk"),
    "stream none": lambda: stream_csv(path, target="label", cache="none"),
    "csv module": lambda: list(csv.reader(open(path, newline=""))),
    "np.loadtxt": lambda: np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(8)),
}
import resource
def rss():  # the peak resident set so far, MB (Linux: KB)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = rss()
wall, cpu = time.perf_counter(), time.process_time()
jobs[kind]()
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"wall": wall, "cpu": cpu, "peak_mb": rss() - base}))
"""
CONTENDERS = ("load_csv", "stream disk", "stream none", "csv module", "np.loadtxt")
BEFORE = ("load_csv", "stream disk", "stream none")


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    """Numeric features near their row's class, a colour, the class."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, rows)
    x = rng.normal(label[:, None], 1.0, (rows, FEATURES))
    colours = np.array(["red", "green", "blue", "amber"])[rng.integers(0, 4, rows)]
    with path.open("w") as f:
        f.write(",".join([f"f{i}" for i in range(FEATURES)] + ["colour", "label"]) + "\n")
        for start in range(0, rows, 10_000):
            stop = min(start + 10_000, rows)
            f.writelines(
                ",".join(f"{v:.5f}" for v in x[i]) + f",{colours[i]},{label[i]}\n"
                for i in range(start, stop)
            )


def measure(kind: str, path: Path, cache: Path, tree: str) -> dict[str, float]:
    for old in cache.glob("*"):
        old.unlink()
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, kind, str(path), str(cache), tree],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", help="a netspec source tree to time too")
    parser.add_argument("--quick", action="store_true", help="50,000 rows, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.rounds = 50_000, 1
    runs: list[tuple[str, str]] = [(kind, "") for kind in CONTENDERS]
    if args.before:
        tree = str(Path(args.before).resolve())
        runs += [(kind, tree) for kind in BEFORE]
    results: dict[tuple[str, str], list[dict[str, float]]] = {run: [] for run in runs}
    with tempfile.TemporaryDirectory() as tmp:
        path, cache = Path(tmp) / "table.csv", Path(tmp) / "cache"
        cache.mkdir()
        write_table(path, args.rows)
        size = path.stat().st_size
        print(f"{args.rows:,} rows x 10 columns, {size / 1e6:.1f} MB; {args.rounds} rounds")
        for r in range(args.rounds):
            order = runs[r % len(runs) :] + runs[: r % len(runs)]
            for kind, tree in order:
                results[(kind, tree)].append(measure(kind, path, cache, tree))
                print(".", end="", flush=True)
        print()
    med = {run: statistics.median(r["wall"] for r in rows) for run, rows in results.items()}
    split = med[("csv module", "")]
    print(
        "| reader | wall s | CPU s | rows/s | csv module's time / this | speed-up over before "
        "| peak MB over start |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (kind, tree), rows in results.items():
        cpu = statistics.median(r["cpu"] for r in rows)
        old = [med[run] for run in med if run[0] == kind and run[1]]
        up = f"{old[0] / med[(kind, tree)]:.1f}x" if old and not tree else ""
        label = f"{kind} (before)" if tree else kind
        wall = med[(kind, tree)]
        peak = statistics.median(r["peak_mb"] for r in rows)
        print(
            f"| {label} | {wall:.2f} | {cpu:.2f} | {args.rows / wall:,.0f} "
            f"| {split / wall:.2f} | {up} | {peak:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
