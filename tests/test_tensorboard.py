"""`train.log.tensorboard`: event files with every epoch's scalars, the graph and prediction images."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import fails, invoke, make_trainer, tiny_spec

pytest.importorskip("torch")
pytest.importorskip("tensorboard")

from netspec.backends.training.tensorboard_log import scalar_tags

if TYPE_CHECKING:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.usefixtures("no_plots")

TINY = tiny_spec(limit=120, seed=None, log="{tensorboard: true}")


def _events(run: Path) -> EventAccumulator:
    # imported here, not at collection, which every xdist worker does for every file
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(
        str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0}
    )
    ea.Reload()
    return ea


def test_every_epoch_is_logged(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, TINY)
    result = t.fit()
    ea = _events(t.run_dir)
    tags = ea.Tags()
    assert set(tags["scalars"]) == {
        "loss/train",
        "loss/val",
        "accuracy/train",
        "accuracy/val",
        "lr",
        "time/epoch_s",
        "time/samples_per_s",
        "loss/test",
        "accuracy/test",
    }
    for tag, key in (("loss/train", "loss"), ("accuracy/val", "val_accuracy"), ("lr", "lr")):
        events = ea.Scalars(tag)
        assert [e.step for e in events] == [1, 2]
        assert [e.value for e in events] == pytest.approx([r[key] for r in result["history"]])
    assert tags["graph"]  # the traced network
    images = ea.Images("predictions")
    assert [im.step for im in images] == [1, 2]
    assert images[-1].width > 400 and images[-1].height > 100  # 8 labelled samples in a row
    assert not any("graph not written" in line for line in t.logs)
    for key in ("loss", "accuracy"):  # the test split's scores, at the last epoch
        (event,) = ea.Scalars(f"{key}/test")
        assert event.step == 2 and event.value == pytest.approx(result["test"][key])


def test_the_spec_and_the_train_section_as_hparams_are_logged(tmp_path: Path) -> None:
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    t = make_trainer(tmp_path, TINY.replace("epochs: 2", "epochs: 1"))
    t.fit()
    ea = _events(t.run_dir)
    (text,) = ea.Tensors("spec/text_summary")
    shown = text.tensor_proto.string_val[0].decode()
    assert shown == "\n".join("    " + line for line in t.spec_text.splitlines())
    content = ea.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    values = start.session_start_info.hparams
    assert values["epochs"].number_value == 1
    assert values["batch_size"].number_value == t.spec.batch_size
    assert values["optimizer.name"].string_value == t.spec.optimizer.name
    assert values["log.tensorboard"].number_value == 1  # torch writes a bool as a number
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"loss/test", "accuracy/test"}


def test_off_by_default(tmp_path: Path) -> None:
    t = make_trainer(
        tmp_path, TINY.replace("  log: {tensorboard: true}\n", "").replace("epochs: 2", "epochs: 1")
    )
    t.fit()
    assert not (t.run_dir / "tensorboard").exists()


def test_missing_package_is_a_clear_error_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    out = fails(
        invoke("train", spec, "--out", tmp_path / "run"), "tensorboard package is not installed"
    )
    assert "pip install 'netspec[tensorboard]'" in out
    assert not (tmp_path / "run" / "spec.yaml").exists()


def test_scalar_tags_pair_train_and_val() -> None:
    row = {"epoch": 3, "loss": 0.5, "val_loss": 0.6, "iou": 0.7, "lr": 0.01, "time_s": 2.0}
    assert scalar_tags(row) == {
        "loss/train": 0.5,
        "loss/val": 0.6,
        "iou/train": 0.7,
        "lr": 0.01,
        "time/epoch_s": 2.0,
    }


def test_log_section_is_validated(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY.replace("log: {tensorboard: true}", "log: {tensorbord: true}"))
    fails(invoke("validate", spec), "tensorbord")
    spec.write_text(TINY.replace("log: {tensorboard: true}", "log: {tensorboard: 3}"))
    fails(invoke("validate", spec), "tensorboard")


SEG = """\
name: seg
input: [3, 16, 16]
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same, activation: relu}
  - conv2d: {filters: 4, kernel: 1, activation: softmax}
train:
  data: {source: shapes, samples: 16, size: [16, 16], bands: 3, val: 0.25}
  batch_size: 8
  epochs: 1
  log: {tensorboard: true}
"""


def test_segmentation_logs_mask_grids(tmp_path: Path) -> None:
    t = make_trainer(tmp_path, SEG)
    t.fit()
    ea = _events(t.run_dir)
    assert {"iou/train", "iou/val", "dice/val"} <= set(ea.Tags()["scalars"])
    (image,) = ea.Images("predictions")
    assert image.step == 1 and image.height > image.width  # one row per tile: 4 rows of 4 panels
