"""Does streaming keep `netspec train`'s memory flat in the data's size, at in-memory speed?

The benchmark builds its own image folder in a temporary directory: `--n` JPEG files (largest
size first; smaller sizes use a prefix of it), resampled copies of the shared cats and dogs
photos (../shared/data/cats_dogs: a random crop, scale and flip of each, 160x160, quality 90),
in two classes. Nothing is downloaded or committed. With `--masks`, a mask folder instead:
generated shapes scenes (netspec.data.shape_scenes, 128x128 PNG images and class masks, 200
and 2,000 by default), trained on one random 64x64 tile of each scene per epoch by a small
fully convolutional net, 40 validation scenes cut into tiles: the streamed masks and tiles.

For each size and each `train.data.cache` (ram, disk, none), `netspec train` runs as a
subprocess (a small CNN at 64x64, 2 epochs, batch 32, 600 validation images at every size so
that the evaluation's batches weigh the same, `--device cpu`), interleaved: the cache
modes rotate each round, and the disk cache is emptied before each disk run so its first epoch
writes it and its second reads it. Measured from outside the process, by reading /proc:

- peak anonymous memory (RssAnon, sampled every 0.1 s, the largest process of the tree): what
  the processes allocated, without the pages of files they map (the disk cache's and .npy
  pages are page cache, counted in RSS but reclaimed by the kernel at will); and its peak
  summed over the tree (a forked worker's pages shared with its parent counted in both);
- peak RSS: the training process's VmHWM (its own high-water mark, read just before it exits,
  via a parent that waits on it: resource.getrusage(RUSAGE_CHILDREN).ru_maxrss) and the peak of
  the whole process tree's PSS (workers included, shared pages divided among their sharers;
  that measuring parent left out), sampled every 0.1 s;
- throughput: each epoch's `samples_per_s` from the run's metrics.json (the decode hides behind
  the step when epoch 1 of `none` is near `ram`'s), and the wall time of the whole command.

- with `--nproc N`: one more contender in the rotation, `netspec train --nproc N` with
  `--nproc-cache` (default none: each rank decodes only its shard), against the one-process run
  of the same cache on the same folder; its memory is the peak of the sum over every process of
  the run (the launcher, the ranks and their workers: anonymous memory and PSS, sampled), and
  its epochs' times and samples/s are the whole run's (rank 0's clock, every rank's samples).

Reported: medians over the rounds, and the ratios none/ram and disk/ram (throughput),
size_large/size_small (peak RSS) and N processes / one (time per epoch, summed memory). On a
busy machine the throughput ratios are noisy: see the spread printed beside them.

    python benchmarks/bench_stream.py --n 2000 20000 --nproc 2   # the issue's sizes (~30 min)
    python benchmarks/bench_stream.py --quick --nproc 2          # a look (~1 min on 2 idle cores)
    python benchmarks/bench_stream.py --masks --rounds 2         # mask folder, 200 / 2,000 scenes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "cats_dogs"
MODES = ("ram", "disk", "none")
VAL = 600
SEG_VAL = 40  # validation scenes of --masks (4 tiles each)
QUICK = {"n": [300, 900], "rounds": 1, "val": 100, "workers": 1}

# The training settings both benchmark specs share, after their data line.
TRAINING = """\
  preprocess: {{rescale: 1/255}}
  batch_size: 32
  epochs: 2
  seed: 0
  callbacks: {{checkpoint: {{last: false}}}}
  log: {{pictures: false}}
"""
SPEC = (
    """\
name: bench_stream
input: [3, 64, 64]
layers:
  - conv2d: {{filters: 16, kernel: 3, activation: relu}}
  - maxpool2d: {{size: 2}}
  - conv2d: {{filters: 32, kernel: 3, activation: relu}}
  - maxpool2d: {{size: 2}}
  - global_avgpool2d
  - dense: {{units: 2, activation: softmax}}
train:
  data: {{source: folder, path: {path}, size: [64, 64], val: {val}, cache: {cache},
          workers: {workers}}}
"""
    + TRAINING
)


def build_folder(root: Path, n: int, seed: int = 0) -> None:
    """n resampled JPEG copies of the shared photos under root/cat and root/dog."""
    photos = sorted(p for p in PHOTOS.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    kinds = [[p for p in photos if p.name.lower().startswith(k)] for k in ("cat", "dog")]
    if not all(kinds):
        sys.exit(f"no cat and dog photos in {PHOTOS}")
    rng = np.random.default_rng(seed)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cls, pool = ("cat", kinds[0]) if i % 2 == 0 else ("dog", kinds[1])  # classes alternate
        src = pool[(i // 2) % len(pool)]
        with Image.open(src) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = rng.uniform(0.6, 1.0)
            cw, ch = max(8, int(w * s)), max(8, int(h * s))
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            im = im.crop((left, top, left + cw, top + ch)).resize((160, 160))
            if rng.random() < 0.5:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            im.save(root / cls / f"{i:06d}.jpg", quality=90)


SEG_SPEC = (
    """\
