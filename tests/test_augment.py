"""Tests for netspec.backends.training.augment: exact symmetries, mask alignment, determinism, resuming."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from netspec.backends.training.augment import Augmenter, _warp, affine_matrices
from netspec.train_spec import Augment

CPU = torch.device("cpu")


def make(seed: int = 0, **cfg: object) -> Augmenter:
    return Augmenter(Augment(**cfg), seed=seed, device=CPU)


def dihedral_refs(img: torch.Tensor) -> list[torch.Tensor]:
    """The 8 symmetries of the square built from torch.rot90 and torch.flip, (C, H, W) each."""
    rots = [torch.rot90(img, k, dims=(-2, -1)) for k in range(4)]
    return rots + [r.flip(-1) for r in rots]


def match_index(out: torch.Tensor, refs: list[torch.Tensor]) -> int:
    hits = [i for i, r in enumerate(refs) if torch.equal(out, r)]
    assert len(hits) == 1, f"output matches {len(hits)} references"
    return hits[0]


def blob_mask(n: int, k: int, size: int, seed: int = 0) -> torch.Tensor:
    """Piecewise-constant class masks (N, size, size): 4x4 random labels upsampled by nearest."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randint(0, k, (n, 1, 4, 4), generator=g).float()
    return F.interpolate(low, size=(size, size), mode="nearest")[:, 0].long()


def one_hot_image(mask: torch.Tensor, k: int) -> torch.Tensor:
    return F.one_hot(mask, k).permute(0, 3, 1, 2).float()  # (N, K, H, W)


# --- enabled / identity ----------------------------------------------------------------------


def test_all_off_is_disabled_and_returns_inputs() -> None:
    aug = make()
    assert aug.enabled is False
    x = torch.rand(3, 2, 5, 5)
    m = torch.zeros(3, 5, 5, dtype=torch.long)
    out, mask = aug(x, m)
    assert out is x and mask is m


def test_zero_amounts_are_disabled() -> None:
    assert make(rotate=0.0, shift=0.0, zoom=0.0, dihedral=False, flip=None).enabled is False
    for cfg in ({"flip": "horizontal"}, {"dihedral": True}, {"rotate": 5.0}, {"shift": 0.1}):
        assert make(**cfg).enabled is True


def test_identity_affine_is_exact() -> None:
    x = torch.rand(4, 3, 7, 9)
    m = torch.randint(0, 5, (4, 7, 9))
    zeros = torch.zeros(4, dtype=torch.float64)
    theta = affine_matrices(
        angle=zeros, shift_x=zeros, shift_y=zeros, scale=zeros + 1, h=7, w=9
    ).float()
    out, mask = _warp(x, m, theta)
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)
    assert torch.equal(mask, m)


def test_tiny_rotation_is_nearly_identity() -> None:
    x = torch.rand(4, 3, 16, 16)
    out, _ = make(rotate=1e-6)(x)
    torch.testing.assert_close(out, x, atol=1e-4, rtol=0)


# --- flips and the dihedral group ------------------------------------------------------------


def test_dihedral_outputs_are_the_eight_symmetries() -> None:
    img = torch.arange(3 * 6 * 6, dtype=torch.float32).view(3, 6, 6)  # no symmetry at all
    refs = dihedral_refs(img)
    assert len({tuple(r.flatten().tolist()) for r in refs}) == 8
    out, _ = make(dihedral=True)(img.expand(400, -1, -1, -1).contiguous())
    seen = [match_index(o, refs) for o in out]
    assert set(seen) == set(range(8))
    # Uniform over the 8 elements: 50 expected each.
    counts = torch.bincount(torch.tensor(seen), minlength=8)
    assert counts.min() > 25 and counts.max() < 80


@pytest.mark.parametrize(
    ("flip", "allowed"),
    [
        ("horizontal", [(), (-1,)]),
        ("vertical", [(), (-2,)]),
        ("both", [(), (-1,), (-2,), (-2, -1)]),
    ],
)
def test_flips(flip: str, allowed: list[tuple[int, ...]]) -> None:
    img = torch.rand(2, 5, 7)
    refs = [img.flip(d) if d else img for d in allowed]
    out, _ = make(flip=flip)(img.expand(1000, -1, -1, -1).contiguous())
    seen = torch.tensor([match_index(o, refs) for o in out])
    counts = torch.bincount(seen, minlength=len(refs))
    assert counts.min() > 1000 / len(refs) * 0.8  # each axis flipped with probability 0.5


