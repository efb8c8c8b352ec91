"""Random training tiles: scenes larger than the network's input give a random tile each, in one
gather (scenes on the device), or cut by the workers where streamed scenes are read."""

from __future__ import annotations

import torch

from .loader import Cut, Streamed


def tile_positions(
    b: int, scene: tuple[int, int], tile: tuple[int, int], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (B, 1) tops and lefts of b random tiles in a scene, drawn from `generator` (on the
    CPU: resumable) in one order whoever cuts them, so every path cuts the same tiles."""
    (sh, sw), (h, w) = scene, tile
    tops = torch.randint(0, sh - h + 1, (b, 1), generator=generator)
    lefts = torch.randint(0, sw - w + 1, (b, 1), generator=generator)
    return tops, lefts


def tile_cut(
    b: int, scene: tuple[int, int], tile: tuple[int, int], generator: torch.Generator
) -> Cut:
    """`tile_positions` as a streamed batch's cut: what the workers cut from its scenes."""
    tops, lefts = tile_positions(b, scene, tile, generator)
    return tops[:, 0].numpy(), lefts[:, 0].numpy(), tile


def _scenes(t: torch.Tensor | Streamed, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """t's scenes and where scenes `idx` are in them: a streamed t decodes only those now (in
    order, repeats included)."""
    if isinstance(t, Streamed):
        return t[idx], torch.arange(idx.shape[0])
    return t, idx


def random_tiles(
    x: torch.Tensor | Streamed,
    y: torch.Tensor | Streamed,
    idx: torch.Tensor,
    tile: tuple[int, int] | None,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random tile of size `tile` (h, w) from each scene `idx` of x (N, C, H, W), with its
    mask from y (N, H, W); the positions come from `generator` (`tile_positions`). A streamed
    x or y decodes only the batch's scenes, then cuts the same tiles from them."""
    assert tile is not None
    h, w = tile
    c, sh, sw = x.shape[1:]
    tops, lefts = tile_positions(idx.shape[0], (sh, sw), tile, generator)
    x, xs = _scenes(x, idx)
    y, ys = _scenes(y, idx)
    device = x.device
    rows = (tops + torch.arange(h)).to(device)[:, :, None]  # (B, h, 1)
    cols = (lefts + torch.arange(w)).to(device)[:, None, :]  # (B, 1, w)
    masks = y[ys.to(y.device)[:, None, None], rows, cols]
    tiles = x[
        xs.to(device)[:, None, None, None],
        torch.arange(c, device=device)[:, None, None],
        rows[:, None],
        cols[:, None],
    ]
    return tiles, masks
