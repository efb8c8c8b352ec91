"""`netspec visualize`: filters, feature maps and saliency of a trained run, checked against hand computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import fails, invoke, random_weights

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from netspec.backends import visualize as vis  # noqa: E402
from netspec.backends.weights import load_module  # noqa: E402
from netspec.compiler import compile_source  # noqa: E402
from netspec.errors import NetspecError  # noqa: E402
from netspec.runs import read_run as load_run  # noqa: E402
from netspec.source import parse  # noqa: E402

CAM_SPEC = """
name: cam
input: [3, 8, 8]
layers:
  - conv2d: {filters: 4, kernel: 3, padding: same, activation: relu}
    name: features
  - global_avgpool2d
  - dense: {units: 3, activation: softmax}
"""


@pytest.fixture(scope="module")
def cam_module():
    graph = compile_source(parse(CAM_SPEC))
    return graph, load_module(graph, random_weights(graph, seed=3))


@pytest.fixture
def digit(tmp_path: Path) -> Path:
    """One raw quickstart sample (pixel values 0..16, as the digits loader gives them)."""
    path = tmp_path / "digit.npy"
    x = np.random.default_rng(0).integers(0, 17, (1, 1, 8, 8)).astype(np.float32)
    np.save(path, x)
    return path


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def test_filters_are_the_kernels_normalized_per_filter(
    quickstart_run: Path, tmp_path: Path
) -> None:
    run = load_run(quickstart_run)
    f = vis.filters(run.graph, run.weights, "conv2d_1")
    w = run.weights["conv2d_1.weight"].mean(axis=1)  # (64, 3, 3): mean over 32 input channels
    assert f.tiles.shape == (64, 3, 3) and not f.colour
    expect = (w[5] - w[5].min()) / (w[5].max() - w[5].min())
    np.testing.assert_allclose(f.tiles[5], expect, rtol=1e-5, atol=1e-6)
    assert f.note == "mean over 32 input channels"

    out = tmp_path / "f.png"
    result = invoke("visualize", quickstart_run, "--filters", "conv2d", "-o", out)
    assert result.exit_code == 0, result.output
    assert "32 filters, 4x8 grid" in result.output
    assert _png_size(out) == (820, 480)  # 8 tiles of 1 inch (+0.2), 4 rows (+0.8 title), 100 dpi


def test_first_conv_on_rgb_shows_colour_kernels(cam_module) -> None:
    graph, module = cam_module
    weights = {k: v.numpy() for k, v in module.state_dict().items()}
    f = vis.filters(graph, weights, "features")
    assert f.colour and f.tiles.shape == (4, 3, 3, 3)  # (filters, kh, kw, RGB)
    w = weights["features.weight"][2].transpose(1, 2, 0)
    np.testing.assert_allclose(f.tiles[2], (w - w.min()) / (w.max() - w.min()), atol=1e-6)


def test_activations_are_the_layer_outputs(
    quickstart_run: Path, digit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = load_run(quickstart_run)
    raw, x = vis.read_input(run, digit)
    np.testing.assert_allclose(x, raw * 0.0625)  # the recorded rescale, as predict applies it
    module = vis.load(run)
    maps = vis.activations(module, x, ["conv2d", "conv2d_1"])
    conv = module.layer("conv2d")
    expect = torch.relu(
        torch.nn.functional.conv2d(torch.as_tensor(x[None]), conv.weight, conv.bias, padding=1)
    )[0]
    np.testing.assert_allclose(maps["conv2d"], expect.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert maps["conv2d_1"].shape == (64, 8, 8)
    # Drawn with at most 12 maps a layer instead of 32 (64 tiles took 2-4 s to draw on 2 busy
    # cores): the first 12 of 32 and of 64, in grids of 8 columns.
    with monkeypatch.context() as mp:
        mp.setattr(vis, "MAX_MAPS", 12)
        grids = vis.plot_activations(maps, tmp_path / "a.png", "t")
    assert grids == [(2, 8), (2, 8)]
    assert _png_size(tmp_path / "a.png") == (880, round(100 * (2 * (1.1 * 2 + 0.4) + 0.5)))

    # The command: the maps it hands to plot_activations (drawn above), a pooling layer's too.
    handed: list[dict[str, np.ndarray]] = []
    monkeypatch.setattr(vis, "plot_activations", lambda maps, *a: handed.append(maps))
    result = invoke(
        "visualize",
        quickstart_run,
        "--activations",
        digit,
        "--layers",
        "conv2d_1,maxpool2d",
        "-o",
        tmp_path / "b.png",
    )
    assert result.exit_code == 0, result.output
    assert "conv2d_1 (64 maps), maxpool2d (64 maps)" in result.output
    ((conv, pool),) = [list(maps.values()) for maps in handed]
    np.testing.assert_allclose(conv, vis.activations(module, x, ["conv2d_1"])["conv2d_1"])
    assert pool.shape == (64, 4, 4)


def test_gradient_saliency_matches_finite_differences(quickstart_run: Path, digit: Path) -> None:
    run = load_run(quickstart_run)
    module = vis.load(run).double()  # float64: central differences without rounding noise
    _, x = vis.read_input(run, digit)
    x = x.astype(np.float64)
    s = vis.saliency(module, x, "multiclass")
    assert s.layer == "conv2d_1" and s.gradient.shape == (1, 8, 8)
    assert s.gradcam.shape == (8, 8) and s.gradcam.min() >= 0
    assert s.gradcam.max() == pytest.approx(1)

    def logit(v: np.ndarray) -> float:
        with torch.no_grad():
            return float(module.forward_logits(torch.as_tensor(v[None]))[0, s.label])

    eps = 1e-6
    for i, j in [(3, 3), (2, 5), (6, 1)]:
        up, down = x.copy(), x.copy()
        up[0, i, j] += eps
        down[0, i, j] -= eps
        fd = (logit(up) - logit(down)) / (2 * eps)
        assert s.gradient[0, i, j] == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_gradcam_equals_the_hand_computation(cam_module) -> None:
    """conv → global average → dense: α_c = W[k, c] / (h·w), so Grad-CAM is relu(Σ_c W[k, c] A_c) scaled."""
    _, module = cam_module
    x = np.random.default_rng(1).standard_normal((3, 8, 8)).astype(np.float32)
    s = vis.saliency(module, x, "multiclass")
    with torch.no_grad():
        a = module.layer("features")(torch.as_tensor(x[None]))[0].numpy()  # (4, 8, 8)
        k = int(module.forward_logits(torch.as_tensor(x[None]))[0].argmax())
    w = module.layer("dense").weight.detach().numpy()  # (3, 4)
    cam = np.maximum((w[k][:, None, None] * a).sum(0), 0)
    assert s.label == k
    np.testing.assert_allclose(s.gradcam, cam / cam.max(), rtol=1e-4, atol=1e-6)


def test_saliency_only_for_classification(cam_module) -> None:
    _, module = cam_module
    with pytest.raises(NetspecError, match="saliency needs a classification model"):
        vis.saliency(module, np.zeros((3, 8, 8), np.float32), "segmentation")


def test_cli_saliency_and_errors(quickstart_run: Path, digit: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    result = invoke("visualize", quickstart_run, "--saliency", digit, "-o", out)
    assert result.exit_code == 0, result.output
    assert "predicted '" in result.output and "Grad-CAM on conv2d_1" in result.output
    assert _png_size(out) == (960, 360)
    fails(
        invoke("visualize", quickstart_run, "--filters", "dense", "-o", out),
        "'dense' is not a convolution",
        "conv2d, conv2d_1",
    )
    fails(invoke("visualize", quickstart_run, "--filters", "nope"), "'nope' is not in the network")
    fails(
        invoke("visualize", quickstart_run, "--activations", digit, "--layers", "dense"),
        "feature maps",
        "conv2d_1",
    )
    fails(invoke("visualize", quickstart_run), "choose one view")


@pytest.mark.slow  # six commands, six pictures drawn (~1.8 s)
def test_readme_picture_commands_make_their_pictures(
    quickstart_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every `netspec` line of docs/pictures.md's first block runs and writes its picture."""
    import re
    import shlex

    from helpers import REPO
    from PIL import Image

    readme = (REPO / "docs" / "pictures.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    lines = [ln.split(" #")[0].strip() for ln in block.splitlines() if ln.startswith("netspec ")]
    assert len(lines) == 6
    pixels = np.random.default_rng(0).integers(0, 17, (8, 8)).astype(np.uint8)
    Image.fromarray(pixels, "L").save(tmp_path / "digit.png")  # a raw digit, 0..16
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").symlink_to(REPO / "specs")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "q1").symlink_to(quickstart_run)
    for line in lines:
        args = shlex.split(line)[1:]
        result = invoke(*args)
        assert result.exit_code == 0, (line, result.output)
        out = tmp_path / args[args.index("-o") + 1]
        assert out.is_file() and out.stat().st_size > 500, line
        if out.suffix == ".png":
            with Image.open(out) as im:
                assert min(im.size) > 300, line


def test_transposed_conv_filters_are_per_output_channel() -> None:
    graph = compile_source(
        parse(
            "name: up\ninput: [6, 4, 4]\nlayers:\n"
            "  - conv_transpose2d: {filters: 5, kernel: 2, stride: 2}\n    name: up\n"
        )
    )
    weights = random_weights(graph)
    assert weights["up.weight"].shape == (6, 5, 2, 2)  # torch's (in, out, kh, kw)
    f = vis.filters(graph, weights, "up")
    assert f.tiles.shape == (5, 2, 2) and f.note == "mean over 6 input channels"
    w = weights["up.weight"][:, 4].mean(axis=0)
    np.testing.assert_allclose(f.tiles[4], (w - w.min()) / (w.max() - w.min()), atol=1e-6)


def test_binary_saliency_scores_the_predicted_class() -> None:
    graph = compile_source(
        parse(
            CAM_SPEC.replace("{units: 3, activation: softmax}", "{units: 1, activation: sigmoid}")
        )
    )
    module = load_module(graph, random_weights(graph, seed=5))
    for seed in range(4):
        x = np.random.default_rng(seed).standard_normal((3, 8, 8)).astype(np.float32)
        s = vis.saliency(module, x, "binary")
        with torch.no_grad():
            p = float(module(torch.as_tensor(x[None]))[0, 0])
        assert s.label == int(p > 0.5) and s.score == pytest.approx(p if s.label else 1 - p)
        assert s.score >= 0.5
