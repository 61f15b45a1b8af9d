"""Grouping read tiles into model batches.

Tiles with no valid pixel skip the model and pass straight on; the rest are stacked
into arrays of ``batch_size`` tiles (the last batch may be smaller).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Union

import numpy as np

from .io.reader import TileData


@dataclass
class Batch:
    tiles: list[TileData]
    data: np.ndarray  # (B, bands, h, w), the raster's dtype
    valid: np.ndarray  # (B, h, w) bool

    def __len__(self) -> int:
        return len(self.tiles)


def batch_tiles(tiles: Iterable[TileData], batch_size: int) -> Iterator[Union[Batch, TileData]]:
    """Yield a :class:`Batch` per ``batch_size`` non-empty tiles, and each empty tile as it comes."""
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    pending: list[TileData] = []
    for td in tiles:
        if td.empty:
            yield td
            continue
        pending.append(td)
        if len(pending) == batch_size:
            yield _stack(pending)
            pending = []
    if pending:
        yield _stack(pending)


def _stack(tiles: list[TileData]) -> Batch:
    return Batch(tiles, np.stack([t.data for t in tiles]), np.stack([t.valid for t in tiles]))