name: bench_stream_masks
input: [3, 64, 64]
layers:
  - conv2d: {{filters: 8, kernel: 3, padding: same, activation: relu}}
  - conv2d: {{filters: 8, kernel: 3, padding: same, activation: relu}}
  - conv2d: {{filters: 4, kernel: 1, activation: softmax}}
train:
  data: {{source: mask_folder, path: {path}, val: {val}, cache: {cache}, workers: {workers},
          tiles_per_scene: 1}}
"""
    + TRAINING
)
SCENE = (128, 128)  # scenes of 128x128, one random 64x64 training tile of each per epoch


def build_mask_folder(root: Path, n: int, seed: int = 0) -> None:
    """n generated shapes scenes (netspec.data.shape_scenes) as PNG images and class masks
    under root/images and root/masks, made 200 at a time."""
    from netspec.data.shape_scenes import make_shapes

    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for start in range(0, n, 200):
        part = make_shapes(min(200, n - start), SCENE, 3, seed + start)
        for j, (x, y) in enumerate(zip(part.x, part.y)):
            name = f"{start + j:06d}.png"
            Image.fromarray(x.transpose(1, 2, 0)).save(root / "images" / name)
            Image.fromarray(y.astype(np.uint8)).save(root / "masks" / name)


def subset(full: Path, n: int, dest: Path) -> Path:
    """A folder of the first n images of `full` (symlinks: no second copy); of a mask folder,
    the first n scenes and their masks."""
    if (full / "masks").is_dir():
        files = [f for sub in ("images", "masks") for f in sorted((full / sub).iterdir())[:n]]
    else:  # both classes, alternating
        files = sorted(full.rglob("*.jpg"), key=lambda f: f.name)[:n]
    for f in files:
        (dest / f.parent.name).mkdir(parents=True, exist_ok=True)
        (dest / f.parent.name / f.name).symlink_to(f)
    return dest


def _tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _field(path: str, name: str) -> int:
    """A `Name:  N kB` field of a /proc file, in bytes (0 when the process is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss(pid: int) -> int:
    return _field(f"/proc/{pid}/smaps_rollup", "Pss:")


def _anon(pid: int) -> int:
    """Anonymous resident memory: what the process allocated, without the pages of files it
    maps (a memory-mapped cache's pages are page cache, which the kernel reclaims at will)."""
    return _field(f"/proc/{pid}/status", "RssAnon:")


SLOW_EVERY = 5  # samples (of 0.1 s) between walks of the process tree and PSS reads

# A parent of its own per run: RUSAGE_CHILDREN's maxrss is then this run's alone.
_WRAP = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(r.returncode)"
)


