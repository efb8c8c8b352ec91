"""--device on every command that takes one (train, evaluate, bench): one spelling rule, CUDA
checked against the machine, exit 2 and the accepted values instead of torch's traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import REPO, fails, invoke

from netspec.backends.training.device import check_device, pick_device
from netspec.errors import NetspecError

TINY = REPO / "specs" / "quickstart.yaml"

pytestmark = pytest.mark.usefixtures("no_plots")


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.mark.parametrize("device", ["tpu", "mps", "gpu", "cuda:", "cuda:-1", "CPU", "cuda:0x"])
def test_train_refuses_an_unknown_device_before_reading_data(tmp_path: Path, device: str) -> None:
    out = tmp_path / "run"
    fails(
        invoke("train", TINY, "--out", out, "--device", device),
        f"--device {device}: expected auto, cpu, cuda or cuda:N",
    )
    assert not out.exists()


def test_evaluate_refuses_an_unknown_device(quickstart_run: Path) -> None:
    fails(
        invoke("evaluate", quickstart_run, "--device", "tpu"),
        "--device tpu: expected auto, cpu, cuda or cuda:N",
    )


def test_bench_uses_the_same_rule_without_cuda_n(quickstart_run: Path) -> None:
    fails(invoke("bench", quickstart_run, "--device", "mps"), "--device mps: expected auto, cpu")
    # onnxruntime runs on the default CUDA device: bench cannot honour an index.
    fails(
        invoke("bench", quickstart_run, "--device", "cuda:1"),
        "--device cuda:1: expected auto, cpu or cuda",
    )


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_absent(tmp_path: Path, no_cuda: None, device: str) -> None:
    out = tmp_path / "run"
    fails(
        invoke("train", TINY, "--out", out, "--device", device),
        f"--device {device}: no CUDA device is available",
        "use --device cpu",
    )
    assert not out.exists()


def test_cuda_index_checked_against_the_device_count(tmp_path: Path, two_gpus: None) -> None:
    assert pick_device("cuda:1") == torch.device("cuda:1")
    assert pick_device("cuda") == torch.device("cuda")
    assert pick_device("auto") == torch.device("cuda")
    with pytest.raises(NetspecError, match=r"cuda:2: this machine has 2 CUDA devices \(cuda:0 to"):
        pick_device("cuda:2")
    fails(
        invoke("train", TINY, "--out", tmp_path / "run", "--device", "cuda:7"),
        "--device cuda:7: this machine has 2 CUDA devices (cuda:0 to cuda:1)",
        "below 2",
    )


def test_auto_and_cpu_without_cuda(no_cuda: None) -> None:
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    assert check_device("cuda:3") == 3
    assert check_device("cuda") is None
