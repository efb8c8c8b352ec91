"""How much faster is an image folder decoded in parallel than by one thread, at a run's start?

Two passes a run waits on before its first step, each timed with one thread (the plain
alternative: what netspec did before) and with the default (every core, `pass_workers`):

- `load`: the in-memory path (cache ram, and auto when the data fit) decodes every image of the
  folder into one array (`list_image_folder(...).load(workers=...)`, threads: Pillow decodes and
  resizes without the GIL); the arrays are checked equal, byte for byte;
- `range`: a streamed run (cache none) records the training split's raw value range, one more
  decode of every image (`netspec.data.stream.value_range` over the folder's `Lazy`, forked
  processes, each sending back two numbers a chunk).

The folder is built in a temporary directory from the shared cats and dogs photos
(../shared/data/cats_dogs, 200 JPEGs of about 500x375): `--n` files, copies of the photos at
their own size (nothing is resized, downloaded or committed), resized to `--size` when decoded,
as `size:` in a spec. Rounds are interleaved (the order of the two contenders alternates) and
the medians and their ratio are printed.

    python benchmarks/bench_folder_load.py                 # 2,000 photos at 150x150, 3 rounds
    python benchmarks/bench_folder_load.py --n 400 --rounds 1   # a look
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from netspec.data import stream
from netspec.data.cache_choice import pass_workers
from netspec.data.folder import list_image_folder

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "cats_dogs"


def build(root: Path, n: int) -> None:
    """n copies of the shared photos under root/cat and root/dog, classes alternating."""
    photos = sorted(p for p in PHOTOS.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    kinds = [[p for p in photos if p.name.lower().startswith(k)] for k in ("cat", "dog")]
    if not all(kinds):
        sys.exit(f"no cat and dog photos in {PHOTOS}")
    for i in range(n):
        cls, pool = ("cat", kinds[0]) if i % 2 == 0 else ("dog", kinds[1])
        (root / cls).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pool[(i // 2) % len(pool)], root / cls / f"{i:06d}.jpg")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="photos in the folder")
    ap.add_argument("--size", type=int, nargs=2, default=[150, 150], help="decoded size (h w)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    workers = pass_workers()
    if workers < 2:
        sys.exit("one usable core: the workers would be the plain path")
    tmp = Path(tempfile.mkdtemp(prefix="bench_folder_load_"))
    try:
        build(tmp, args.n)
        listing = list_image_folder(tmp, tuple(args.size), "rgb", None, None)
        lazy = stream.Lazy(listing.reader)
        times: dict[tuple[str, int], list[float]] = {}
        arrays: dict[int, np.ndarray] = {}
        ranges: dict[int, object] = {}
        for r in range(args.rounds):
            order = (1, workers) if r % 2 == 0 else (workers, 1)
            for w in order:
                t = time.perf_counter()
                arrays[w] = listing.load(workers=w).x
                times.setdefault(("load", w), []).append(time.perf_counter() - t)
                t = time.perf_counter()
                ranges[w] = stream.value_range(lazy, workers=w)
                times.setdefault(("range", w), []).append(time.perf_counter() - t)
        assert np.array_equal(arrays[1], arrays[workers]), "the workers decoded other pixels"
        assert ranges[1] == ranges[workers], (ranges[1], ranges[workers])
        print(f"{args.n} photos decoded to {args.size[0]}x{args.size[1]}, {args.rounds} rounds")
        for what in ("load", "range"):
            one = statistics.median(times[(what, 1)])
            many = statistics.median(times[(what, workers)])
            print(
                f"{what:>5}: alone {one:6.2f} s, {workers} workers {many:6.2f} s "
                f"({one / many:.2f}x; {args.n / many:,.0f} images/s)"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
