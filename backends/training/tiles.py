"""Random training tiles: scenes larger than the network's input give a random tile each, in one gather."""

from __future__ import annotations

import torch

from .loader import Streamed


def random_tiles(
    x: torch.Tensor | Streamed,
    y: torch.Tensor,
    idx: torch.Tensor,
    tile: tuple[int, int] | None,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random tile of size `tile` (h, w) from each scene `idx` of x (N, C, H, W), with its
    mask from y (N, H, W); the positions come from `generator` (on the CPU: resumable). A
    streamed x decodes only the batch's scenes, then cuts the same tiles from them."""
    assert tile is not None
    h, w = tile
    c, sh, sw = x.shape[1:]
    b = idx.shape[0]
    device = x.device
    tops = torch.randint(0, sh - h + 1, (b, 1), generator=generator)
    lefts = torch.randint(0, sw - w + 1, (b, 1), generator=generator)
    rows = (tops + torch.arange(h)).to(device)[:, :, None]  # (B, h, 1)
    cols = (lefts + torch.arange(w)).to(device)[:, None, :]  # (B, 1, w)
    scene = idx.to(y.device)[:, None, None]
    masks = y[scene, rows, cols]
    if isinstance(x, Streamed):
        x = x[idx]  # the batch's scenes, decoded now (in order, repeats included)
        scene = torch.arange(b, device=device)[:, None, None]
    tiles = x[
        scene[:, None],
        torch.arange(c, device=device)[:, None, None],
        rows[:, None],
        cols[:, None],
    ]
    return tiles, masks
