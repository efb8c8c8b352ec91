"""Where tiles go in a scene: grid starts that cover every pixel, with a chosen overlap."""

from __future__ import annotations

import math


def tile_starts(n: int, tile: int, overlap: int = 0) -> list[int]:
    """Start offsets of tiles of length `tile` covering [0, n), overlapping by at least `overlap`.

    Tiles are spread evenly; the first starts at 0 and the last ends at n, so no tile is padded.
    A scene no larger than the tile gets one tile at 0 (the caller pads it).
    """
    if tile < 1 or overlap < 0 or overlap >= tile:
        raise ValueError(f"tile {tile}, overlap {overlap}: need tile >= 1 and 0 <= overlap < tile")
    if n <= tile:
        return [0]
    count = math.ceil((n - overlap) / (tile - overlap))
    last = n - tile
    # Even spacing (not a fixed stride with a shifted last tile) keeps overlaps alike everywhere.
    return sorted({round(i * last / (count - 1)) for i in range(count)})


def grid(shape: tuple[int, int], tile: tuple[int, int], overlap: int = 0) -> list[tuple[int, int]]:
    """(top, left) of every tile of a row-major grid covering an (H, W) scene."""
    return [
        (top, left)
        for top in tile_starts(shape[0], tile[0], overlap)
        for left in tile_starts(shape[1], tile[1], overlap)
    ]