def run_once(spec: Path, out: Path, env: dict[str, str], nproc: int = 1) -> dict[str, float]:
    cmd = [sys.executable, "-c", _WRAP, sys.executable, "-m", "netspec", "train", str(spec)]
    cmd += ["--out", str(out), "--device", "cpu", "--no-progress", "--force"]
    cmd += ["--nproc", str(nproc)] if nproc > 1 else []
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True
    )
    peak = anon = anon_sum = 0
    stop = threading.Event()

    def sample() -> None:
        # Cheap on purpose: on 2 cores a streamed run keeps both busy, and a sampler walking
        # /proc and smaps every 0.1 s (about 9 ms of CPU each time) slowed it alone, by about
        # 10%, while the in-memory run left it a core. The tree and PSS (smaps_rollup, the
        # costly read) every 0.5 s, RssAnon (status, cheap) every 0.1 s.
        nonlocal peak, anon, anon_sum
        tick, tree = 0, []
        while not stop.wait(0.1):
            if tick % SLOW_EVERY == 0:
                tree = _tree(proc.pid)[1:]  # not the measuring parent (_WRAP)
                peak = max(peak, sum(_pss(p) for p in tree))
            tick += 1
            each = [_anon(p) for p in tree]
            anon = max(anon, max(each, default=0))
            anon_sum = max(anon_sum, sum(each))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    stop.set()
    sampler.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"netspec train failed:\n{err[-3000:]}")
    maxrss = int(err.strip().splitlines()[-1]) * 1024
    hist = json.loads((out / "metrics.json").read_text())["history"]
    return {
        "rss_mb": maxrss / 2**20,
        "tree_pss_mb": peak / 2**20,
        "anon_mb": anon / 2**20,
        "anon_sum_mb": anon_sum / 2**20,
        "epoch1_sps": hist[0]["samples_per_s"],
        "epoch2_sps": hist[-1]["samples_per_s"],
        "epoch1_s": hist[0]["time_s"],
        "epoch2_s": hist[-1]["time_s"],
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--n",
        type=int,
        nargs=2,
        default=None,
        help="two folder sizes (2000 20000; --masks: 200 2000)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    ap.add_argument("--workers", type=int, default=None, help="train.data.workers")
    ap.add_argument("--keep", type=Path, default=None, help="build (or reuse) the folder here")
    ap.add_argument(
        "--nproc", type=int, default=1, help="also time `--nproc N` (sharded reading), N > 1"
    )
    ap.add_argument(
        "--nproc-cache", choices=MODES, default="none", help="the --nproc run's cache (none)"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"a look: {QUICK['n'][0]} and {QUICK['n'][1]} images, {QUICK['val']} validation "
        f"images, 1 round, 1 worker",
    )
    ap.add_argument(
        "--masks",
        action="store_true",
        help="a mask folder of generated shapes scenes instead (PNG images and masks, 128x128, "
        f"random 64x64 tiles; default --n 200 2000, {SEG_VAL} validation scenes)",
    )
    args = ap.parse_args(argv)
    val_n = SEG_VAL if args.masks else VAL
    args.n = args.n or ([200, 2000] if args.masks else [2000, 20000])
    if args.quick:
        args.n, args.rounds, args.workers, val_n = (
            QUICK["n"], QUICK["rounds"], QUICK["workers"], QUICK["val"],
        )  # fmt: skip
    small, large = sorted(args.n)
    # The contenders, rotated each round: (cache, processes).
    contenders = [(m, 1) for m in MODES] + ([(args.nproc_cache, args.nproc)] * (args.nproc > 1))
    tmp = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    try:
        full = args.keep or tmp / "full"
        build, built = (build_mask_folder, "masks") if args.masks else (build_folder, "cat")
        if not (full / built).is_dir():
            t0 = time.perf_counter()
            build(full, large)
            print(f"built {large} samples in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        folders = {large: full, small: subset(full, small, tmp / f"n{small}")}
        env = {**os.environ, "NETSPEC_CACHE_DIR": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
        workers = "null" if args.workers is None else str(args.workers)
        results: dict[tuple[int, str], list[dict[str, float]]] = {}
        for r in range(args.rounds):
            for size in (small, large):
                k = r % len(contenders)
                for mode, nproc in contenders[k:] + contenders[:k]:
                    name = mode if nproc == 1 else f"{mode}x{nproc}"
                    spec = tmp / f"{name}_{size}.yaml"
                    # val_n validation samples at every size: the evaluation's batches (up to
                    # 512) and their activations are then the same, and only the data grow.
                    val = round(val_n / size, 6)
                    form = SEG_SPEC if args.masks else SPEC
                    text = form.format(path=folders[size], val=val, cache=mode, workers=workers)
                    spec.write_text(text)
                    shutil.rmtree(tmp / "cache", ignore_errors=True)
                    row = run_once(
                        spec, tmp / f"run_{name}_{size}_{r}", env, nproc
                    )  # new each round
                    results.setdefault((size, name), []).append(row)
                    print(f"round {r + 1} n={size} {name}: {row}", file=sys.stderr)
        report(results, small, large, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def report(results: dict, small: int, large: int, args: argparse.Namespace) -> None:
    print(f"\nbench_stream: {args.rounds} rounds, workers {args.workers or 'default'}, "
          f"{os.cpu_count()} CPUs; medians\n")  # fmt: skip
    keys = ("rss_mb", "anon_mb", "anon_sum_mb", "tree_pss_mb", "epoch1_sps", "epoch2_sps")
    keys += ("epoch1_s", "epoch2_s", "wall_s")
    print(f"{'n':>6} {'cache':<7} " + " ".join(f"{k:>12}" for k in keys))
    for (size, mode), rows in sorted(results.items()):
        print(f"{size:>6} {mode:<7} " + " ".join(f"{_med(rows, k):>12.1f}" for k in keys))
    print()
    for mode in MODES:
        for k in ("rss_mb", "anon_mb"):
            growth = _med(results[large, mode], k) / _med(results[small, mode], k)
            print(f"peak {k[:-3]:<4} {mode:<4} n={large} / n={small}: {growth:.2f}x")
    for size in (small, large):
        ram = results[size, "ram"]
        for mode in ("none", "disk"):
            for k in ("epoch1_sps", "epoch2_sps"):
                _ratio(f"n={size} {mode}/ram {k}", results[size, mode], ram, k)
    if args.nproc > 1:  # N processes against one, the same cache and folder
        many = f"{args.nproc_cache}x{args.nproc}"
        for size in (small, large):
            one = results[size, args.nproc_cache]
            for k in ("epoch1_s", "epoch2_s", "anon_sum_mb", "tree_pss_mb"):
                _ratio(f"n={size} {many}/{args.nproc_cache} {k}", results[size, many], one, k)


def _ratio(label: str, rows: list[dict[str, float]], base: list[dict[str, float]], k: str) -> None:
    """The median and spread of rows[k] / base[k], round by round (interleaved pairs)."""
    ratios = [a[k] / b[k] for a, b in zip(rows, base)]
    print(f"{label}: {statistics.median(ratios):.2f} ({min(ratios):.2f}..{max(ratios):.2f})")


if __name__ == "__main__":
    sys.exit(main())
