"""Every spec in specs/: known parameter counts and shapes, golden summaries, and independent counts.

EXPECTED holds the issue's table of known counts (the Keras counts of these classic networks);
U-Net, ResNet-20 and the mini Inception are also rebuilt by hand in torch.nn and counted there.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import plain_specs, spec_params
from typer.testing import CliRunner

from netspec import Graph, compile_file, compile_text
from netspec.cli import app
from netspec.summary import render, rows, totals

REPO = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted((REPO / "specs").glob("*.yaml"))  # as conftest parametrizes `spec_path`
GOLDEN = Path(__file__).parent / "golden"


@dataclass(frozen=True)
class Expected:
    total: int
    trainable: int
    non_trainable: int
    output: tuple[int, ...]
    flatten: int | None = None  # the length after `flatten`
    before_flatten: tuple[int, ...] | None = None
    windows: tuple[tuple[int, ...], ...] = ()  # outputs of the conv/pool layers, in order


EXPECTED = {
    "mnist_mlp_small": Expected(25_450, 25_450, 0, (10,)),
    "mnist_mlp": Expected(407_050, 407_050, 0, (10,)),
    "mnist_mlp_deep": Expected(932_362, 932_362, 0, (10,)),
    "mnist_cnn": Expected(
        93_322,
        93_322,
        0,
        (10,),
        flatten=576,
        windows=((32, 26, 26), (32, 13, 13), (64, 11, 11), (64, 5, 5), (64, 3, 3)),
    ),
    "cats_dogs_cnn": Expected(3_453_121, 3_453_121, 0, (1,), flatten=6272),
    "cifar_cnn": Expected(1_345_066, 1_343_146, 1_920, (10,), flatten=2048),
    "eeg_cnn": Expected(108_001, 107_681, 320, (1,), flatten=768, before_flatten=(32, 12, 2)),
    "unet": Expected(31_030_658, 31_030_658, 0, (2, 388, 388)),
    # Keras: LSTM(128) on 28 features 4(128(28+128)+128) = 80,384, Dense(10) 1,290.
    "mnist_lstm": Expected(81_674, 81_674, 0, (10,)),
    # Wang et al.'s FCN: conv1d 1*8*128+128, 128*5*256+256, 256*3*128+128, batchnorm 4 per channel.
    "ucr_fcn": Expected(265_986, 264_962, 1_024, (2,)),
    "ucr_fcn_vowels": Expected(278_153, 277_129, 1_024, (9,)),
    # Keras: Bidirectional(GRU(64)) on 1 feature 2 * 3(64(1+64)+2*64) = 25,728, Dense(2) 258.
    "ucr_gru": Expected(25_986, 25_986, 0, (2,)),
    # Dense(64) 832, 29x64 positions, 2 encoder blocks of 33,472 (tests/test_transformer_block.py),
    # LayerNormalization 128, Dense(9) 585.
    "ucr_transformer": Expected(70_345, 70_345, 0, (9,)),
}


def graph_of(stem: str) -> Graph:
    path = REPO / "specs" / f"{stem}.yaml"
    assert path.is_file(), f"specs/{stem}.yaml is in the table of known counts but missing"
    return compile_file(path)


def test_specs_are_discovered():
    # The glob finds the files; every spec with published numbers is among them.
    assert {p.stem for p in SPEC_FILES} >= set(EXPECTED)


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_known_counts(stem: str):
    want = EXPECTED[stem]
    graph = graph_of(stem)
    t = totals(rows(graph))
    assert (t.total_params, t.trainable_params, t.non_trainable_params) == (
        want.total,
        want.trainable,
        want.non_trainable,
    )
    assert graph.output.shape == want.output
    flattens = [n for n in graph.nodes if n.kind == "flatten"]
    if want.flatten is not None:
        assert [n.shape for n in flattens] == [(want.flatten,)]
    if want.before_flatten is not None:
        assert flattens[0].input_shapes == (want.before_flatten,)
    if want.windows:
        windowed = [n.shape for n in graph.nodes if n.kind in ("conv2d", "maxpool2d")]
        assert tuple(windowed) == want.windows


def test_every_spec_compiles(spec_path: Path):
    graph = compile_file(spec_path)
    assert graph.name == spec_path.stem, "a spec's `name` should match its file name"
    assert graph.nodes
    # None: a dynamic time axis (`input: [12, null]`), filled by the data's length
    assert all(all(d is None or d >= 1 for d in n.shape) for n in graph.nodes)


def _summary_text(spec_path: Path) -> str:
    result = CliRunner().invoke(app, ["summary", str(spec_path)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_golden_summary(spec_path: Path, update_golden: bool):
    text = _summary_text(spec_path)
    golden = GOLDEN / f"{spec_path.stem}.txt"
    if update_golden:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
        return
    if not golden.exists():
        pytest.fail(
            f"no golden file {golden.relative_to(REPO)} for specs/{spec_path.name}: "
            "run `pytest tests/test_specs.py --update-golden` and review the new file"
        )
    assert text == golden.read_text(encoding="utf-8"), (
        f"`netspec summary specs/{spec_path.name}` changed; if that is intended, "
        "run `pytest tests/test_specs.py --update-golden` and review the diff"
    )


def test_no_stale_golden_files():
    stems = {p.stem for p in SPEC_FILES}
    stale = sorted(p.name for p in GOLDEN.glob("*.txt") if p.stem not in stems)
    assert not stale, f"golden files without a spec in specs/: {stale}"


def _table_params(text: str) -> list[int]:
    """The Param # column of a rendered summary, read back from the text."""
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"─"}]
    assert len(rules) == 3, text
    body = lines[rules[1] + 1 : rules[2]]
    # Columns are separated by two or more spaces; Param # is always the second last.
    return [int(re.split(r"\s{2,}", line.strip())[-2].replace(",", "")) for line in body]


