"""Windowed, threaded reading of tiles: the first stage of the data path.

Worker threads each hold their own dataset handle (GDAL handles are not thread-safe)
and read tiles ahead of the consumer into a bounded window of futures, so decoding
overlaps the model and memory stays at ``depth`` tiles whatever the raster's size.
Tiles are yielded in grid order.

GDAL decodes whole blocks whatever window is asked for, so tile windows that straddle
blocks cost no extra decoding as long as the blocks stay in GDAL's block cache: the
job sizes that cache to a band of tile rows (:func:`gdal_cache_mb`), so each
block of the file is decoded once, and reads follow the grid row by row to keep it so.

The valid mask comes from GDAL's dataset mask (nodata, alpha band or internal mask,
whichever the file has); NaN and ±inf pixels of float data are invalid too, whatever the
nodata tag says. A tile with no valid pixel is yielded without data, so it is never sent
to the model. The data yielded are the model's bands (:func:`model_bands`): palette
indices expanded to colours, non-finite values replaced by 0.
"""

from __future__ import annotations

import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from ..errors import InputError
from ..tiling import Tile
from .source import InputWarning, RasterInfo, first_line

# schedule(tile, submit): start side reads for a tile with submit(fn, *args) -> Future.
Schedule = Callable[[Tile, Callable[..., Future[Any]]], None]

# Non-empty tiles whose values decide whether integer data uses its type's range.
RANGE_CHECK_TILES = 16


