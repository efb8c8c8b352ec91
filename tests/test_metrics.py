"""Tests for netspec.backends.training.metrics: hand computations, scikit-learn parity, batch-split invariance."""

from __future__ import annotations

import itertools
import math
from types import ModuleType

import numpy as np
import pytest
import torch

from netspec.backends.training.metrics import Metrics

CLS = ["accuracy", "precision", "recall", "f1"]


def sklearn_metrics() -> ModuleType:
    """scikit-learn's metrics, imported by the tests that compare with them rather than when
    the suite is collected (with SciPy under them, ~1 s; every xdist worker collects every file)."""
    return pytest.importorskip("sklearn.metrics")


def run(
    m: Metrics, logits: torch.Tensor, target: torch.Tensor, cuts: list[int] | None = None
) -> dict[str, float]:
    """Update batch by batch, splitting at the given sample indices."""
    m.reset()
    bounds = [0, *(cuts or []), len(logits)]
    for a, b in itertools.pairwise(bounds):
        m.update(logits[a:b], target[a:b])
    return m.compute()


def one_hot_logits(pred: list[int], k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(pred), k).float() * 3 - 1


def sk_classification(y: np.ndarray, p: np.ndarray, average: str) -> dict[str, float]:
    sk, kw = sklearn_metrics(), {"average": average, "zero_division": 0}
    return {
        "accuracy": sk.accuracy_score(y, p),
        "precision": sk.precision_score(y, p, **kw),
        "recall": sk.recall_score(y, p, **kw),
        "f1": sk.f1_score(y, p, **kw),
    }


# --- multiclass ------------------------------------------------------------------------------


