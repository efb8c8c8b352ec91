"""Segmenting scenes of any size tile by tile (numpy, any engine): grid, stitching, TTA, probabilities."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from netspec.data.tiles import grid

Run = Callable[[np.ndarray], np.ndarray]
Variant = tuple[int, bool]  # (quarter turns counterclockwise, mirrored left-right first)


class SceneError(ValueError):
    """A scene or a model output that tiled segmentation cannot handle."""


def tta_variants(tile: tuple[int, int], tta: bool = True) -> tuple[Variant, ...]:
    """The symmetries each tile is run under: the 8 of a square, the 4 keeping a rectangle's shape
    (identity, left-right and up-down mirrors, half turn), or the identity alone without TTA."""
    if not tta:
        return ((0, False),)
    if tile[0] == tile[1]:
        return tuple((k, m) for m in (False, True) for k in range(4))
    return ((0, False), (0, True), (2, True), (2, False))  # (2, True): the up-down mirror


def transform(x: np.ndarray, variant: Variant) -> np.ndarray:
    """One symmetry of images (..., H, W)."""
    k, mirror = variant
    return np.rot90(x[..., ::-1] if mirror else x, k, axes=(-2, -1))


def untransform(y: np.ndarray, variant: Variant) -> np.ndarray:
    """The inverse of transform(., variant): back to the original orientation."""
    k, mirror = variant
    y = np.rot90(y, -k, axes=(-2, -1))
    return y[..., ::-1] if mirror else y


def probabilities(outputs: np.ndarray, head: str | None = None) -> np.ndarray:
    """Class probabilities of outputs (N, K, ...): as they are when the model ends in a softmax or
    sigmoid (`head`), else a softmax over K (a sigmoid for a single unit)."""
    y = np.asarray(outputs, dtype=np.float32)
    if head in ("softmax", "sigmoid"):
        return y
    if y.shape[1] == 1:
        return 0.5 * (1.0 + np.tanh(0.5 * y))  # the sigmoid, without overflow for large |y|
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def blend_window(tile: tuple[int, int], overlap: int) -> np.ndarray:
    """Stitching weights (h, w): 1 in the middle, falling linearly over `overlap` pixels towards
    the tile's edges but never to 0, so a pixel only one tile covers keeps that tile's value."""

    def ramp(n: int) -> np.ndarray:
        d = np.arange(n, dtype=np.float32)
        return np.minimum(1.0, np.minimum(d + 1, n - d) / (overlap + 1))

    return np.outer(ramp(tile[0]), ramp(tile[1])).astype(np.float32)


def mask_of(probs: np.ndarray) -> np.ndarray:
    """Class ids (H, W) of probabilities (K, H, W): the argmax, or p >= 0.5 for a single unit."""
    if probs.shape[0] == 1:
        return (probs[0] >= 0.5).astype(np.uint8)
    return probs.argmax(axis=0)


@dataclass(frozen=True)
class Segmentation:
    """A scene's class probabilities (K, H, W), from how many tiles and TTA variants per tile."""

    probs: np.ndarray
    tiles: int
    tta: int

    @property
    def mask(self) -> np.ndarray:
        return mask_of(self.probs)


