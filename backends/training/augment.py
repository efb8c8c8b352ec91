"""Batched random augmentation of training images (and their segmentation masks) on the device."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from netspec.train_spec import Augment

__all__ = ["Augmenter"]


def _pixel_permutations(h: int, w: int, *, dihedral: bool, device: torch.device) -> Tensor:
    """Source-pixel index tables, one row per transform: out.flat[p] = x.flat[table[g, p]].

    Applying a pixel-moving transform to the index grid `arange(h*w)` gives exactly the table
    that a gather needs, so every flip/rotation becomes one batched gather with per-sample rows.
    Rows: dihedral -> g in 0..7 = rot90^(g % 4), then a horizontal flip if g >= 4;
    otherwise 0..3 = identity, horizontal, vertical, both.
    """
    grid = torch.arange(h * w, device=device).view(h, w)  # (H, W)
    if dihedral:
        rots = [torch.rot90(grid, k, dims=(0, 1)) for k in range(4)]
        tables = rots + [r.flip(1) for r in rots]
    else:
        tables = [grid, grid.flip(1), grid.flip(0), grid.flip((0, 1))]
    return torch.stack([t.reshape(-1) for t in tables])  # (G, H*W)


def _same_device(actual: torch.device, expected: torch.device) -> bool:
    # torch.device("cuda") means the current device: it must match a batch on "cuda:0".
    return actual.type == expected.type and expected.index in (None, actual.index)


def _gather_pixels(t: Tensor, src: Tensor) -> Tensor:
    """Move pixels of t (N, C, H, W) or (N, H, W) by per-sample source indices src (N, H*W)."""
    flat = t.reshape(*t.shape[:-2], -1)  # (N, [C,] H*W)
    # Expanding the index (stride 0 over channels) costs no memory.
    index = src if t.dim() == 3 else src[:, None, :].expand(-1, t.shape[1], -1)
    return flat.gather(-1, index).view(t.shape)


class Augmenter:
    """Random flips, dihedral symmetries and one affine warp per batch, all batched tensor ops.

    Random numbers come from a CPU torch.Generator seeded with `seed` and are moved to the
    device afterwards, so a CPU run and a CUDA run with the same seed see the same transforms.
    """

    def __init__(self, cfg: Augment, *, seed: int, device: torch.device) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self._gen = torch.Generator(device="cpu")
        self._gen.manual_seed(seed)
        self._affine = cfg.rotate > 0 or cfg.shift > 0 or cfg.zoom > 0
        self._permute = cfg.flip is not None or cfg.dihedral
        self.enabled: bool = self._permute or self._affine
        self._tables: dict[tuple[int, int, bool], Tensor] = {}

    # --- checks -------------------------------------------------------------------------------

    def check_shape(self, shape: tuple[int, ...] | torch.Size) -> None:
        """Raise ValueError if batches of this shape (N, C, H, W) can't take the transforms."""
        if self.cfg.dihedral and len(shape) == 4 and shape[-1] != shape[-2]:
            raise ValueError(
                f"augment.dihedral needs square images (height == width), got "
                f"{shape[-2]}x{shape[-1]}; use augment.flip for non-square images"
            )

    def _check_mask(self, x: Tensor, mask: Tensor) -> None:
        ok = (
            mask.dim() in (3, 4) and mask.shape[0] == x.shape[0] and mask.shape[-2:] == x.shape[-2:]
        )
        if not ok:
            raise ValueError(
                f"mask must be (N, H, W) or (N, K, H, W) matching images {tuple(x.shape)}, "
                f"got {tuple(mask.shape)}"
            )

    # --- the transform ------------------------------------------------------------------------

    def __call__(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Augment a batch x (N, C, H, W) and, with the same transform, its mask if given.

        Other ranks ((N, C, L) sequences, (N, F) features) are returned unchanged: every
        configured transform is spatial.
        """
        if not self.enabled or x.dim() != 4:
            return x, mask
        self.check_shape(x.shape)
        if not _same_device(x.device, self.device):
            raise ValueError(f"augmenter is set up for {self.device}, got a batch on {x.device}")
        if mask is not None:
            self._check_mask(x, mask)
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        n, _, h, w = x.shape
        if self._permute:
            src = self._draw_permutation(n, h, w)  # (N, H*W)
            x = _gather_pixels(x, src)
            if mask is not None:
                mask = _gather_pixels(mask, src)
        if self._affine:
            theta = self._draw_affine(n, h, w)  # (N, 2, 3)
            x, mask = _warp(x, mask, theta)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, mask

    def _table(self, h: int, w: int, dihedral: bool) -> Tensor:
        key = (h, w, dihedral)
        if key not in self._tables:
            self._tables[key] = _pixel_permutations(h, w, dihedral=dihedral, device=self.device)
        return self._tables[key]

    def _draw_permutation(self, n: int, h: int, w: int) -> Tensor:
        """Per-sample source-pixel indices (N, H*W) composing the configured flip and dihedral."""
        src: Tensor | None = None
        flip = self.cfg.flip
        if flip is not None:
            # Bit 0: horizontal, bit 1: vertical, each on with probability 0.5 independently.
            bits = torch.randint(0, 2, (n, 2), generator=self._gen)  # (N, 2)
            if flip == "horizontal":
                bits[:, 1] = 0
            elif flip == "vertical":
                bits[:, 0] = 0
            choice = (bits[:, 0] + 2 * bits[:, 1]).to(self.device)  # (N,)
            src = self._table(h, w, False)[choice]  # (N, H*W)
        if self.cfg.dihedral:
            choice = torch.randint(0, 8, (n,), generator=self._gen).to(self.device)  # (N,)
            perm = self._table(h, w, True)[choice]  # (N, H*W)
            # Flip first, then the symmetry: out = x.flat[src[perm]].
            src = perm if src is None else src.gather(1, perm)
        assert src is not None
        return src

    def _draw_affine(self, n: int, h: int, w: int) -> Tensor:
        """Per-sample affine_grid matrices (N, 2, 3) for a random rotation, shift and zoom."""
        cfg = self.cfg
        u = torch.rand(n, 4, generator=self._gen, dtype=torch.float64) * 2 - 1  # (N, 4) in [-1, 1)
        theta = affine_matrices(
            angle=u[:, 0] * math.radians(cfg.rotate),
            shift_x=u[:, 1] * cfg.shift,
            shift_y=u[:, 2] * cfg.shift,
            scale=1 + u[:, 3] * cfg.zoom,
            h=h,
            w=w,
        )
        return theta.to(torch.float32).to(self.device)

    # --- resuming -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Tensor]:
        """The generator state, so a resumed run continues the same random stream."""
        return {"generator": self._gen.get_state()}

    def load_state_dict(self, d: dict[str, Tensor]) -> None:
        self._gen.set_state(d["generator"].cpu())


def affine_matrices(
    *, angle: Tensor, shift_x: Tensor, shift_y: Tensor, scale: Tensor, h: int, w: int
) -> Tensor:
    """affine_grid matrices (N, 2, 3) from per-sample angles (radians), shifts and scales.

    Shifts are fractions of the width (x) and height (y); scale > 1 zooms in.

    The forward map is y = s·R(a)·x + t in pixel units about the image centre (y axis down, so a
    positive angle turns the picture clockwise on screen); affine_grid wants the inverse,
    output -> input, in normalized [-1, 1] coordinates where one unit is w/2 pixels
    horizontally and h/2 vertically, hence the aspect factors.
    """
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # (N,)
    tx, ty = shift_x * 2, shift_y * 2  # normalized units
    # L = D⁻¹ R(-a)/s D with D = diag(w/2, h/2); input = L (output - t).
    l00, l01 = cos, sin * (h / w)
    l10, l11 = -sin * (w / h), cos
    return torch.stack(
        [
            torch.stack([l00, l01, -(l00 * tx + l01 * ty)], dim=1),
            torch.stack([l10, l11, -(l10 * tx + l11 * ty)], dim=1),
        ],
        dim=1,
    )  # (N, 2, 3)


@functools.lru_cache(maxsize=8)
def _base_grid(h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Pixel-center coordinates in [-1, 1] (align_corners=False) as rows (x, y, 1)."""
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=dtype, device=device)
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=dtype, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).view(h * w, 3)


def _warp(x: Tensor, mask: Tensor | None, theta: Tensor) -> tuple[Tensor, Tensor | None]:
    """One grid_sample per tensor; border padding repeats edge pixels like Keras' fill 'nearest'."""
    # The grid stays fp32 (fp64 for fp64 images): a bf16 grid would be ~0.5 px off at 224 px.
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    # Same grid as F.affine_grid, but the base grid is cached: affine_grid rebuilds it every call
    # and was measured 30x slower than this when the two cores are oversubscribed.
    base = _base_grid(h, w, work, x.device)  # (H*W, 3)
    grid = torch.matmul(base, theta.to(work).transpose(1, 2)).view(n, h, w, 2)  # (N, H, W, 2)
    out = F.grid_sample(
        x.to(work), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    out = out.to(x.dtype) if x.is_floating_point() else out.round().to(x.dtype)
    if mask is not None:
        # Nearest keeps class indices and one-hot masks exact (no blended labels).
        m = mask[:, None] if mask.dim() == 3 else mask  # (N, K, H, W)
        warped = F.grid_sample(
            m.to(work), grid, mode="nearest", padding_mode="border", align_corners=False
        ).to(m.dtype)
        mask = warped[:, 0] if mask.dim() == 3 else warped
    return out, mask
