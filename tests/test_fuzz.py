"""Fuzzing as a standing guard: generated and mutated specs, and random or truncated data files,
end in success or a NetspecError, never another exception, a hang or runaway memory.

A few examples per test in CI; NETSPEC_FUZZ_EXAMPLES=5000 runs more."""

from __future__ import annotations

import io
import os
import resource
import signal
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from netspec import compile_text
from netspec.data.arrays import load_arrays
from netspec.data.cifar import load_cifar10_dir
from netspec.data.folder import load_image_folder
from netspec.data.idx import parse_idx
from netspec.data.table import load_csv
from netspec.errors import NetspecError
from netspec.layers import KINDS
from netspec.source import parse

EXAMPLES = int(os.environ.get("NETSPEC_FUZZ_EXAMPLES", "25"))
CASE_SECONDS = 5.0  # one case: a hang is a failure
RSS_GROWTH = 512 << 20  # the resident memory one case may leave behind
SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.yaml"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the alarm below bounds each case; hypothesis' deadline flakes on busy CPUs
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=EXAMPLES <= 25,
)


def _rss() -> int:
    """Resident bytes now (not the high-water mark: earlier tests in the process set that)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


class Hang(Exception):
    pass


@contextmanager
def time_box():
    def ring(*_):
        raise Hang

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def survives(fn: Callable[[], object]) -> None:
    """Success or a located NetspecError; anything else (a hang included) fails the test."""
    before = _rss()
    try:
        with time_box():
            fn()
    except NetspecError as err:
        assert err.problems and all(p.message for p in err.problems)
    grown = _rss() - before
    assert grown < RSS_GROWTH, f"resident memory grew by {grown / 2**20:.0f} MB"


# --- specs -----------------------------------------------------------------------------------

_scalars = st.one_of(
    st.integers(-3, 70),
    st.sampled_from(["same", "valid", "relu", "softmax", "$p", "x", ""]),
    st.none(),
    st.booleans(),
    st.floats(-1, 2, allow_nan=False),
    st.lists(st.integers(-1, 5), max_size=3),
)
_args = st.dictionaries(
    st.sampled_from(
        [
            "units",
            "filters",
            "kernel",
            "stride",
            "padding",
            "activation",
            "rate",
            "size",
            "axis",
            "shape",
            "p",
            "to",
        ]
    ),
    _scalars,
    max_size=3,
)
_layer = st.one_of(
    st.sampled_from(sorted(KINDS)),
    st.builds(lambda k, a: {k: a}, st.sampled_from([*sorted(KINDS), "blk", "nope"]), _args),
)


def _item(children):
    meta = st.fixed_dictionaries(
        {},
        optional={
            "repeat": st.integers(-1, 4),
            "name": st.sampled_from(["a", "b", "1x"]),
            "inputs": st.lists(st.sampled_from(["a", "b", "input", "zz"]), max_size=2),
        },
    )
    group = st.builds(lambda ls, m: {"layers": ls, **m}, st.lists(children, max_size=3), meta)
    layer = st.builds(lambda ly, m: {**ly, **m} if isinstance(ly, dict) else ly, _layer, meta)
    return st.one_of(layer, group)


_items = st.recursive(_layer, lambda c: _item(c), max_leaves=8)
_spec = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["net", "bad name"]),
        "input": st.lists(st.integers(-1, 12), max_size=4),
        "layers": st.lists(_items, max_size=6),
    },
    optional={
        "blocks": st.fixed_dictionaries(
            {
                "blk": st.fixed_dictionaries(
                    {"layers": st.lists(_items, max_size=3)},
                    optional={"params": st.dictionaries(st.sampled_from(["p", "q"]), _scalars)},
                )
            }
        ),
        "train": st.fixed_dictionaries(
            {"data": st.fixed_dictionaries({"source": st.sampled_from(["builtin", "csv", "x"])})},
            optional={
                "batch_size": st.integers(-1, 64),
                "optimizer": st.sampled_from(["adam", "sgd", "z"]),
            },
        ),
    },
)


@FUZZ
@given(_spec)
def test_generated_specs_compile_or_fail_located(spec: dict) -> None:
    survives(lambda: compile_text(yaml.safe_dump(spec, sort_keys=False), "fuzz.yaml"))


@FUZZ
@given(
    st.sampled_from(SPECS),
    st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=0, max_size=4)), min_size=1, max_size=4),
)
def test_mutated_shipped_specs_compile_or_fail_located(path: Path, edits: list) -> None:
    data = bytearray(path.read_bytes())
    for where, new in edits:
        i = int(where * len(data))
        data[i : i + len(new) or i + 1] = new
    text = data.decode("utf-8", errors="replace")
    survives(lambda: compile_text(text, "fuzz.yaml"))
    survives(lambda: parse(text))


# --- data loaders ----------------------------------------------------------------------------


def _cut(data: bytes, keep: float, noise: bytes) -> bytes:
    return data[: int(keep * len(data))] + noise


def _valid_image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(buf, format=fmt)
    return buf.getvalue()


_cuts = st.tuples(st.floats(0, 1), st.binary(max_size=16))


@FUZZ
@given(_cuts, st.binary(max_size=64))
def test_idx_bytes(cut: tuple, raw: bytes) -> None:
    valid = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
    survives(lambda: parse_idx(_cut(valid, *cut), "f.idx"))
    survives(lambda: parse_idx(raw, "f.idx"))


@FUZZ
@given(st.text(alphabet='ab,1.5-\n"?x\r ', max_size=80), _cuts)
def test_csv_text(tmp_path_factory, text: str, cut: tuple) -> None:
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    path.write_bytes(_cut(("a,b\n1,2\n3,4\n" + text).encode(), *cut))
    survives(lambda: load_csv(path, target="b"))


@FUZZ
@given(_cuts, st.sampled_from(["first", "last"]))
def test_npz_bytes(tmp_path_factory, cut: tuple, channels: str) -> None:
    path = tmp_path_factory.mktemp("npz") / "a.npz"
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((4, 1, 2, 2), np.float32), y=np.arange(4))
    path.write_bytes(_cut(buf.getvalue(), *cut))
    survives(lambda: load_arrays(path, channels=channels))


@FUZZ
@given(_cuts, st.binary(max_size=64))
def test_cifar_batch_bytes(tmp_path_factory, cut: tuple, raw: bytes) -> None:
    import pickle

    root = tmp_path_factory.mktemp("cifar")
    meta = {b"label_names": [b"cat", b"dog"]}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    for data in (_cut(pickle.dumps(batch, protocol=2), *cut), raw):
        (root / "test_batch").write_bytes(data)
        survives(lambda: load_cifar10_dir(root, split="test"))


@FUZZ
@given(st.sampled_from(["PNG", "JPEG", "TIFF"]), _cuts)
def test_image_bytes(tmp_path_factory, fmt: str, cut: tuple) -> None:
    root = tmp_path_factory.mktemp("img")
    for cls in ("a", "b"):
        (root / cls).mkdir()
        (root / cls / f"ok.{fmt.lower()}").write_bytes(_valid_image(fmt))
    (root / "a" / f"bad.{fmt.lower()}").write_bytes(_cut(_valid_image(fmt), *cut))
    survives(lambda: load_image_folder(root, size=(4, 4)))


# --- crashes the fuzzer found ------------------------------------------------------------------


def test_truncated_npz_is_a_data_error_and_leaves_no_file_open(tmp_path: Path) -> None:
    # np.load left the file open on a corrupt zip: a ResourceWarning (an error under pytest).
    path = tmp_path / "a.npz"
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((4, 1, 2, 2), np.float32), y=np.arange(4))
    path.write_bytes(buf.getvalue()[:40])
    with pytest.raises(NetspecError, match=r"corrupt .npz archive"):
        load_arrays(path)
