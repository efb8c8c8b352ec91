"""The gallery: literature parameter counts, generated X/O images, image completion, ensembles.

Every spec in specs/ is also validated, summarized (golden files), lowered and exported by the
tests that take `spec_path` or walk `plain_specs()`; this file checks what is particular to the
gallery's networks and the features they needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, fails, inside, invoke, needs_digits, tiny_spec

from netspec import compile_file, compile_text
from netspec.data.halves import lower_half
from netspec.data.pipeline import SplitOptions, prepare
from netspec.data.xo import XO_CLASSES, make_xo
from netspec.errors import DataError
from netspec.summary import rows, totals

SPECS = REPO / "specs"


def params(stem: str, text: str | None = None) -> int:
    graph = compile_file(SPECS / f"{stem}.yaml") if text is None else compile_text(text)
    return totals(rows(graph)).total_params


# --- parameter counts from the literature -----------------------------------------------------


def test_lenet5_has_61706_parameters() -> None:
    """LeNet-5 (LeCun et al. 1998) as Keras and PyTorch tutorials rebuild it, 32x32 input:

    C1  6 maps, 5x5 over 1 channel:     6 * (5*5*1 + 1)   =    156
    S2  average pooling (no weights):                           0
    C3  16 maps, 5x5 over all 6 maps:  16 * (5*5*6 + 1)   =  2,416  (the paper: 1,516, a table)
    S4  average pooling:                                        0
    C5  120 maps, 5x5 over 16:        120 * (5*5*16 + 1)  = 48,120  (= dense 400 -> 120)
    F6  84 units:                      84 * (120 + 1)     = 10,164
    out 10 units:                      10 * (84 + 1)      =    850
    total                                                 = 61,706
    """
    assert 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706
    graph = compile_file(SPECS / "lenet5.yaml")
    assert totals(rows(graph)).total_params == 61_706
    convs = [n.shape for n in graph.nodes if n.kind in ("conv2d", "avgpool2d", "zeropad2d")]
    assert convs == [(1, 32, 32), (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120, 1, 1)]


ALEXNET_LAYERS = {
    # Krizhevsky et al. 2012 on one tower (227x227x3 in, as Caffe and Keras rebuilds use):
    "conv1": 96 * (11 * 11 * 3) + 96,  # 34,944; (96, 55, 55)
    "conv2": 256 * (5 * 5 * 96) + 256,  # 614,656; (256, 27, 27)
    "conv3": 384 * (3 * 3 * 256) + 384,  # 885,120; (384, 13, 13)
    "conv4": 384 * (3 * 3 * 384) + 384,  # 1,327,488
    "conv5": 256 * (3 * 3 * 384) + 256,  # 884,992; pooled to (256, 6, 6)
    "fc6": 4096 * (6 * 6 * 256) + 4096,  # 37,752,832
    "fc7": 4096 * 4096 + 4096,  # 16,781,312
    "fc8": 1000 * 4096 + 1000,  # 4,097,000
}


def test_alexnet_has_62378344_parameters() -> None:
    """AlexNet on one tower: 62,378,344 (the sum of ALEXNET_LAYERS). The paper's two-tower
    network, with conv2, conv4 and conv5 each split into 2 groups, has 60,965,224: Caffe's
    bvlc_alexnet count. LRN layers have no parameters."""
    assert sum(ALEXNET_LAYERS.values()) == 62_378_344
    graph = compile_file(SPECS / "alexnet.yaml")
    per_layer = [n.params for n in graph.nodes if n.params]
    assert per_layer == list(ALEXNET_LAYERS.values())
    assert totals(rows(graph)).total_params == 62_378_344
    assert [n.shape for n in graph.nodes if n.kind == "maxpool2d"] == [
        (96, 27, 27),
        (256, 13, 13),
        (256, 6, 6),
    ]
    # The paper's two towers: conv2, conv4 and conv5 see only their own GPU's half of the maps.
    lines = (SPECS / "alexnet.yaml").read_text().splitlines(keepends=True)
    convs = [i for i, line in enumerate(lines) if line.startswith("  - conv2d:")]
    for i in (convs[1], convs[3], convs[4]):
        lines[i] = lines[i].replace("padding:", "groups: 2, padding:")
    towers = "".join(lines)
    assert towers.count("groups: 2, padding") == 3
    assert params("alexnet", towers) == 60_965_224


@pytest.mark.parametrize(
    ("stem", "count"),
    [
        ("iris_dnn", 4 * 10 + 10 + 10 * 20 + 20 + 20 * 10 + 10 + 10 * 3 + 3),  # 513
        ("nielsen_sigmoid", 784 * 30 + 30 + 30 * 10 + 10),  # 23,860
        # 20 and 40 5x5 filters, 640 -> 1000 -> 1000 -> 10
        ("nielsen_convnet", 20 * 26 + 40 * (20 * 25 + 1) + 641_000 + 1_001_000 + 10_010),
        ("california_housing", 13 * 30 + 30 + 31),  # 8 numbers and 5 one-hot proximities
        ("xo_convnet", 3 * 10 + 27 * 2 + 2),  # 86
        ("mnist_completion", 392 * 512 + 512 + 512 * 392 + 392),
    ],
)
def test_gallery_counts(stem: str, count: int) -> None:
    assert params(stem) == count


# --- generated X/O images ---------------------------------------------------------------------


def test_xo_is_deterministic_balanced_and_shaped() -> None:
    a, b, c = make_xo(200, seed=3), make_xo(200, seed=3), make_xo(200, seed=4)
    assert a.x.shape == (200, 1, 9, 9) and a.x.dtype == np.uint8
    assert a.classes == XO_CLASSES == ("O", "X")
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert np.bincount(a.y).tolist() == [100, 100]


def test_xo_classes_differ_where_x_and_o_do() -> None:
    # Noise-free, full-size glyphs: an X crosses the centre, an O leaves it empty.
    data = make_xo(400, seed=0, noise=0.0)
    centre = data.x[:, 0, 4, 4].astype(float)
    full = (data.x[:, 0] > 0).sum(axis=(1, 2)) > 0
    assert full.all()
    x_centre = centre[data.y == 1].mean()
    o_centre = centre[data.y == 0].mean()
    assert x_centre > 3 * o_centre  # Xs of any size and place cross the centre most often


def test_xo_source_through_the_pipeline() -> None:
    text = (SPECS / "xo_convnet.yaml").read_text()
    graph = compile_text(text.replace("samples: 1000", "samples: 100"))
    data = prepare(graph.train, SplitOptions(graph.input_shape, graph.output.shape, None))
    assert data.task == "multiclass" and data.classes == XO_CLASSES
    assert (len(data.train), len(data.val), len(data.test)) == (70, 10, 20)


# --- image completion -------------------------------------------------------------------------


def test_lower_half_splits_images() -> None:
    from netspec.data.arraydata import ArrayData

    x = np.arange(2 * 1 * 5 * 3, dtype=np.uint8).reshape(2, 1, 5, 3)
    out = lower_half(ArrayData(x=x, y=np.array([0, 1]), classes=("a", "b"), source="t"))
    assert out.x.shape == (2, 1, 2, 3) and out.x.dtype == np.uint8
    np.testing.assert_array_equal(out.x, x[:, :, :2])
    assert out.y.shape == (2, 9) and out.y.dtype == np.float32
    np.testing.assert_array_equal(out.y, x[:, :, 2:].reshape(2, 9))
    assert out.classes is None
    table = ArrayData(x=np.zeros((2, 4), np.float32), y=np.zeros(2), classes=None, source="t")
    with pytest.raises(DataError, match="needs images"):
        lower_half(table)


COMPLETION = tiny_spec(
    ("flatten", "dense: {units: 32, activation: sigmoid}"),
    name="digits_completion",
    input="[1, 4, 8]",
    data="{source: builtin, name: digits, complete: lower_half, val: 0.1, test: 0.1, limit: 300}",
    preprocess="{rescale: 1/16}",
    epochs=1,
    seed=None,
    loss="mse",
    metrics="[mae]",
)


def test_completion_targets_are_in_the_inputs_units() -> None:
    needs_digits()
    graph = compile_text(COMPLETION)
    opts = SplitOptions(graph.input_shape, graph.output.shape, None, output_activation="sigmoid")
    data = prepare(graph.train, opts)
    assert data.task == "regression" and data.classes is None
    assert data.train.x.shape[1:] == (1, 4, 8)
    assert data.train.y.shape[1:] == (32,)
    assert data.train.y.min() >= 0.0 and data.train.y.max() <= 1.0  # 0..16 scaled by 1/16
    assert data.train.y.max() > 0.9
    assert data.preprocessing.target_mean is None  # a sigmoid output: targets stay in 0..1


@pytest.mark.slow
def test_completion_run_draws_completions(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    needs_digits()
    pytest.importorskip("matplotlib")
    spec = tmp_path / "digits_completion.yaml"
    spec.write_text(COMPLETION)
    result = invoke("train", spec, "--out", tmp_path / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    png = tmp_path / "run" / "completions.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # In the inputs' units (pixels 0..1), by construction at most 1 (sigmoid outputs, targets in
    # 0..1); in raw 0..16 units it would be ~5. Not a score: one epoch leaves the outputs near 0.5
    # (mae 0.39-0.42 over seeds 0-2; predicting 0.5 everywhere gives 0.40).
    assert 0 < metrics["test"]["mae"] < 1


def test_completion_images_rows() -> None:
    from netspec.backends.training.completions import completion_images

    upper = np.ones((2, 1, 2, 3))
    true = np.zeros((2, 6))
    pred = np.full((2, 6), 0.25)
    images = completion_images(upper, true, pred)
    assert images.shape == (3, 2, 4, 3)
    given, truth, predicted = images
    assert (given[:, 2:] == 0.5).all() and (truth[:, :2] == 1).all() and (truth[:, 2:] == 0).all()
    np.testing.assert_allclose(predicted[:, 2:], 0.25)
    with pytest.raises(ValueError, match="do not fit"):
        completion_images(upper, true, pred[:, :5])


def test_plot_completions_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from netspec.backends.training.completions import plot_completions

    rng = np.random.default_rng(0)
    upper = rng.uniform(size=(3, 1, 4, 8))
    plot_completions(
        upper, rng.uniform(size=(3, 32)), rng.uniform(size=(3, 32)), tmp_path / "c.png", title="t"
    )
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # no temporary file left


def test_the_completions_title_fits_over_one_sample() -> None:
    """The figure is as wide as its title: over one sample, the title was cut at both ends."""
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from netspec.backends.training.completions import completions_figure

    images = np.random.default_rng(0).uniform(size=(3, 1, 8, 8))
    fig = completions_figure(images, boundary=4, title="faces_completion: held-out images")
    FigureCanvasAgg(fig).draw()
    assert inside(fig, fig._suptitle)


# --- split_seed -------------------------------------------------------------------------------


def test_split_seed_fixes_the_split_whatever_the_seed() -> None:
    needs_digits()
    base = (
        COMPLETION.replace("complete: lower_half, ", "")
        .replace("input: [1, 4, 8]", "input: [1, 8, 8]")
        .replace("units: 32, activation: sigmoid", "units: 10, activation: softmax")
        .replace("  loss: mse\n  metrics: [mae]\n", "")
    )

    def test_x(seed: int, split_seed: str = "") -> np.ndarray:
        text = base.replace("limit: 300}", f"limit: 300{split_seed}}}") + f"  seed: {seed}\n"
        graph = compile_text(text)
        return prepare(
            graph.train, SplitOptions(graph.input_shape, graph.output.shape, None)
        ).test.x

    assert not np.array_equal(test_x(0), test_x(1))  # by default the split follows train.seed
    np.testing.assert_array_equal(test_x(0, ", split_seed: 5"), test_x(1, ", split_seed: 5"))


# --- ensembles --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, quickstart_run: Path) -> list[Path]:
    """The trained quickstart run, and a copy whose weights are nudged: two different members."""
    import shutil

    import torch

    from netspec.backends.export.run import export_run
    from netspec.backends.training import checkpoint

    other = tmp_path_factory.mktemp("ensemble") / "other"
    shutil.copytree(quickstart_run, other, ignore=shutil.ignore_patterns("model.onnx"))
    tensors, meta = checkpoint.load(other / "model.safetensors")
    gen = torch.Generator().manual_seed(0)
    nudged = {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in tensors.items()}
    checkpoint.save(other / "model.safetensors", nudged, meta)
    export_run(other)
    return [quickstart_run, other]


def test_export_ensemble_averages_its_members(two_runs: list[Path], tmp_path: Path) -> None:
    import onnx

    from netspec.backends.export.ensemble import member_mean
    from netspec.backends.predict.session import open_session

    out = tmp_path / "ens.onnx"
    result = invoke("export", two_runs[0], "--ensemble", two_runs[1], "-o", out)
    assert result.exit_code == 0, result.output
    assert "matches its members' mean" in result.output
    model = onnx.load(out)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["netspec.head"] == "softmax"
    assert json.loads(meta["netspec.ensemble"]) == [str(p) for p in two_runs]
    assert [n.op_type for n in model.graph.node].count("Mean") == 1
    assert [i.name for i in model.graph.input] == ["input"]
    members = [onnx.load(p / "model.onnx") for p in two_runs]
    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    got = open_session(out, "cpu").run(None, {"input": x})[0]
    singles = [
        open_session(m.SerializeToString(), "cpu").run(None, {"input": x})[0] for m in members
    ]
    assert not np.allclose(singles[0], singles[1], atol=1e-3)  # the members really differ
    np.testing.assert_allclose(got, (singles[0] + singles[1]) / 2, atol=1e-6)
    np.testing.assert_allclose(got, member_mean(members, x), atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_predict_ensemble_matches_the_exported_ensemble(
    two_runs: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "ens.onnx"
    assert invoke("export", two_runs[0], "--ensemble", two_runs[1], "-o", out).exit_code == 0
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(2).uniform(0, 16, (4, 1, 8, 8)).astype(np.float32))
    models = [p / "model.onnx" for p in two_runs]
    averaged = invoke("predict", models[0], x, "--ensemble", models[1], "--json", "--top-k", "3")
    joined = invoke("predict", out, x, "--json", "--top-k", "3")
    single = invoke("predict", models[0], x, "--json", "--top-k", "3")
    assert averaged.exit_code == joined.exit_code == single.exit_code == 0, averaged.output
    a, j, s = (json.loads(r.stdout) for r in (averaged, joined, single))
    assert len(a) == 4
    for ra, rj in zip(a, j):
        assert [p["label"] for p in ra["predictions"]] == [p["label"] for p in rj["predictions"]]
        np.testing.assert_allclose(
            [p["score"] for p in ra["predictions"]],
            [p["score"] for p in rj["predictions"]],
            atol=1e-5,
        )
    assert a != s  # the second member changes the scores


def test_ensemble_members_must_agree(two_runs: list[Path], tmp_path: Path) -> None:
    import shutil

    from helpers import random_weights

    from netspec.backends.export.model import export_onnx

    xo = compile_file(SPECS / "xo_convnet.yaml")
    other = tmp_path / "xo.onnx"
    other.write_bytes(export_onnx(xo, random_weights(xo)).SerializeToString())
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 8, 8), np.float32))
    fails(
        invoke("predict", two_runs[0] / "model.onnx", x, "--ensemble", other),
        "--ensemble: the members differ in their input",
    )
    # A run of the same network whose classes are named differently.
    renamed = tmp_path / "renamed"
    shutil.copytree(two_runs[1], renamed, ignore=shutil.ignore_patterns("model.onnx"))
    record = json.loads((renamed / "model.json").read_text())
    record["classes"] = [f"digit {c}" for c in record["classes"]]
    (renamed / "model.json").write_text(json.dumps(record))
    fails(
        invoke("export", two_runs[0], "--ensemble", renamed, "-o", tmp_path / "e.onnx"),
        "--ensemble:",
        "netspec.classes",
    )
    assert not (tmp_path / "e.onnx").exists()