def _footer_number(text: str, label: str) -> int:
    match = re.search(rf"^{label}: ([\d,]+)", text, re.MULTILINE)
    assert match, f"no '{label}' line in:\n{text}"
    return int(match.group(1).replace(",", ""))


# Building AlexNet's module (62M weights initialized: ~1.3 s) makes its case slow (BIG_SPECS).
@pytest.mark.parametrize("path", spec_params(plain_specs()))
def test_rows_sum_to_totals(path: Path):
    pytest.importorskip("torch")
    from netspec.backends.lowering import build_module

    graph = compile_file(path)
    table = rows(graph)
    t = totals(table)
    # Independent of the IR's counts: what the PyTorch lowering actually holds.
    module = build_module(graph)
    state = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert t.total_params == sum(v.numel() for v in state.values())
    assert t.trainable_params == sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert t.non_trainable_params == t.total_params - t.trainable_params
    assert all(0 <= r.trainable_params <= r.params for r in table)

    text = render(graph)
    per_row = _table_params(text)
    assert len(per_row) == len(graph.nodes) + 1  # the input row, then one per layer
    assert per_row[0] == 0
    assert sum(per_row) == _footer_number(text, "Total params") == t.total_params
    trainable = _footer_number(text, "Trainable params")
    frozen = _footer_number(text, "Non-trainable params")
    assert (trainable, frozen) == (t.trainable_params, t.non_trainable_params)

    data = json.loads(CliRunner().invoke(app, ["summary", "--json", str(path)]).stdout)
    assert sum(layer["params"] for layer in data["layers"]) == data["total_params"]
    assert sum(layer["trainable_params"] for layer in data["layers"]) == data["trainable_params"]
    assert sum(layer["macs"] for layer in data["layers"]) == data["macs"]


# --- independent counts: the same networks written by hand in torch.nn ---------------------------


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small forward passes: on a busy machine threads only add waiting
    yield torch
    torch.set_num_threads(threads)


def _unet(torch):
    """Ronneberger et al. 2015, figure 1: valid 3x3 convs, 2x2 max pooling, 2x2 up-convolutions."""
    nn = torch.nn

    def double_conv(cin: int, cout: int):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3), nn.ReLU(), nn.Conv2d(cout, cout, 3), nn.ReLU()
        )

    widths = [64, 128, 256, 512, 1024]

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = nn.ModuleList(
                [double_conv(1, 64)] + [double_conv(a, b) for a, b in itertools.pairwise(widths)]
            )
            self.pool = nn.MaxPool2d(2)
            self.upconv = nn.ModuleList(
                [nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in itertools.pairwise(widths)][::-1]
            )
            self.up = nn.ModuleList(
                [double_conv(b, a) for a, b in itertools.pairwise(widths)][::-1]
            )
            self.logits = nn.Conv2d(64, 2, 1)

        def forward(self, x):
            skips = []
            for i, block in enumerate(self.down):
                x = block(x if i == 0 else self.pool(x))  # (N, C, H, W)
                skips.append(x)
            skips.pop()  # the bottleneck is not a skip
            for upconv, block in zip(self.upconv, self.up):
                x = upconv(x)
                skip = skips.pop()
                top = (skip.shape[2] - x.shape[2]) // 2
                left = (skip.shape[3] - x.shape[3]) // 2
                skip = skip[:, :, top : top + x.shape[2], left : left + x.shape[3]]
                x = block(torch.cat([skip, x], dim=1))
            return self.logits(x)

    return UNet()