def model_bands(info: RasterInfo, data: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's bands and valid mask from ``data`` read as the sorted unique ``info.bands``.

    ``valid`` None means every pixel valid as far as GDAL knows. A palette raster's indices
    go through its colour table. Non-finite float values make their pixel invalid and
    become 0: the backend zeroes invalid pixels by multiplying, and NaN * 0 is NaN.
    """
    if info.palette is not None:
        return np.ascontiguousarray(np.moveaxis(info.palette[data[0]], -1, 0)), valid
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            data = np.where(finite, data, data.dtype.type(0))
            all_finite = finite.all(0)
            valid = all_finite if valid is None else valid & all_finite
    unique = sorted(set(info.bands))
    take = [unique.index(b) for b in info.bands]
    if take != list(range(len(unique))):  # gray → RGB repeats one band
        data = data[take]
    return data, valid


@dataclass
class TileData:
    """A tile as read: ``data`` (bands, h, w) and ``valid`` (h, w) bool, or neither when empty."""

    tile: Tile
    data: np.ndarray | None
    valid: np.ndarray | None

    @property
    def empty(self) -> bool:
        return self.data is None


class TileReader:
    """Reads tiles of one raster from a pool of threads, ``depth`` tiles ahead."""

    def __init__(self, info: RasterInfo, workers: int = 2, depth: int | None = None, area: Any = None):
        self.info = info
        self.area = area  # rsinfer.aoi.AreaOfInterest: only pixels inside it are valid
        self.workers = max(1, workers)
        self.depth = depth or 4 * self.workers
        self._local = threading.local()
        self._handles: list = []
        self._lock = threading.Lock()
        self._unique_bands = tuple(sorted(set(info.bands)))

    def _dataset(self):
        ds = getattr(self._local, "ds", None)
        if ds is None:
            ds = rasterio.open(self.info.path)
            self._local.ds = ds
            with self._lock:
                self._handles.append(ds)
        return ds

    def read(self, tile: Tile) -> TileData:
        """Read one tile (runs on a worker thread)."""
        window = tile.window
        if self.area is not None and not self.area.touches(window):
            return TileData(tile, None, None)  # outside the area of interest: never read
        ds = self._dataset()
        try:
            if self.info.has_mask:
                valid = ds.dataset_mask(window=window) > 0
                if not valid.any():
                    return TileData(tile, None, None)
            else:
                valid = None
            data = ds.read(self._unique_bands, window=window)
        except RasterioError as err:
            raise InputError(
                f"{self.info.path}: cannot read rows {tile.rows.start}-{tile.rows.stop}, "
                f"cols {tile.cols.start}-{tile.cols.stop} ({first_line(err)})"
            ) from None
        data, valid = model_bands(self.info, data, valid)
        if self.area is not None:
            inside = self.area.mask(window)
            valid = inside if valid is None else valid & inside
        if valid is None:
            valid = np.ones(tile.shape, dtype=bool)
        elif not valid.any():  # every pixel non-finite, or outside the area
            return TileData(tile, None, None)
        return TileData(tile, data, valid)

    def iter_tiles(self, tiles: Iterable[Tile], schedule: Schedule | None = None) -> Iterator[TileData]:
        """Yield every tile of ``tiles`` in order, read ahead on the worker threads.

        ``schedule(tile, submit)`` is called as each tile is queued, so a caller can start
        reads of its own on the same threads (global views of global-local models). Those
        run under the caller's GDAL configuration: ``rasterio.Env`` holds per thread, and a
        decimated read of a mask gives other values inside an Env than outside one.

        Integer data scaled from its type's full range (``info.check_range``) is checked on
        the first tiles: a warning suggests ``--scale`` when they use little of the range.
        """
        check = RangeCheck(self.info)
        pending: deque = deque()
        it = iter(tiles)
        env = rasterio.env.getenv() if rasterio.env.hasenv() else None
        with ThreadPoolExecutor(self.workers, thread_name_prefix="rsinfer-read") as pool:

            def submit_in_env(fn: Callable[..., Any], *args: Any) -> Future[Any]:
                return pool.submit(_in_env, env, fn, *args)

            try:
                for tile in it:
                    if schedule is not None:
                        schedule(tile, submit_in_env)
                    pending.append(pool.submit(self.read, tile))
                    if len(pending) >= self.depth:
                        yield check(pending.popleft().result())
                while pending:
                    yield check(pending.popleft().result())
                check.finish()
            finally:
                for fut in pending:
                    fut.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                self.close()

    def close(self) -> None:
        with self._lock:
            for ds in self._handles:
                ds.close()
            self._handles.clear()


class RangeCheck:
    """Warns once when the first tiles of integer data use less than 1/8 of the type's range.

    Such data (12-bit values in uint16, say) is scaled as if it filled the range, and looks
    nearly black to the model. Runs on the consuming thread, so warning filters apply.
    """

    def __init__(self, info: RasterInfo, tiles: int = RANGE_CHECK_TILES):
        self.info = info
        self.tiles = tiles
        self.seen = 0
        self.peak = 0
        self.done = not info.check_range

    def __call__(self, td: TileData) -> TileData:
        if not self.done and td.data is not None and td.valid is not None:
            values = td.data[:, td.valid]
            if values.size:
                self.peak = max(self.peak, int(values.max()))
            self.seen += 1
            if self.seen >= self.tiles:
                self.finish(stacklevel=4)
        return td

    def finish(self, stacklevel: int = 3) -> None:
        """Warn if the tiles seen call for it; ``stacklevel`` 3 is iter_tiles' consumer."""
        if self.done:
            return
        self.done = True
        full = int(np.iinfo(np.dtype(self.info.dtype)).max)
        if not 0 < self.peak < (full + 1) // 8:
            return
        bits = self.peak.bit_length()
        scale = self.info.input_range / (2**bits - 1)
        warnings.warn(
            f"{self.info.path}: values reach only {self.peak} of {full} in the first tiles, and are scaled as if "
            f"they used the full range: if the data are {bits}-bit, pass --scale {scale:.3g} "
            f"({self.info.input_range:g}/{2**bits - 1})",
            InputWarning,
            stacklevel=stacklevel,
        )


def _in_env(env: dict | None, fn: Callable[..., Any], *args: Any) -> Any:
    if env is None:
        return fn(*args)
    with rasterio.Env(**env):
        return fn(*args)


def gdal_cache_mb(info: RasterInfo, tile_rows: int, prob_bands: int) -> int:
    """GDAL block cache sized for a band of tile rows (read) and of block rows (write).

    GDAL decodes whole blocks, and tile windows straddle them; a cache holding the blocks
    under the current tile row (plus one block row) decodes each block once. GDAL's default
    (5 % of RAM) would instead let the cache, and the process, grow with the raster.
    """
    block_h = info.block_shape[0]
    itemsize = np.dtype(info.dtype).itemsize
    read = len(set(info.bands)) * itemsize * info.width * (tile_rows + 2 * block_h)
    write = (1 + prob_bands) * info.width * 2 * 512
    return int(min(1024, max(64, 2 * (read + write) / 2**20)))
