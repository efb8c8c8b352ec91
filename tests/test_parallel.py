"""Work a run waits on, spread over threads or forked processes (netspec/data/parallel.py): an
image folder decoded into memory, a streamed split's value range; the same results as one."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, spawned
from PIL import Image

from netspec.data import stream
from netspec.data.cache_choice import pass_workers
from netspec.data.folder import POOL_MIN, list_image_folder
from netspec.data.parallel import forked_map, forking, threaded_map
from netspec.errors import DataError, Problem

# Enough files for the folder's decode to start its threads.
MANY = 3 * POOL_MIN + 7


def _square(v: int) -> int:
    if v == 13:
        raise DataError([Problem(f"item {v} is unlucky", file="f.txt", line=v)])
    return v * v


def test_threaded_map_is_map_in_order_and_stops_at_an_error() -> None:
    items = [v for v in range(40) if v != 13]
    assert list(threaded_map(_square, items, 3)) == [v * v for v in items]
    assert list(threaded_map(_square, items, 1)) == [v * v for v in items]
    started: list[int] = []

    def slow_square(v: int) -> int:
        started.append(v)
        time.sleep(0.001 * (v > 13))  # all 2,000 would take a second
        return _square(v)

    with pytest.raises(DataError, match="item 13 is unlucky"):
        list(threaded_map(slow_square, range(2000), 2))
    assert len(started) < 1000  # what was not started when 13 failed never is


def test_forked_map_is_map_in_order_and_reraises_user_errors() -> None:
    items = [v for v in range(40) if v != 13]
    assert list(forked_map(_square, items, 3)) == [v * v for v in items]
    assert list(forked_map(_square, items, 1)) == [v * v for v in items]
    # A closure: inherited by the forked workers, never pickled.
    offset = 5
    assert list(forked_map(lambda v: v + offset, range(9), 2)) == list(range(5, 14))
    with pytest.raises(DataError) as e:
        list(forked_map(_square, range(20), 2))
    assert e.value.problems[0].message == "item 13 is unlucky"
    assert (e.value.problems[0].file, e.value.problems[0].line) == ("f.txt", 13)


def _frozen_in_a_child() -> int:
    """gc.get_freeze_count() in a child forked now (it exits at once, without cleanup)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, str(gc.get_freeze_count()).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        count = int(f.read())
    os.waitpid(pid, 0)
    return count


def test_workers_forked_by_netspec_collect_none_of_what_they_inherit() -> None:
    """A child forked in `forking()` freezes every object it inherits (its collector then never
    runs an inherited object's destructor); other forks are left as they are."""
    mine = [[i] for i in range(5_000)]  # objects the collector tracks, none of them frozen
    frozen = gc.get_freeze_count()  # conftest froze what collection imported
    assert abs(_frozen_in_a_child() - frozen) < 1000  # as here (a few may be freed meanwhile)
    with forking():
        assert _frozen_in_a_child() >= frozen + len(mine)  # mine too, and all else tracked
    assert abs(_frozen_in_a_child() - frozen) < 1000


HANG = """\
import gc, os, sys, time
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
from netspec.data.parallel import forked_map

value = helper.make_tensor_value_info
graph = helper.make_graph(
    [helper.make_node("Relu", ["x"], ["y"])], "g",
    [value("x", TensorProto.FLOAT, [None, 4])], [value("y", TensorProto.FLOAT, [None, 4])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
options = ort.SessionOptions()
options.intra_op_num_threads = 2  # a thread pool, whose thread waits once the run is done
session = ort.InferenceSession(model.SerializeToString(), options)
session.run(None, {"x": np.ones((64, 4), np.float32)})
held = {"session": session}
held["self"] = held  # a cycle: only the collector frees it
del session
gc.collect(); gc.collect()  # the oldest generation: not collected by the next young ones
del held  # garbage, not collected yet
time.sleep(0.5)  # the pool's thread waits on its condition variable by now


def collect(i):
    gc.collect()  # in the worker: with the garbage inherited, its destructor would hang
    return 2 * i


print(list(forked_map(collect, range(4), workers=2)))
"""


def test_a_forked_worker_does_not_hang_freeing_an_inherited_session(tmp_path: Path) -> None:
    """The hang that `forking()` prevents, as a test suite's worker met it: an onnxruntime
    session dropped but not yet collected when the process forked, freed by a worker's
    collector, waits forever for its thread pool (which the child does not have)."""
    pytest.importorskip("onnxruntime")
    script = tmp_path / "hang.py"
    script.write_text(HANG, encoding="utf-8")
    # In a session of its own: were the workers to hang, they are killed with it.
    out = subprocess.PIPE
    with spawned([sys.executable, script], stdout=out, stderr=out, text=True, cwd=REPO) as proc:
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stdout.strip() == "[0, 2, 4, 6]"


def test_pass_workers_shares_the_cores_among_a_nodes_processes(monkeypatch) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    alone = pass_workers()
    assert 1 <= alone <= 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")
    assert pass_workers() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "two")  # not torchrun's: ignored
    assert pass_workers() == alone


def _folder(root: Path, n: int, bad: tuple[int, ...] = ()) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / ("cat" if i % 2 else "dog") / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i in bad:
            path.write_bytes(b"not a png")
        else:  # sizes vary: each is resized
            size = (8 + i % 5, 6 + i % 3)
            Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), np.uint8)).save(path)
    return root


def test_a_folder_decoded_by_workers_is_the_folder_decoded_by_one(tmp_path: Path) -> None:
    listing = list_image_folder(_folder(tmp_path, MANY), (7, 9), "rgb", None, None)
    one, many = listing.load(workers=1), listing.load(workers=2)
    assert one.x.shape == (MANY, 3, 7, 9) and one.x.dtype == np.uint8
    assert np.array_equal(one.x, many.x) and np.array_equal(one.y, many.y)
    assert one.bit_depth == many.bit_depth == 8
    # The streamed split's raw value range (one more pass over the files) agrees too.
    lazy = stream.Lazy(listing.reader)
    expect = (float(one.x.min()), float(one.x.max()))
    assert stream.value_range(lazy, workers=2) == stream.value_range(lazy, workers=1) == expect


def test_workers_list_every_corrupt_file_in_order(tmp_path: Path) -> None:
    bad = (3, 70, 71, 100, MANY - 1, MANY - 2)  # in several chunks of both classes
    listing = list_image_folder(_folder(tmp_path, MANY, bad), (4, 4), "rgb", None, None)
    errors = []
    for workers in (1, 2):
        with pytest.raises(DataError, match="cannot decode image") as e:
            listing.load(workers=workers)
        errors.append([(Path(p.file).name, p.message) for p in e.value.problems])
    assert errors[0] == errors[1]
    listed = [p.name for p in listing.reader.files if int(p.stem) in bad]  # cat/ before dog/
    assert [name for name, _ in errors[1]] == listed and len(listed) == len(bad)
