"""Tests for netspec.backends.training.losses: torch parity, hand computations, ignored pixels, sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from netspec.backends.training.losses import LossFn, balanced_class_weights, make_loss

IGNORE = -1


def seg_batch(
    n: int = 3, k: int = 4, hw: tuple[int, int] = (5, 6), seed: int = 0, ignored: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (N, K, H, W) logits and (N, H, W) targets with a fraction of ignored pixels."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, *hw, generator=g, dtype=torch.float64)
    target = torch.randint(0, k, (n, *hw), generator=g)
    target[torch.rand(n, *hw, generator=g) < ignored] = IGNORE
    return logits, target


# --- cross-entropy ---------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("spatial", [False, True])
def test_cross_entropy_matches_torch(smoothing: float, weighted: bool, spatial: bool) -> None:
    logits, target = seg_batch(seed=1)
    if not spatial:  # (N, K) classification with a few ignored samples
        logits, target = logits.permute(0, 2, 3, 1).reshape(-1, 4), target.reshape(-1)
    w = torch.tensor([0.5, 2.0, 1.0, 3.0]) if weighted else None
    loss = make_loss(["cross_entropy"], class_weights=w, label_smoothing=smoothing)
    want = F.cross_entropy(
        logits,
        target,
        weight=None if w is None else w.double(),
        ignore_index=IGNORE,
        label_smoothing=smoothing,
    )
    assert loss(logits, target).item() == pytest.approx(want.item(), rel=1e-12)


def test_cross_entropy_all_ignored_is_zero_with_zero_gradient() -> None:
    logits, _ = seg_batch()
    logits.requires_grad_(True)
    target = torch.full((3, 5, 6), IGNORE)
    for w in (None, torch.ones(4)):
        value = make_loss(["cross_entropy"], class_weights=w)(logits, target)
        assert value.item() == 0.0
        (grad,) = torch.autograd.grad(value, logits)
        assert torch.equal(grad, torch.zeros_like(grad))


def test_cross_entropy_target_column_and_int32() -> None:
    logits = torch.randn(6, 3, dtype=torch.float64)
    target = torch.tensor([0, 2, 1, 1, 0, 2])
    loss = make_loss(["cross_entropy"])
    want = F.cross_entropy(logits, target)
    assert loss(logits, target[:, None]).item() == pytest.approx(want.item(), rel=1e-12)
    assert loss(logits, target.int()).item() == pytest.approx(want.item(), rel=1e-12)


# --- binary cross-entropy --------------------------------------------------------------------


def test_bce_matches_torch_without_weights() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 1, 4, 4, generator=g, dtype=torch.float64)
    target = torch.randint(0, 2, (8, 4, 4), generator=g)
    want = F.binary_cross_entropy_with_logits(logits, target[:, None].double())
    got = make_loss(["binary_cross_entropy"])(logits, target)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    # label smoothing pulls the targets towards 1/2
    s = 0.2
    smoothed = target[:, None].double() * (1 - s) + 0.5 * s
    want = F.binary_cross_entropy_with_logits(logits, smoothed)
    got = make_loss(["binary_cross_entropy"], label_smoothing=s)(logits, target)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)


def test_bce_class_weights_and_ignored_by_hand() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0, -4.0], dtype=torch.float64)
    target = torch.tensor([1, 0, 0, IGNORE, 1])
    w0, w1 = 0.5, 2.0

    def bce(x: float, t: int) -> float:
        p = 1 / (1 + math.exp(-x))
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    kept = [(2.0, 1), (-1.0, 0), (0.5, 0), (-4.0, 1)]  # the ignored pixel is dropped
    want = sum((w1 if t else w0) * bce(x, t) for x, t in kept) / len(kept)
    loss = make_loss(["binary_cross_entropy"], class_weights=torch.tensor([w0, w1]))
    assert loss(logits, target).item() == pytest.approx(want, rel=1e-12)
    # (N, 1) logits with (N,) targets: the same elements
    assert loss(logits[:, None], target).item() == pytest.approx(want, rel=1e-12)


def test_bce_soft_float_targets() -> None:
    logits = torch.randn(10, 1, dtype=torch.float64)
    target = torch.rand(10, dtype=torch.float64)
    want = F.binary_cross_entropy_with_logits(logits[:, 0], target)
    got = make_loss(["binary_cross_entropy"])(logits, target)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)


def test_bce_all_ignored_is_zero() -> None:
    got = make_loss(["binary_cross_entropy"])(torch.randn(2, 1, 3, 3), torch.full((2, 3, 3), -1))
    assert got.item() == 0.0


# --- dice and jaccard ------------------------------------------------------------------------


def test_dice_and_jaccard_by_hand() -> None:
    # 3 pixels, 2 classes. Logits (ln 3, 0) give probabilities (3/4, 1/4); (0, 0) give (1/2, 1/2).
    # targets 0 0 1:
    # class 0: inter 3/4 + 3/4 = 3/2, sum p 2, sum t 2 -> dice (3 + 1) / (4 + 1) = 4/5,
    #          jaccard (3/2 + 1) / (4 - 3/2 + 1) = 5/7
    # class 1: inter 1/2, sum p 1, sum t 1 -> dice (1 + 1) / (2 + 1) = 2/3,
    #          jaccard (1/2 + 1) / (2 - 1/2 + 1) = 3/5
    ln3 = math.log(3)
    flat = torch.tensor([[ln3, 0.0], [ln3, 0.0], [0.0, 0.0]], dtype=torch.float64)  # (3, 2)
    target = torch.tensor([0, 0, 1])
    image = flat.T.reshape(1, 2, 1, 3)  # the same pixels as one (1, 2, 1, 3) image
    cases = {
        ("dice", None): 1 - (4 / 5 + 2 / 3) / 2,
        ("jaccard", None): 1 - (5 / 7 + 3 / 5) / 2,
        ("dice", (1.0, 3.0)): 1 - (4 / 5 + 3 * 2 / 3) / 4,
        ("jaccard", (1.0, 3.0)): 1 - (5 / 7 + 3 * 3 / 5) / 4,
    }
    for (term, w), want in cases.items():
        loss = make_loss([term], class_weights=None if w is None else torch.tensor(w))
        assert loss(flat, target).item() == pytest.approx(want, rel=1e-12)
        assert loss(image, target.view(1, 1, 3)).item() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("term", ["dice", "jaccard"])
def test_perfect_and_all_wrong(term: str) -> None:
    _, target = seg_batch(n=4, k=3, hw=(16, 16), ignored=0.0)
    right = F.one_hot(target, 3).permute(0, 3, 1, 2).double() * 40.0  # margin 40: p ~ 1 - 2e-18
    loss = make_loss([term])
    assert loss(right, target).item() == pytest.approx(0.0, abs=1e-9)
    wrong = F.one_hot((target + 1) % 3, 3).permute(0, 3, 1, 2).double() * 40.0
    # no overlap: each class scores about eps / (its ~700 pixels + eps), the loss ~ 0.999
    assert loss(wrong, target).item() == pytest.approx(1.0, abs=5e-3)
    assert loss(wrong, target).item() < 1.0


@pytest.mark.parametrize("term", ["dice", "jaccard"])
def test_single_unit_is_two_class_sigmoid(term: str) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, 4, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 2, (2, 4, 5), generator=g)
    target[0, 0, :2] = IGNORE
    two = torch.cat([torch.zeros_like(x), x], 1)  # softmax of (0, x) is (1 - sigmoid, sigmoid)
    loss = make_loss([term], class_weights=torch.tensor([1.0, 4.0]))
    assert loss(x, target).item() == pytest.approx(loss(two, target).item(), rel=1e-12)
    # (N,) logits of a binary classifier work too
    flat = make_loss([term])
    want = flat(torch.cat([torch.zeros(40, 1), x.reshape(40, 1)], 1), target.reshape(40))
    assert flat(x.reshape(40), target.reshape(40)).item() == pytest.approx(want.item())


@pytest.mark.parametrize("term", ["dice", "jaccard", "cross_entropy"])
def test_gradients_finite_and_nonzero(term: str) -> None:
    logits, target = seg_batch(seed=5)
    logits.requires_grad_(True)
    (grad,) = torch.autograd.grad(make_loss([term])(logits, target), logits)
    assert torch.isfinite(grad).all()
    # ignored pixels get no gradient, all others do
    ignored = (target == IGNORE).unsqueeze(1).expand_as(grad)
    assert (grad[ignored] == 0).all()
    assert (grad[~ignored].abs().sum() > 0) and (grad[~ignored] != 0).float().mean() > 0.9


@pytest.mark.parametrize("term", ["dice", "jaccard", "cross_entropy", "binary_cross_entropy"])
def test_ignored_pixels_do_not_count(term: str) -> None:
    k = 1 if term == "binary_cross_entropy" else 4
    logits, target = seg_batch(k=k, seed=7, ignored=0.3)
    if k == 1:
        target = torch.randint(0, 2, target.shape).where(target != IGNORE, IGNORE)
    w = torch.tensor([0.5, 2.0] if k == 1 else [1.0, 2.0, 0.5, 3.0])
    loss = make_loss([term], class_weights=w)
    value = loss(logits, target)
    # whatever the network says at ignored pixels changes nothing ...
    noisy = logits + 50 * torch.randn_like(logits) * (target == IGNORE).unsqueeze(1)
    assert loss(noisy, target).item() == pytest.approx(value.item(), rel=1e-12)
    # ... and the value is that of the valid pixels alone, as a flat (P, K) batch
    keep = target != IGNORE
    flat = logits.permute(0, 2, 3, 1)[keep]  # (P, K)
    assert loss(flat, target[keep]).item() == pytest.approx(value.item(), rel=1e-12)


# --- regression and sums ---------------------------------------------------------------------


def test_mse_and_mae() -> None:
    out = torch.tensor([[1.0], [2.0], [5.0]])
    y = torch.tensor([1, 4, 1])
    assert make_loss(["mse"])(out, y).item() == pytest.approx((0 + 4 + 16) / 3)
    assert make_loss(["mae"])(out, y).item() == pytest.approx(2.0)
    assert not make_loss(["mse"]).on_logits


def test_sum_is_weighted_sum_of_parts() -> None:
    logits, target = seg_batch(seed=9)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    total = make_loss(
        ["cross_entropy", "dice", "jaccard"],
        weights=[1.0, 0.5, 2.0],
        class_weights=w,
        label_smoothing=0.1,
    )
    parts = [make_loss([t], class_weights=w, label_smoothing=0.1) for t in total.terms]
    want = parts[0](logits, target) + 0.5 * parts[1](logits, target) + 2 * parts[2](logits, target)
    assert total(logits, target).item() == pytest.approx(want.item(), rel=1e-12)
    assert total.name == "cross_entropy + dice + jaccard"
    assert total.terms == ("cross_entropy", "dice", "jaccard")
    assert total.on_logits
    assert make_loss(["cross_entropy", "dice"]).weights == (1.0, 1.0)


def test_low_precision_logits_give_float32_loss() -> None:
    logits, target = seg_batch(seed=2)
    loss = make_loss(["cross_entropy", "dice"])
    got = loss(logits.bfloat16(), target)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(loss(logits.bfloat16().double(), target).item(), rel=1e-5)


def test_to_moves_class_weights() -> None:
    plain = make_loss(["dice"])
    assert plain.to("cpu") is plain
    weighted = make_loss(["dice"], class_weights=torch.ones(4))
    moved = weighted.to("cpu")
    assert isinstance(moved, LossFn) and moved.terms == weighted.terms
    assert moved.class_weights is not None and moved.class_weights.device.type == "cpu"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"terms": ["focal"]}, "unknown loss 'focal'"),
        ({"terms": []}, "at least one term"),
        ({"terms": ["dice", "dice"]}, "repeated"),
        ({"terms": ["mse", "dice"]}, "mixes regression losses"),
        ({"terms": ["cross_entropy", "binary_cross_entropy"]}, "cannot end in both"),
        ({"terms": ["dice"], "weights": [1.0, 2.0]}, "2 weights for 1 loss terms"),
        ({"terms": ["dice"], "weights": [-1.0]}, "must be >= 0"),
        ({"terms": ["cross_entropy"], "label_smoothing": 1.0}, r"in \[0, 1\)"),
        ({"terms": ["mae"], "class_weights": torch.ones(2)}, "do not apply"),
        ({"terms": ["dice"], "class_weights": torch.tensor([1.0, -1.0])}, "must be >= 0"),
        ({"terms": ["dice"], "class_weights": torch.ones(2, 2)}, "non-empty list"),
    ],
)
def test_make_loss_rejects(kwargs: dict, message: str) -> None:
    terms = kwargs.pop("terms")
    with pytest.raises(ValueError, match=message):
        make_loss(terms, **kwargs)


def test_shape_errors() -> None:
    logits, target = seg_batch(k=3)
    with pytest.raises(ValueError, match="3 class weights for 2 classes"):
        make_loss(["dice"], class_weights=torch.ones(3))(logits[:, :2], target.clamp(max=1))
    with pytest.raises(ValueError, match="do not match logits"):
        make_loss(["cross_entropy"])(logits, target[:, :2])
    with pytest.raises(ValueError, match="K >= 2"):
        make_loss(["cross_entropy"])(logits[:, :1], target)
    with pytest.raises(ValueError, match="one output unit per target"):
        make_loss(["binary_cross_entropy"])(logits, target)


# --- balanced class weights ------------------------------------------------------------------


def test_balanced_class_weights() -> None:
    # counts 3, 1, 0, 2 over 6 valid labels (two ignored): 6 / (4 * count), 0 for the empty class
    y = [0, 3, 0, 1, IGNORE, 3, 0, IGNORE]
    want = torch.tensor([6 / 12, 6 / 4, 0.0, 6 / 8])
    for given in (torch.tensor(y), np.array(y, dtype=np.int64), torch.tensor(y).view(2, 4)):
        got = balanced_class_weights(given, 4)
        assert got.dtype == torch.float32
        assert torch.allclose(got, want)
    # balanced weights make every present class weigh the same in total
    counts = torch.tensor([3.0, 1.0, 0.0, 2.0])
    assert torch.allclose(want * counts, torch.tensor([1.5, 1.5, 0.0, 1.5]))
    with pytest.raises(ValueError, match=r"0\.\.3"):
        balanced_class_weights(torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match="integer"):
        balanced_class_weights(np.array([0.5, 1.0]), 2)


# --- no host synchronization -----------------------------------------------------------------


def all_terms_cases() -> list[tuple[LossFn, torch.Tensor, torch.Tensor]]:
    logits, target = seg_batch(k=2, seed=11)
    single = logits[:, 1:]
    w = torch.tensor([1.0, 2.0])
    regression_targets = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(0))
    return [
        (
            make_loss(["cross_entropy", "dice", "jaccard"], class_weights=w, label_smoothing=0.1),
            logits,
            target,
        ),
        (make_loss(["binary_cross_entropy", "dice"], class_weights=w), single, target),
        (make_loss(["mse", "mae"], weights=[1.0, 0.3]), single, regression_targets),
    ]


def test_call_never_reads_values_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU stand-in for 'no host sync': the loss must not turn a tensor into a Python value."""
    cases = all_terms_cases()

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("host read-back in a loss")

    values = []
    with monkeypatch.context() as mp:
        for attr in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__"):
            mp.setattr(torch.Tensor, attr, forbidden)
        for loss, out, y in cases:
            values.append(loss(out, y))
    assert all(math.isfinite(v.item()) for v in values)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_call_does_not_synchronize() -> None:
    cases = [(loss.to("cuda"), out.cuda(), y.cuda()) for loss, out, y in all_terms_cases()]
    for loss, out, y in cases:  # warm up: lazy CUDA initialization may synchronize
        loss(out, y)
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = [loss(out, y) for loss, out, y in cases]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for value, (loss, out, y) in zip(got, all_terms_cases()):
        assert value.item() == pytest.approx(loss(out, y).item(), rel=1e-9)
