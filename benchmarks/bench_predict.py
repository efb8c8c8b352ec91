"""How fast does `netspec predict` start? Prints one markdown table.

Wall time of a new process, interleaved (round-robin, order rotated each round, after one
uncounted warm-up each), median and p90 of:

  - `python -c pass`, the interpreter floor;
  - a plain onnxruntime script of ten lines doing what predict does for the quickstart model
    (load a .npy batch, rescale by 1/16, run, print the top class and its score);
  - `netspec predict MODEL X.npy --top-k 1`, the same work through the CLI.

Target: netspec predict within 1.2x of the plain script. The model is the quickstart run's
model.onnx: pass one with --model, or the script trains specs/quickstart.yaml for one epoch
and exports it into a temporary folder (about 20 s, not timed).

    python benchmarks/bench_predict.py [--repeats 21] [--model RUN/model.onnx]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.2

PLAIN = """\
import sys
import numpy as np
import onnxruntime as ort

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2]).astype(np.float32) * 0.0625
(scores,) = session.run(None, {session.get_inputs()[0].name: x})
for i, row in enumerate(scores):
    k = int(row.argmax())
    print(("\\n" if i else "") + f"{sys.argv[2]}[{i}]\\n{k} (score = {row[k]:.5f})")
"""


def netspec_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m netspec`."""
    script = Path(sys.executable).with_name("netspec")
    return [str(script)] if script.exists() else [sys.executable, "-m", "netspec"]


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def p90(values: list[float]) -> float:
    """The nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, -(-9 * len(ordered) // 10) - 1)]


def quickstart_model(folder: Path) -> Path:
    """specs/quickstart.yaml trained for one epoch and exported (the real metadata)."""
    run = folder / "run"
    train = [*netspec_command(), "train", str(REPO / "specs" / "quickstart.yaml"), "--out"]
    subprocess.run(
        [*train, str(run), "--set", "train.epochs=1", "--no-progress"],
        check=True,
        capture_output=True,
    )
    subprocess.run([*netspec_command(), "export", str(run)], check=True, stdout=subprocess.DEVNULL)
    return run / "model.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=21, help="runs of each command")
    parser.add_argument("--model", type=Path, help="the quickstart run's model.onnx")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model or quickstart_model(folder)
        from sklearn.datasets import load_digits

        np.save(folder / "x.npy", load_digits().images[:2, None].astype(np.float32))
        (folder / "plain.py").write_text(PLAIN, encoding="utf-8")
        x = str(folder / "x.npy")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "plain onnxruntime script": [sys.executable, str(folder / "plain.py"), str(model), x],
            "netspec predict": [*netspec_command(), "predict", str(model), x, "--top-k", "1"],
        }
        outputs = {
            name: subprocess.run(c, check=True, capture_output=True, text=True).stdout
            for name, c in commands.items()
        }
        if outputs["plain onnxruntime script"] != outputs["netspec predict"]:
            raise SystemExit("the plain script and netspec predict print different results")
        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                times[name].append(wall_time(commands[name]))

    plain = statistics.median(times["plain onnxruntime script"])
    print(
        f"python {platform.python_version()} on {platform.machine()}; "
        f"{args.repeats} interleaved runs each\n"
    )
    print("| command | median (s) | p90 (s) | median / plain script |")
    print("|---|---:|---:|---:|")
    for name, t in times.items():
        print(
            f"| {name} | {statistics.median(t):.3f} | {p90(t):.3f} | {statistics.median(t) / plain:.2f} |"
        )
    ratios = [n / p for n, p in zip(times["netspec predict"], times["plain onnxruntime script"])]
    ratio = statistics.median(times["netspec predict"]) / plain
    print(
        f"\nnetspec predict / plain script: {ratio:.2f} (median of the per-round ratios "
        f"{statistics.median(ratios):.2f}); target <= {TARGET}: {'met' if ratio <= TARGET else '**missed**'}"
    )


if __name__ == "__main__":
    main()
