"""The tile grid: which windows the model sees, which pixels each tile owns, and blend weights.

Along each axis, tiles start every ``stride = tile - overlap`` pixels; the last tile is
shifted inward so it ends on the raster's edge, so every tile has the same size and no
tile reads outside the raster. A raster smaller than a tile gets one tile of the
raster's own size on that axis (the backend pads it to what the model accepts).

Each pair of neighbouring tiles shares a boundary in the middle of their overlap. The
*core* of a tile runs between its two boundaries: cores partition the raster, so every
pixel has exactly one owner. ``crop`` blending keeps each tile's core; ``linear`` and
``gaussian`` blend across the boundary but give zero weight to the outer quarter of the
overlap, so a model whose receptive radius fits in ``overlap // 4`` (``overlap // 2`` for
crop) gives exactly the whole-image result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from rasterio.windows import Window

# How overlapping tiles merge: keep each tile's core, or weight the overlap.
Blend = Literal["crop", "linear", "gaussian"]
BLENDS: tuple[Blend, ...] = get_args(Blend)


@dataclass(frozen=True)
class Span:
    """A half-open interval [start, stop) of rows or columns."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class AxisTiling:
    """Tile starts, sizes and core boundaries along one axis."""

    size: int
    tile: int
    starts: tuple[int, ...]
    # boundaries[i] is where tile i's core begins; boundaries[-1] == size.
    boundaries: tuple[int, ...]
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, size: int, tile: int, overlap: int) -> AxisTiling:
        if size < 1:
            raise ValueError("raster side must be at least 1 pixel")
        if tile < 1 or not 0 <= overlap < tile:
            raise ValueError(f"need tile >= 1 and 0 <= overlap < tile (tile={tile}, overlap={overlap})")
        if size <= tile:
            return cls(size, size, (0,), (0, size))
        stride = tile - overlap
        n = math.ceil((size - tile) / stride) + 1
        starts = [i * stride for i in range(n - 1)] + [size - tile]
        mids = [(starts[i] + tile + starts[i + 1]) // 2 for i in range(n - 1)]
        return cls(size, tile, tuple(starts), (0, *mids, size))

    def __len__(self) -> int:
        return len(self.starts)

    def span(self, i: int) -> Span:
        return Span(self.starts[i], self.starts[i] + self.tile)

    def core(self, i: int) -> Span:
        return Span(self.boundaries[i], self.boundaries[i + 1])

    def weights(self, i: int, blend: str) -> np.ndarray:
        """Blend weights of tile ``i`` along this axis (length ``tile``, float32)."""
        if blend not in BLENDS:
            raise ValueError(f"unknown blend {blend!r}; choose one of {', '.join(BLENDS)}")
        x = np.arange(self.starts[i], self.starts[i] + self.tile, dtype=np.float64) + 0.5
        if blend == "crop":
            core = self.core(i)
            return ((x >= core.start) & (x < core.stop)).astype(np.float32)
        w = np.ones_like(x)
        if i > 0:  # rise across the boundary with the previous tile
            w *= self._ramp(x, i - 1, rising=True)
        if i < len(self) - 1:  # fall across the boundary with the next tile
            w *= self._ramp(x, i, rising=False)
        if blend == "gaussian":
            # Centre-weighted importance map (sigma = tile / 8) inside the linear support; the
            # stitcher normalizes by the summed weights, so only relative values matter.
            centre = self.starts[i] + self.tile / 2
            sigma = self.tile / 8
            w *= np.exp(-0.5 * ((x - centre) / sigma) ** 2)
        return w.astype(np.float32)

    def cached_weights(self, i: int, blend: str) -> np.ndarray:
        key = (i, blend)
        if key not in self._cache:
            self._cache[key] = self.weights(i, blend)
        return self._cache[key]

    def _ramp(self, x: np.ndarray, pair: int, rising: bool) -> np.ndarray:
        """A linear ramp across the boundary between tiles ``pair`` and ``pair + 1``.

        It spans the middle half of their overlap (capped so it stays inside both cores), so
        the outer quarter of the overlap gets weight zero and the two ramps sum to one.
        """
        overlap = self.starts[pair] + self.tile - self.starts[pair + 1]
        b = self.boundaries[pair + 1]
        half = min(overlap / 4, self.core(pair).size / 2, self.core(pair + 1).size / 2)
        if half <= 0.5:
            up = (x >= b).astype(np.float64)
        else:
            up = np.clip((x - (b - half)) / (2 * half), 0.0, 1.0)
        return up if rising else 1.0 - up

    def exact_margin(self, blend: str) -> int:
        """Pixels next to an interior tile edge that never get weight: the receptive radius
        a model may have for tiled output to equal whole-image output."""
        if len(self) == 1:
            return self.size
        overlaps = [self.starts[i] + self.tile - self.starts[i + 1] for i in range(len(self) - 1)]
        return min(overlaps) // (2 if blend == "crop" else 4)


@dataclass(frozen=True)
class Tile:
    """One model input window, its position in the grid and the pixels it owns."""

    index: int
    row: int
    col: int
    rows: Span
    cols: Span
    core_rows: Span
    core_cols: Span

    @property
    def window(self) -> Window:
        return Window(self.cols.start, self.rows.start, self.cols.size, self.rows.size)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows.size, self.cols.size)


class TileGrid:
    """All tiles covering a ``height`` × ``width`` raster, in row-major order."""

    def __init__(self, height: int, width: int, tile: int, overlap: int):
        self.height, self.width = height, width
        self.tile, self.overlap = tile, overlap
        self.y = AxisTiling.build(height, tile, overlap)
        self.x = AxisTiling.build(width, tile, overlap)

    @property
    def n_rows(self) -> int:
        return len(self.y)

    @property
    def n_cols(self) -> int:
        return len(self.x)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    @property
    def tile_shape(self) -> tuple[int, int]:
        return (self.y.tile, self.x.tile)

    def tile_at(self, row: int, col: int) -> Tile:
        return Tile(
            index=row * self.n_cols + col,
            row=row,
            col=col,
            rows=self.y.span(row),
            cols=self.x.span(col),
            core_rows=self.y.core(row),
            core_cols=self.x.core(col),
        )

    def __iter__(self):
        for r in range(self.n_rows):
            for c in range(self.n_cols):
                yield self.tile_at(r, c)

    def rows_touching(self, rows: Span) -> range:
        """Tile rows whose windows overlap the raster rows ``rows``: what a job producing
        those rows must run (every tile that contributes to one of its pixels)."""
        starts, tile = self.y.starts, self.y.tile
        first = next(r for r in range(self.n_rows) if starts[r] + tile > rows.start)
        last = max(r for r in range(self.n_rows) if starts[r] < rows.stop)
        return range(first, last + 1)

    def tiles_in_rows(self, tile_rows: range):
        """The tiles of ``tile_rows``, row by row."""
        for r in tile_rows:
            for c in range(self.n_cols):
                yield self.tile_at(r, c)

    def axis_weights(self, tile: Tile, blend: str) -> tuple[np.ndarray, np.ndarray]:
        """Row and column blend weights of ``tile``; the 2-D weight is their outer product."""
        return self.y.cached_weights(tile.row, blend), self.x.cached_weights(tile.col, blend)

    def exact_margin(self, blend: str) -> int:
        return min(self.y.exact_margin(blend), self.x.exact_margin(blend))
