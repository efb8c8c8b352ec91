"""Where tiles go in a scene (grid starts that cover every pixel, with a chosen overlap), and
the tiles of streamed scenes and masks, cut where they are read (`TileReader`, `windows`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from netspec.data.labels import IGNORE

if TYPE_CHECKING:
    from netspec.data.stream import Lazy


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


@dataclass(frozen=True)
class TileReader:
    """Tiles of streamed scenes (N, C, H, W) or masks (N, H, W) at each of `starts` (top, left),
    in cut order: the first start's tile of every scene, then the second's, and so on. Masks'
    `ignore`: per start, the rows and columns already scored by the tile above and to the left,
    set to IGNORE (scored_once; pipeline.cut_tiles)."""

    scenes: Lazy
    starts: tuple[tuple[int, int], ...]
    tile: tuple[int, int]
    ignore: tuple[tuple[int, int], ...] | None = None

    def __len__(self) -> int:
        return len(self.scenes) * len(self.starts)

    def read(self, i: int) -> np.ndarray:
        k, (h, w) = i // len(self.scenes), self.tile
        top, left = self.starts[k]
        scene = self.scenes[i % len(self.scenes)]
        out = np.array(scene[..., top : top + h, left : left + w])
        if self.ignore is not None:
            scored_once(out, *self.ignore[k])
        return out


def scored_once(masks: np.ndarray, rows: int, cols: int) -> None:
    """Tile masks (..., h, w) with their first `rows` rows and `cols` columns set to IGNORE in
    place: what the tile above and the tile to the left already scored."""
    masks[..., :rows, :] = IGNORE
    masks[..., :, :cols] = IGNORE


def windows(
    x: Lazy, idx: np.ndarray, tops: np.ndarray, lefts: np.ndarray, tile: tuple[int, int]
) -> np.ndarray:
    """The tile (h, w) at (top, left) of each scene x[idx] (images (C, H, W) or masks (H, W)):
    random training tiles, cut where the scenes are read (a DataLoader worker). A scene of a
    memory-mapped cache is read only there."""
    h, w = tile
    out = np.empty((len(idx), *x.sample_shape[:-2], h, w), dtype=x.dtype)
    for j, (i, top, left) in enumerate(zip(idx, tops, lefts)):
        t, lf = int(top), int(left)
        if x.in_place:
            out[j] = x.reader.array[int(x.index[i]), ..., t : t + h, lf : lf + w]  # type: ignore[attr-defined]
        else:
            out[j] = x[int(i)][..., t : t + h, lf : lf + w]
    return out
