"""Global context for global-local models (GLNet, GLCANet): regions, decimated reads, a cache.

The papers downsample the *whole* image (2448² in DeepGlobe) to 500 px for the global
branch. For a 50 000² orthophoto that would shrink a car below a hundredth of a pixel,
so rsinfer cuts the scene into *regions* of ``region`` scene pixels a side (a model
config value, 4096 by default) and gives each region its own global view; a raster no
larger than one region gets a single view of the whole scene, as in the papers.

A tile belongs to the region holding its centre; the region's view covers all of its
tiles, so every tile's footprint lies inside its view. Views are read once with
rasterio's decimated read (``out_shape``), which uses the file's overviews when it has
them, never the full-resolution raster in one piece. Contexts are computed on the
model's device and kept in a small LRU cache: tiles arrive row by row, so a row of
regions is all that is live at a time.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window

from rsinfer.models.global_local import global_view_size

from .errors import InputError
from .io.reader import model_bands
from .io.source import RasterInfo, first_line
from .tiling import AxisTiling, Span, Tile, TileGrid


@dataclass(frozen=True)
class AxisRegions:
    """Which region each tile of one axis belongs to, and each region's view span."""

    tile_region: tuple[int, ...]
    views: tuple[Span, ...]

    @classmethod
    def build(cls, axis: AxisTiling, region: int) -> AxisRegions:
        n = max(1, math.ceil(axis.size / region)) if axis.size > region else 1
        owners = tuple(min(n - 1, int((s + axis.tile / 2) // region)) if n > 1 else 0 for s in axis.starts)
        views = []
        for r in range(n):
            members = [i for i, o in enumerate(owners) if o == r]
            if not members:  # a region no tile centre falls in (region smaller than a stride)
                views.append(Span(0, 0))
                continue
            views.append(Span(axis.starts[members[0]], axis.starts[members[-1]] + axis.tile))
        return cls(owners, tuple(views))


class RegionPlan:
    """Regions of a tile grid and the footprint (box) of each tile in its region's view."""

    def __init__(self, grid: TileGrid, region: int):
        self.grid = grid
        self.y = AxisRegions.build(grid.y, region)
        self.x = AxisRegions.build(grid.x, region)

    def region_of(self, tile: Tile) -> tuple[int, int]:
        return self.y.tile_region[tile.row], self.x.tile_region[tile.col]

    def view(self, key: tuple[int, int]) -> tuple[Span, Span]:
        return self.y.views[key[0]], self.x.views[key[1]]

    def box(self, tile: Tile, padded: tuple[int, int] | None = None) -> tuple[float, float, float, float]:
        """``(y0, x0, y1, x1)`` of the tile in its view's normalized coordinates.

        ``padded`` is the (h, w) the backend pads the tile to: the box then grows by the
        same amount, so the model's crop covers the padded patch as it covers the real one.
        """
        rows, cols = self.view(self.region_of(tile))
        h = (padded or tile.shape)[0]
        w = (padded or tile.shape)[1]
        y0 = (tile.rows.start - rows.start) / rows.size
        x0 = (tile.cols.start - cols.start) / cols.size
        return y0, x0, y0 + h / rows.size, x0 + w / cols.size

    @property
    def regions_per_row(self) -> int:
        return len(self.x.views)


@dataclass
class GlobalView:
    data: np.ndarray  # (bands, gh, gw), the model's bands as the reader gives them (model_bands)
    valid: np.ndarray  # (gh, gw) bool


def read_global_view(info: RasterInfo, rows: Span, cols: Span, global_size: int) -> GlobalView:
    """Decimated read of a window: longest side ``global_size``, overviews used when present.

    The view holds what tiles hold: palette indices expanded to colours (read with nearest
    resampling, as indices cannot be interpolated) and non-finite values invalid and 0.
    """
    gh, gw = global_view_size(rows.size, cols.size, global_size)
    window = Window(cols.start, rows.start, cols.size, rows.size)
    unique = tuple(sorted(set(info.bands)))
    resampling = Resampling.nearest if info.palette is not None else Resampling.bilinear
    try:
        with rasterio.open(info.path) as ds:
            data = ds.read(unique, window=window, out_shape=(len(unique), gh, gw), resampling=resampling)
            valid = (
                ds.dataset_mask(window=window, out_shape=(gh, gw), resampling=Resampling.nearest) > 0
                if info.has_mask
                else None
            )
    except RasterioError as err:
        raise InputError(
            f"{info.path}: cannot read the global view of rows {rows.start}-{rows.stop}, "
            f"cols {cols.start}-{cols.stop} ({first_line(err)})"
        ) from None
    # Bilinear resampling spreads a non-finite value to the view pixels around it (GDAL
    # leaves nodata out, not ±inf): model_bands makes them all invalid.
    data, valid = model_bands(info, data, valid)
    return GlobalView(data, valid if valid is not None else np.ones((gh, gw), dtype=bool))


class GlobalContextCache:
    """Global contexts by region, computed on first use by ``compute(view) -> context``.

    Views can be read ahead (:meth:`prefetch`, on the reader's threads); a view not read
    ahead is read when its context is first needed.
    """

    def __init__(self, info: RasterInfo, plan: RegionPlan, global_size: int, compute, capacity: int | None = None):
        self.info = info
        self.plan = plan
        self.global_size = global_size
        self.compute = compute
        self.capacity = capacity or plan.regions_per_row + 1
        self._cache: OrderedDict = OrderedDict()
        self._pending: dict[tuple[int, int], Future] = {}
        self.views_read = 0

    def _read(self, key: tuple[int, int]) -> GlobalView:
        rows, cols = self.plan.view(key)
        return read_global_view(self.info, rows, cols, self.global_size)

    def prefetch(self, key: tuple[int, int], submit) -> None:
        """Start reading ``key``'s view with ``submit(fn, *args) -> Future``, unless it is on hand."""
        if key not in self._cache and key not in self._pending:
            self._pending[key] = submit(self._read, key)

    def get(self, key: tuple[int, int]):
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        pending = self._pending.pop(key, None)
        view = pending.result() if pending is not None else self._read(key)
        self.views_read += 1
        context = self.compute(view)
        self._cache[key] = context
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return context