@dataclass(frozen=True)
class SceneSegmenter:
    """Segments scenes (C, H, W) of any size with a model of fixed tile size, tile by tile.

    Tiles are placed by netspec.data.tiles.grid; a scene smaller than a tile is reflect-padded
    and its output cropped back. Each tile's raw values go through `prepare` (the model's value
    steps), then through every TTA variant; `run` maps a batch of model inputs (N, C, h, w)
    float32 to outputs (N, K, h, w). Probabilities (see `probabilities`) are averaged over the
    variants, blended across tiles with `blend_window` and normalized by the summed weights.
    """

    run: Run
    tile: tuple[int | None, int | None] = (None, None)  # the model's input (h, w); None: any
    overlap: int | None = None  # pixels; default: a quarter of the smaller tile side
    tta: bool = False
    batch_size: int = 16  # model inputs per call of `run` (tiles x variants)
    prepare: Callable[[np.ndarray], np.ndarray] | None = None  # raw tiles -> model inputs
    head: str | None = None  # softmax | sigmoid: the outputs are probabilities already

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SceneError(f"batch size {self.batch_size}: expected a positive number")
        sides = [d for d in self.tile if d is not None]
        if any(d < 1 for d in sides):
            raise SceneError(f"tile {self.tile}: expected positive sides")
        side = min(sides, default=None)
        if self.overlap is not None and (self.overlap < 0 or (side and self.overlap >= side)):
            raise SceneError(
                f"overlap {self.overlap}: expected 0 <= overlap < the tile side {side}"
            )

    def tile_for(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The tile (h, w) for a scene of `shape` (H, W): the model's, or the scene's if dynamic."""
        return (self.tile[0] or shape[0], self.tile[1] or shape[1])

    def overlap_for(self, tile: tuple[int, int]) -> int:
        overlap = min(tile) // 4 if self.overlap is None else self.overlap
        return min(overlap, min(tile) - 1)  # a dynamic side (one tile of the scene) may be short

    def segment(self, scene: np.ndarray) -> Segmentation:
        """Class probabilities (K, H, W) of one scene of raw values (C, H, W)."""
        scene = np.asarray(scene, dtype=np.float32)
        if scene.ndim != 3:
            raise SceneError(f"scene of shape {scene.shape}; expected (C, H, W)")
        H, W = scene.shape[1:]
        h, w = tile = self.tile_for((H, W))
        top, left = max(0, h - H) // 2, max(0, w - W) // 2
        if h > H or w > W:  # smaller than a tile: reflect the scene's own values around it
            pad = ((0, 0), (top, max(0, h - H) - top), (left, max(0, w - W) - left))
            scene = np.pad(scene, pad, mode="reflect")
        overlap = self.overlap_for(tile)
        starts = grid(scene.shape[1:], tile, overlap)
        variants = tta_variants(tile, self.tta)
        window = blend_window(tile, overlap)
        total = weight = None
        per_call = max(1, self.batch_size // len(variants))
        for i in range(0, len(starts), per_call):
            group = starts[i : i + per_call]
            raw = np.stack([scene[:, t : t + h, s : s + w] for t, s in group])
            probs = self._tile_probs(raw, variants)
            if probs.shape[2:] != tile:
                if len(starts) == 1 and tile == (H, W):  # the whole scene: take it as it comes
                    return Segmentation(probs[0], 1, len(variants))
                raise SceneError(
                    f"outputs of {probs.shape[3]}x{probs.shape[2]} for tiles of {w}x{h} (width x "
                    "height): tiles are stitched only when the output has the input's size"
                )
            if total is None:
                total = np.zeros((probs.shape[1], *scene.shape[1:]), dtype=np.float32)
                weight = np.zeros(scene.shape[1:], dtype=np.float32)
            for (t, s), p in zip(group, probs):
                total[:, t : t + h, s : s + w] += p * window
                weight[t : t + h, s : s + w] += window
        assert total is not None and weight is not None  # grid() gives at least one tile
        probs = (total / weight)[:, top : top + H, left : left + W]
        return Segmentation(np.ascontiguousarray(probs), len(starts), len(variants))

    __call__ = segment

    def _tile_probs(self, raw: np.ndarray, variants: Sequence[Variant]) -> np.ndarray:
        """Probabilities (n, K, h, w) of n raw tiles, averaged over the TTA variants."""
        x = self.prepare(raw) if self.prepare is not None else raw
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise SceneError(f"prepared tiles of shape {x.shape}; expected (N, C, h, w)")
        inputs = np.concatenate([transform(x, v) for v in variants])  # variant-major
        outs = []
        for i in range(0, len(inputs), self.batch_size):
            out = np.asarray(self.run(np.ascontiguousarray(inputs[i : i + self.batch_size])))
            if out.ndim != 4 or len(out) != min(self.batch_size, len(inputs) - i):
                raise SceneError(
                    f"outputs of shape {out.shape} for {min(self.batch_size, len(inputs) - i)} "
                    "tiles; expected (N, K, h, w)"
                )
            outs.append(probabilities(out, self.head))
        probs = np.concatenate(outs).reshape(len(variants), len(x), *outs[0].shape[1:])
        return sum(untransform(p, v) for p, v in zip(probs, variants)) / len(variants)


def segment_scene(
    run: Run,
    scene: np.ndarray,
    tile: tuple[int | None, int | None] = (None, None),
    *,
    overlap: int | None = None,
    tta: bool = False,
    batch_size: int = 16,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    head: str | None = None,
) -> np.ndarray:
    """Class probabilities (K, H, W) of a scene (C, H, W), tiled: see SceneSegmenter."""
    segmenter = SceneSegmenter(run, tile, overlap, tta, batch_size, prepare, head)
    return segmenter.segment(scene).probs


def describe_tiling(tile: tuple[int, int]) -> dict[str, object]:
    """How `netspec predict` segments a scene of any size with a model of this tile (h, w), in
    words and numbers, for apps in other languages (the exported model's sidecar)."""
    return {
        "tile": list(tile),
        "overlap": min(tile) // 4,
        "grid": "tiles start at 0 and the last ends at the scene's edge, spread evenly: along "
        "a side of n pixels, count = ceil((n - overlap) / (tile - overlap)) tiles starting at "
        "round(i * (n - tile) / (count - 1)); a side no longer than the tile gets one tile at 0",
        "small_scene": "a scene smaller than a tile is reflect-padded (numpy mode 'reflect') "
        "around its centre to the tile, and the output cropped back",
        "probabilities": "the outputs as they are with a softmax or sigmoid head, else a softmax "
        "over classes (a sigmoid for one map)",
        "blending": "each tile's probabilities are weighted by outer(ramp(h), ramp(w)), "
        "ramp(n)[d] = min(1, min(d + 1, n - d) / (overlap + 1)), summed over tiles and divided "
        "by the summed weights",
        "mask": "argmax over classes (p >= 0.5 for a single map)",
        "tta": "netspec predict --tta averages the probabilities of the 8 symmetries of a square "
        "tile (4 flips for a rectangle) before blending; off by default",
    }