@pytest.mark.parametrize(
    "cfg", [{"flip": "both"}, {"dihedral": True}, {"flip": "horizontal", "dihedral": True}]
)
def test_permutations_preserve_pixel_multiset(cfg: dict[str, object]) -> None:
    x = torch.rand(16, 3, 8, 8)
    out, _ = make(**cfg)(x)
    assert not torch.equal(out, x)
    torch.testing.assert_close(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_dihedral_needs_square_images() -> None:
    aug = make(dihedral=True)
    with pytest.raises(ValueError, match=r"dihedral needs square images.*6x8"):
        aug(torch.rand(2, 1, 6, 8))
    with pytest.raises(ValueError, match="square"):
        aug.check_shape((2, 1, 6, 8))
    aug.check_shape((2, 1, 8, 8))
    make(flip="both").check_shape((2, 1, 6, 8))  # flips don't care


# --- masks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg", [{"flip": "both"}, {"dihedral": True}, {"flip": "vertical", "dihedral": True}]
)
def test_mask_follows_flips_and_dihedral_exactly(cfg: dict[str, object]) -> None:
    k = 5
    mask = torch.randint(0, k, (32, 12, 12))
    img = one_hot_image(mask, k)
    out, out_mask = make(**cfg)(img, mask)
    assert out_mask.dtype == mask.dtype and out_mask.shape == mask.shape
    assert torch.equal(out.argmax(1), out_mask)
    # The (N, K, H, W) float form of the mask gets the same transform.
    out2, soft = make(**cfg)(img, img.clone())
    assert torch.equal(out2, soft)


@pytest.mark.parametrize(
    "cfg",
    [
        {"rotate": 30.0},
        {"shift": 0.2},
        {"zoom": 0.3},
        {"rotate": 20.0, "shift": 0.1, "zoom": 0.2, "flip": "both"},
    ],
)
def test_mask_follows_affine(cfg: dict[str, object]) -> None:
    k = 4
    mask = blob_mask(24, k, 32)
    img = one_hot_image(mask, k)
    out, out_mask = make(seed=3, **cfg)(img, mask)
    assert out_mask.dtype == torch.long
    assert set(out_mask.unique().tolist()) <= set(range(k))  # nearest never blends labels
    agree = (out.argmax(1) == out_mask).float().mean().item()
    assert agree > 0.95
    assert not torch.equal(out_mask, mask)
    # The float (N, K, H, W) mask stays exactly one-hot under nearest sampling.
    _, soft = make(seed=3, **cfg)(img, img.clone())
    assert torch.equal(soft.argmax(1), out_mask)
    assert torch.equal(soft.sum(1), torch.ones_like(soft[:, 0]))


def test_mask_shape_is_checked() -> None:
    with pytest.raises(ValueError, match="mask"):
        make(flip="horizontal")(torch.rand(2, 1, 8, 8), torch.zeros(2, 8, 7, dtype=torch.long))


# --- the affine geometry ---------------------------------------------------------------------


def rot_theta(
    angle_deg: float, h: int, w: int, *, sx: float = 0.0, sy: float = 0.0, scale: float = 1.0
) -> torch.Tensor:
    one = torch.ones(1, dtype=torch.float64)
    return affine_matrices(
        angle=one * math.radians(angle_deg),
        shift_x=one * sx,
        shift_y=one * sy,
        scale=one * scale,
        h=h,
        w=w,
    ).float()