def _resnet20(torch):
    """He et al. 2016, section 4.2: 3 stages of 3 basic blocks, 16/32/64 filters, no conv bias."""
    nn = torch.nn

    class Basic(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1
                else nn.Identity()
            )

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for cout in (16, 32, 64):
        for i in range(3):
            layers.append(Basic(cin, cout, 2 if i == 0 and cout != 16 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def _inception_mini(torch):
    nn = torch.nn

    class Inception(nn.Module):
        def __init__(self, cin, f1, f3_reduce, f3, f5_reduce, f5, pool_proj) -> None:
            super().__init__()
            self.b1 = nn.Sequential(nn.Conv2d(cin, f1, 1), nn.ReLU())
            self.b3 = nn.Sequential(
                nn.Conv2d(cin, f3_reduce, 1),
                nn.ReLU(),
                nn.Conv2d(f3_reduce, f3, 3, padding=1),
                nn.ReLU(),
            )
            self.b5 = nn.Sequential(
                nn.Conv2d(cin, f5_reduce, 1),
                nn.ReLU(),
                nn.Conv2d(f5_reduce, f5, 5, padding=2),
                nn.ReLU(),
            )
            self.bp = nn.Sequential(
                nn.MaxPool2d(3, 1, padding=1), nn.Conv2d(cin, pool_proj, 1), nn.ReLU()
            )

        def forward(self, x):
            return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)

    return nn.Sequential(
        nn.Conv2d(3, 64, 7, stride=2, padding=3),  # (64, 32, 32)
        nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1),  # (64, 16, 16)
        Inception(64, 64, 96, 128, 16, 32, 32),  # (256, 16, 16)
        Inception(256, 128, 128, 192, 32, 96, 64),  # (480, 16, 16)
        nn.MaxPool2d(3, 2, padding=1),  # (480, 8, 8)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.4),
        nn.Linear(480, 10),
    )


def _torch_counts(model) -> tuple[int, int]:
    """(trainable, non-trainable) as Keras counts them: BatchNorm's running mean and variance
    are buffers in torch and non-trainable weights in Keras."""
    trainable = sum(p.numel() for p in model.parameters())
    stats = sum(
        b.numel()
        for name, b in model.named_buffers()
        if name.endswith(("running_mean", "running_var"))
    )
    return trainable, stats


def test_unet_count_and_shape_match_torch(torch):
    model = _unet(torch).eval()
    graph = graph_of("unet")
    trainable, stats = _torch_counts(model)
    assert stats == 0
    assert trainable == totals(rows(graph)).total_params == 31_030_658

    # The smallest tile the valid-convolution U-Net accepts (572 = 188 + 16 * 24): 188 -> 4.
    text = (REPO / "specs" / "unet.yaml").read_text(encoding="utf-8")
    assert "input: [1, 572, 572]" in text
    small = compile_text(text.replace("input: [1, 572, 572]", "input: [1, 188, 188]"))
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 188, 188))
    assert tuple(out.shape) == (1, *small.output.shape) == (1, 2, 4, 4)
    assert graph.output.shape == (2, 388, 388)


@pytest.mark.parametrize(
    ("stem", "build", "size"),
    [("resnet_cifar", _resnet20, 32), ("inception_mini", _inception_mini, 64)],
)
def test_count_and_shape_match_torch(torch, stem: str, build, size: int):
    model = build(torch).eval()
    graph = graph_of(stem)
    t = totals(rows(graph))
    trainable, stats = _torch_counts(model)
    assert (t.trainable_params, t.non_trainable_params) == (trainable, stats)
    with torch.no_grad():
        out = model(torch.zeros(1, *graph.input_shape))
    assert graph.input_shape == (3, size, size)
    assert tuple(out.shape) == (1, *graph.output.shape)