def test_multiclass_by_hand() -> None:
    # targets 0 0 1 1 2 2, predictions 0 1 1 1 2 0
    # class 0: tp 1, fp 1, fn 1 -> p 1/2, r 1/2, f1 1/2
    # class 1: tp 2, fp 1, fn 0 -> p 2/3, r 1,   f1 4/5
    # class 2: tp 1, fp 0, fn 1 -> p 1,   r 1/2, f1 2/3
    m = Metrics(CLS, task="multiclass", num_classes=3)
    got = run(m, one_hot_logits([0, 1, 1, 1, 2, 0], 3), torch.tensor([0, 0, 1, 1, 2, 2]))
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert got["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert got["f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert list(got) == CLS


def test_perfect_predictions() -> None:
    y = [0, 1, 2, 3, 2, 1]
    got = run(Metrics(CLS, task="multiclass", num_classes=4), one_hot_logits(y, 4), torch.tensor(y))
    assert got == dict.fromkeys(CLS, 1.0)


def random_multiclass(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k - 1, (n,), generator=g)  # class k-1 never occurs as a target
    # Noisy logits that favour the target, so the scores are neither trivial nor chance.
    logits = torch.randn(n, k, generator=g)
    logits[torch.arange(n), target] += 1.0
    logits[:, k - 1] = -10.0  # ... nor as a prediction: sklearn's macro average leaves it out
    return logits, target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_matches_sklearn(seed: int) -> None:
    logits, target = random_multiclass(500, 7, seed)
    got = run(Metrics(CLS, task="multiclass", num_classes=7), logits, target)
    want = sk_classification(target.numpy(), logits.argmax(1).numpy(), "macro")
    assert got == pytest.approx(want, abs=1e-12)


def test_batch_split_invariance() -> None:
    logits, target = random_multiclass(503, 7, 3)
    names = [*CLS, "top5_accuracy"]
    m = Metrics(names, task="multiclass", num_classes=7)
    whole = run(m, logits, target)
    split = run(m, logits, target, cuts=[1, 2, 50, 51, 300, 490])  # 7 uneven batches
    assert split == whole  # exact: counts, not averaged ratios


def test_classes_absent_from_batches() -> None:
    logits, target = random_multiclass(300, 6, 4)
    order = target.argsort()  # sorted by class: each batch sees only one or two classes
    logits, target = logits[order], target[order]
    m = Metrics(CLS, task="multiclass", num_classes=6)
    got = run(m, logits, target, cuts=list(range(20, 300, 20)))
    assert got == pytest.approx(
        sk_classification(target.numpy(), logits.argmax(1).numpy(), "macro")
    )
    assert got == run(m, logits, target)


def test_top5() -> None:
    # 3 samples, 6 classes: the target ranks 1st, 5th and 6th -> 2 of 3 hits.
    logits = torch.tensor(
        [
            [9.0, 1, 2, 3, 4, 5],
            [1.0, 9, 8, 7, 6, 5],
            [1.0, 9, 8, 7, 6, 5],
        ]
    )
    target = torch.tensor([0, 5, 0])
    got = run(
        Metrics(["top5_accuracy", "accuracy"], task="multiclass", num_classes=6), logits, target
    )
    assert got["top5_accuracy"] == pytest.approx(2 / 3)
    assert got["accuracy"] == pytest.approx(1 / 3)


def test_top5_matches_sklearn() -> None:
    logits, target = random_multiclass(400, 10, 5)
    got = run(
        Metrics(["top5_accuracy"], task="multiclass", num_classes=10),
        logits,
        target,
        cuts=[33, 200],
    )
    want = sklearn_metrics().top_k_accuracy_score(
        target.numpy(), logits.numpy(), k=5, labels=list(range(10))
    )
    assert got["top5_accuracy"] == pytest.approx(want)


def test_multiclass_target_shapes_and_dtypes() -> None:
    logits, target = random_multiclass(64, 4, 6)
    m = Metrics(["accuracy"], task="multiclass", num_classes=4)
    assert run(m, logits, target[:, None]) == run(m, logits, target.int())


# --- binary ----------------------------------------------------------------------------------


@pytest.mark.parametrize("column", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_binary_matches_sklearn(column: bool, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 2, (257,), generator=g).float()
    logits = torch.randn(257, generator=g) + (target - 0.5)
    if column:  # (N, 1) logits with (N, 1) float targets, as BCEWithLogits sees them
        logits, target = logits[:, None], target[:, None]
    m = Metrics(CLS, task="binary", num_classes=1)
    got = run(m, logits, target, cuts=[10, 11, 100])
    want = sk_classification(
        target.view(-1).long().numpy(), (logits.view(-1) > 0).long().numpy(), "binary"
    )
    assert got == pytest.approx(want, abs=1e-12)


def test_binary_by_hand_and_zero_division() -> None:
    # Nothing predicted positive: precision (and F1) are 0 by the zero_division=0 convention.
    m = Metrics(CLS, task="binary", num_classes=2)
    got = run(m, torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([1, 0, 1]))
    assert got == {"accuracy": pytest.approx(1 / 3), "precision": 0.0, "recall": 0.0, "f1": 0.0}
    # logit exactly 0 is probability 0.5: not positive.
    got = run(m, torch.tensor([0.0, 0.5]), torch.tensor([1, 1]))
    assert got["recall"] == 0.5 and got["precision"] == 1.0


# --- regression ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(300,), (300, 1), (300, 3)])
def test_regression_matches_sklearn(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(shape, generator=g)
    pred = target + 0.3 * torch.randn(shape, generator=g)
    m = Metrics(["mae", "rmse"], task="regression", num_classes=0)
    got = run(m, pred, target, cuts=[7, 8, 150])
    t2, p2 = target.view(300, -1).numpy(), pred.view(300, -1).numpy()
    sk = sklearn_metrics()
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(t2, p2), rel=1e-6)
    assert got["rmse"] == pytest.approx(math.sqrt(sk.mean_squared_error(t2, p2)), rel=1e-6)
    assert got == run(m, pred, target)


def test_regression_by_hand_and_column_shapes() -> None:
    m = Metrics(["rmse", "mae"], task="regression", num_classes=0)
    got = run(m, torch.tensor([[1.0], [2.0], [5.0]]), torch.tensor([1.0, 4.0, 1.0]))
    assert got == {"rmse": pytest.approx(math.sqrt((0 + 4 + 16) / 3)), "mae": pytest.approx(2.0)}
    assert list(got) == ["rmse", "mae"]
    assert run(m, torch.tensor([1.0, 2.0, 5.0]), torch.tensor([[1.0], [4.0], [1.0]])) == got


# --- construction and misuse -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "task", "k", "message"),
    [
        (
            ["top5_accuracy"],
            "binary",
            1,
            "top5_accuracy needs a multiclass task with at least 5 classes",
        ),
        (
            ["top5_accuracy"],
            "multiclass",
            4,
            "top5_accuracy needs a multiclass task with at least 5 classes",
        ),
        (["mae"], "multiclass", 3, "mae needs a regression task"),
        (["rmse"], "binary", 1, "rmse needs a regression task"),
        (["accuracy"], "regression", 0, "accuracy needs a classification task"),
        (["f1"], "regression", 0, "f1 needs a classification task"),
        (["auc"], "binary", 1, "unknown metric 'auc'"),
        (["accuracy"], "multiclass", 1, "at least 2 classes"),
    ],
)
def test_inapplicable_metrics_are_rejected(
    names: list[str], task: str, k: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Metrics(names, task=task, num_classes=k)  # type: ignore[arg-type]


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"multiclass logits must be \(N, 3\)"):
        Metrics(["accuracy"], task="multiclass", num_classes=3).update(
            torch.zeros(4, 2), torch.zeros(4)
        )
    with pytest.raises(ValueError, match="binary logits"):
        Metrics(["accuracy"], task="binary", num_classes=1).update(
            torch.zeros(4, 2), torch.zeros(4)
        )
    with pytest.raises(ValueError, match="different shapes"):
        Metrics(["mae"], task="regression", num_classes=0).update(torch.zeros(4, 2), torch.zeros(4))


def test_reset_and_empty() -> None:
    m = Metrics(["accuracy", "f1"], task="multiclass", num_classes=3)
    assert all(math.isnan(v) for v in m.compute().values())
    m.update(one_hot_logits([0, 1], 3), torch.tensor([0, 1]))
    assert m.compute()["accuracy"] == 1.0
    m.reset()
    m.update(one_hot_logits([0, 1], 3), torch.tensor([1, 0]))
    assert m.compute()["accuracy"] == 0.0
    r = Metrics(["mae"], task="regression", num_classes=0)
    assert math.isnan(r.compute()["mae"])


def test_repeated_names_reported_once() -> None:
    m = Metrics(["accuracy", "accuracy"], task="multiclass", num_classes=2)
    assert list(run(m, one_hot_logits([0], 2), torch.tensor([0]))) == ["accuracy"]


def test_update_never_reads_values_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU stand-in for 'no host sync': update must not turn a tensor into a Python value."""
    cases = [
        (
            Metrics([*CLS, "top5_accuracy"], task="multiclass", num_classes=6),
            *random_multiclass(40, 6, 0),
        ),
        (Metrics(CLS, task="binary", num_classes=1), torch.randn(40, 1), torch.ones(40, 1)),
        (
            Metrics(["mae", "rmse"], task="regression", num_classes=0),
            torch.randn(40, 2),
            torch.randn(40, 2),
        ),
    ]

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("host read-back in update")

    with monkeypatch.context() as mp:
        for attr in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__"):
            mp.setattr(torch.Tensor, attr, forbidden)
        for m, logits, target in cases:
            m.update(logits, target)
            m.update(logits, target)
    for m, *_ in cases:
        assert all(math.isfinite(v) for v in m.compute().values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_update_does_not_synchronize() -> None:
    logits, target = random_multiclass(256, 10, 0)
    m = Metrics([*CLS, "top5_accuracy"], task="multiclass", num_classes=10)
    logits, target = logits.cuda(), target.cuda()
    m.update(logits, target)  # first call allocates
    torch.cuda.set_sync_debug_mode("error")
    try:
        m.update(logits, target)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert (
        m.compute()["accuracy"]
        == run(
            Metrics(["accuracy"], task="multiclass", num_classes=10), logits.cpu(), target.cpu()
        )["accuracy"]
    )


# --- segmentation ----------------------------------------------------------------------------

SEG = ["iou", "dice", "pixel_accuracy", "accuracy"]


def np_segmentation(
    pred: np.ndarray, target: np.ndarray, k: int
) -> tuple[dict[str, float], list[float | None], list[float | None]]:
    """Reference over the whole set: per-class IoU and dice, their means over present classes."""
    valid = target != -1
    p, t = pred[valid], target[valid]
    iou: list[float | None] = []
    dice: list[float | None] = []
    for c in range(k):
        tp = int(np.sum((p == c) & (t == c)))
        fp = int(np.sum((p == c) & (t != c)))
        fn = int(np.sum((p != c) & (t == c)))
        union = tp + fp + fn
        iou.append(tp / union if union else None)
        dice.append(2 * tp / (2 * tp + fp + fn) if union else None)
    acc = float(np.mean(p == t))
    means = {
        "iou": float(np.mean([v for v in iou if v is not None])),
        "dice": float(np.mean([v for v in dice if v is not None])),
        "pixel_accuracy": acc,
        "accuracy": acc,
    }
    return means, iou, dice


def random_segmentation(
    n: int, k: int, seed: int, hw: tuple[int, int] = (7, 9)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K, H, W) and targets (N, H, W): ~15% ignored, class k-1 never a target,
    class k-2 neither a target nor a prediction (it must drop out of the means)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k - 2, (n, *hw), generator=g)
    logits = torch.randn(n, k, *hw, generator=g)
    logits.scatter_add_(1, target[:, None], torch.full((n, 1, *hw), 1.0))  # favour the target
    logits[:, k - 2] = -10.0
    target[torch.rand(n, *hw, generator=g) < 0.15] = -1
    return logits, target


def test_segmentation_by_hand() -> None:
    # one 2x3 image, 3 classes; targets / predictions (-1 = ignored):
    #   t: 0 0 1    p: 0 1 1
    #      2 -1 2      2 0 1
    # class 0: tp 1, fp 0, fn 1 -> iou 1/2, dice 2/3
    # class 1: tp 1, fp 2, fn 0 -> iou 1/3, dice 2/4
    # class 2: tp 1, fp 0, fn 1 -> iou 1/2, dice 2/3     pixel accuracy 3/5
    target = torch.tensor([[[0, 0, 1], [2, -1, 2]]])
    pred = torch.tensor([[[0, 1, 1], [2, 0, 1]]])
    logits = torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float()
    m = Metrics(SEG, task="segmentation", num_classes=3)
    got = run(m, logits, target)
    assert got == {
        "iou": pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3),
        "dice": pytest.approx((2 / 3 + 2 / 4 + 2 / 3) / 3),
        "pixel_accuracy": pytest.approx(3 / 5),
        "accuracy": pytest.approx(3 / 5),
    }
    assert list(got) == SEG
    per = m.per_class()
    assert per["iou"] == pytest.approx([1 / 2, 1 / 3, 1 / 2])
    assert per["dice"] == pytest.approx([2 / 3, 2 / 4, 2 / 3])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segmentation_matches_numpy(seed: int) -> None:
    logits, target = random_segmentation(11, 5, seed)
    m = Metrics(SEG, task="segmentation", num_classes=5)
    got = run(m, logits, target)
    means, iou, dice = np_segmentation(logits.argmax(1).numpy(), target.numpy(), 5)
    assert got == pytest.approx(means, abs=1e-12)
    per = m.per_class()
    assert per["iou"][3] is None and per["dice"][3] is None  # class k-2: nowhere
    assert per["iou"][4] is not None and per["iou"][4] == 0.0  # class k-1: predicted only
    assert per == {"iou": pytest.approx(iou, abs=1e-12), "dice": pytest.approx(dice, abs=1e-12)}


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_segmentation_batch_split_invariance(seed: int) -> None:
    logits, target = random_segmentation(40, 6, seed)
    m = Metrics(SEG, task="segmentation", num_classes=6)
    whole = run(m, logits, target)
    rng = np.random.default_rng(seed)
    cuts = sorted(rng.choice(np.arange(1, 40), size=int(rng.integers(1, 12)), replace=False))
    split = run(m, logits, target, cuts=[int(c) for c in cuts])
    assert split == whole  # exact: pixel counts, not averaged per-batch ratios
    means, *_ = np_segmentation(logits.argmax(1).numpy(), target.numpy(), 6)
    assert whole == pytest.approx(means, abs=1e-12)


def test_segmentation_single_unit() -> None:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(6, 1, 8, 8, generator=g)
    target = torch.randint(0, 2, (6, 8, 8), generator=g)
    target[:, 0] = -1
    # argmax over (0, x) picks class 1 exactly where x > 0, as the sigmoid head predicts
    two = torch.cat([torch.zeros_like(x), x], 1)
    want = run(Metrics(SEG, task="segmentation", num_classes=2), two, target)
    for k in (1, 2):  # a sigmoid head may be declared as 1 output or as 2 classes
        m = Metrics(SEG, task="segmentation", num_classes=k)
        assert run(m, x, target, cuts=[1, 4]) == want
        assert len(m.per_class()["iou"]) == 2
    means, *_ = np_segmentation((x[:, 0] > 0).long().numpy(), target.numpy(), 2)
    assert want == pytest.approx(means, abs=1e-12)


def test_segmentation_target_layouts() -> None:
    logits, target = random_segmentation(4, 4, 8)
    m = Metrics(SEG, task="segmentation", num_classes=4)
    want = run(m, logits, target)
    assert run(m, logits, target[:, None]) == want  # (N, 1, H, W) masks
    assert run(m, logits, target.int()) == want


def test_segmentation_all_ignored_and_empty() -> None:
    m = Metrics(SEG, task="segmentation", num_classes=3)
    assert all(math.isnan(v) for v in m.compute().values())
    assert m.per_class() == {"iou": [None] * 3, "dice": [None] * 3}
    m.update(torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), -1))
    assert all(math.isnan(v) for v in m.compute().values())
    assert m.per_class()["iou"] == [None] * 3


def test_per_class_for_classification() -> None:
    # the multiclass example of test_multiclass_by_hand: iou = tp / (tp + fp + fn)
    m = Metrics(["accuracy"], task="multiclass", num_classes=4)
    run(m, one_hot_logits([0, 1, 1, 1, 2, 0], 4), torch.tensor([0, 0, 1, 1, 2, 2]))
    per = m.per_class()
    assert per["iou"][:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert per["iou"][3] is None  # class 3: neither a target nor a prediction
    assert per["dice"][:3] == pytest.approx([1 / 2, 4 / 5, 2 / 3])
    with pytest.raises(ValueError, match="need classes"):
        Metrics(["mae"], task="regression", num_classes=0).per_class()


@pytest.mark.parametrize(
    ("names", "task", "k", "message"),
    [
        (["iou"], "multiclass", 3, "iou needs a segmentation task, not multiclass"),
        (["dice"], "binary", 1, "dice needs a segmentation task, not binary"),
        (["pixel_accuracy"], "regression", 0, "pixel_accuracy needs a segmentation task"),
        (["f1"], "segmentation", 3, "f1 is not a segmentation metric"),
        (["top5_accuracy"], "segmentation", 6, "top5_accuracy needs a multiclass task"),
        (["mae"], "segmentation", 3, "mae needs a regression task, not segmentation"),
        (["iou"], "segmentation", 0, "at least 1 output"),
        (["iou"], "detection", 3, "unknown task 'detection'"),
    ],
)
def test_segmentation_metric_errors(names: list[str], task: str, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Metrics(names, task=task, num_classes=k)  # type: ignore[arg-type]


def test_segmentation_shape_errors() -> None:
    m = Metrics(["iou"], task="segmentation", num_classes=3)
    with pytest.raises(ValueError, match=r"\(N, K, H, W\) with K = 3"):
        m.update(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"\(N, K, H, W\) with K = 3"):
        m.update(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4))  # 1 unit but 3 classes
    with pytest.raises(ValueError, match="do not match logits"):
        m.update(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 5))


def test_segmentation_update_never_reads_values_back(monkeypatch: pytest.MonkeyPatch) -> None:
    logits, target = random_segmentation(5, 4, 9)
    cases = [
        (Metrics(SEG, task="segmentation", num_classes=4), logits, target),
        (Metrics(SEG, task="segmentation", num_classes=1), logits[:, :1], target.clamp(max=1)),
    ]

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("host read-back in update")

    with monkeypatch.context() as mp:
        for attr in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__"):
            mp.setattr(torch.Tensor, attr, forbidden)
        for m, x, y in cases:
            m.update(x, y)
            m.update(x, y)
    for m, *_ in cases:
        assert all(math.isfinite(v) for v in m.compute().values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_segmentation_update_does_not_synchronize() -> None:
    logits, target = random_segmentation(8, 5, 10, hw=(32, 32))
    m = Metrics(SEG, task="segmentation", num_classes=5)
    m.update(logits.cuda(), target.cuda())  # first call allocates
    torch.cuda.set_sync_debug_mode("error")
    try:
        m.update(logits.cuda(), target.cuda())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu = Metrics(SEG, task="segmentation", num_classes=5)
    cpu.update(logits, target)
    cpu.update(logits, target)
    assert m.compute() == cpu.compute()