def test_rotate_90_on_square_is_rot90() -> None:
    x = torch.rand(1, 2, 6, 6)
    out, _ = _warp(x, None, rot_theta(90.0, 6, 6))
    torch.testing.assert_close(out, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_rotation_is_in_pixel_units_on_non_square_images() -> None:
    # A point 2.5 px right and 0.5 px below the centre of an 8x12 image, turned 90° clockwise,
    # lands 0.5 px left and 2.5 px below: a rotation in normalized units would stretch it.
    h, w = 8, 12
    mask = torch.zeros(1, h, w, dtype=torch.long)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    mask[0, int(cy + 0.5), int(cx + 2.5)] = 1
    _, out = _warp(torch.zeros(1, 1, h, w), mask, rot_theta(90.0, h, w))
    assert out.sum() == 1
    assert out[0, int(cy + 2.5), int(cx - 0.5)] == 1


def test_shift_moves_by_whole_pixels_with_border_fill() -> None:
    x = torch.rand(1, 1, 5, 10)
    out, _ = _warp(x, None, rot_theta(0.0, 5, 10, sx=0.2))  # 2 px right
    torch.testing.assert_close(out[..., 2:], x[..., :-2], atol=1e-5, rtol=0)
    # fill 'nearest': the uncovered columns repeat the edge column
    torch.testing.assert_close(out[..., :2], x[..., :1].expand(-1, -1, -1, 2), atol=1e-5, rtol=0)
    out, _ = _warp(x, None, rot_theta(0.0, 5, 10, sy=-0.2))  # 1 px up
    torch.testing.assert_close(out[..., :-1, :], x[..., 1:, :], atol=1e-5, rtol=0)


def test_zoom_scales_about_the_centre() -> None:
    # A centred 2x2 block zoomed in 2x becomes a centred 4x4 block.
    mask = torch.zeros(1, 8, 8, dtype=torch.long)
    mask[0, 3:5, 3:5] = 1
    _, out = _warp(torch.zeros(1, 1, 8, 8), mask, rot_theta(0.0, 8, 8, scale=2.0))
    expected = torch.zeros_like(mask)
    expected[0, 2:6, 2:6] = 1
    assert torch.equal(out, expected)


def test_random_parameters_stay_in_range() -> None:
    aug = make(rotate=15.0, shift=0.1, zoom=0.2)
    theta = aug._draw_affine(2000, 16, 16).double()  # square: no aspect factors
    lin = theta[:, :, :2]
    scale = 1 / lin.det().sqrt()
    angle = torch.atan2(lin[:, 0, 1], lin[:, 0, 0]).rad2deg()
    assert angle.abs().max() <= 15.0 + 1e-4 and angle.abs().max() > 14.0
    assert scale.min() >= 0.8 - 1e-5 and scale.max() <= 1.2 + 1e-5
    assert scale.min() < 0.82 and scale.max() > 1.18
    shift = -torch.linalg.solve(lin, theta[:, :, 2]) / 2  # back to fractions of the size
    assert shift.abs().max() <= 0.1 + 1e-5 and shift.abs().max() > 0.09


# --- determinism and resuming ----------------------------------------------------------------

ALL = {"flip": "both", "dihedral": True, "rotate": 10.0, "shift": 0.1, "zoom": 0.1}


def test_same_seed_same_batches() -> None:
    x = torch.rand(8, 3, 16, 16)
    a, b, c = make(seed=7, **ALL), make(seed=7, **ALL), make(seed=8, **ALL)
    for _ in range(3):
        oa, ob, oc = a(x)[0], b(x)[0], c(x)[0]
        assert torch.equal(oa, ob)
        assert not torch.equal(oa, oc)


def test_state_dict_round_trip_continues_the_stream() -> None:
    x = torch.rand(8, 3, 16, 16)
    a = make(seed=1, **ALL)
    a(x)
    state = a.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    expected = [a(x)[0] for _ in range(2)]
    b = make(seed=999, **ALL)
    b.load_state_dict(state)
    assert all(torch.equal(b(x)[0], e) for e in expected)


# --- shapes, dtypes, devices -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.uint8])
def test_shape_dtype_device_preserved(dtype: torch.dtype) -> None:
    x = (torch.rand(4, 3, 10, 10) * 200).to(dtype)
    out, mask = make(**ALL)(x, torch.zeros(4, 10, 10, dtype=torch.uint8))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert mask.shape == (4, 10, 10) and mask.dtype == torch.uint8


def test_channels_last_preserved() -> None:
    x = torch.rand(4, 3, 10, 10).contiguous(memory_format=torch.channels_last)
    out, _ = make(**ALL)(x)
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", [(4, 3, 20), (4, 7)])
def test_non_image_batches_pass_through(shape: tuple[int, ...]) -> None:
    x = torch.rand(shape)
    out, mask = make(**ALL)(x)
    assert out is x and mask is None


def test_batch_on_another_device_is_an_error() -> None:
    aug = Augmenter(Augment(flip="both"), seed=0, device=torch.device("meta"))
    with pytest.raises(ValueError, match="set up for meta"):
        aug(torch.rand(2, 1, 4, 4))
    # An index-less device name matches any device of its type ("cuda" and "cuda:0").
    Augmenter(Augment(flip="both"), seed=0, device=torch.device("cpu"))(torch.rand(2, 1, 4, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    x = torch.rand(8, 3, 16, 16)
    m = blob_mask(8, 3, 16)
    cpu = make(seed=5, **ALL)(x, m)
    cuda = Augmenter(Augment(**ALL), seed=5, device=torch.device("cuda"))(x.cuda(), m.cuda())
    torch.testing.assert_close(cuda[0].cpu(), cpu[0], atol=1e-5, rtol=0)
    assert (cuda[1].cpu() == cpu[1]).float().mean() > 0.99
