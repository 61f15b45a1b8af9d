"""rsinfer.io.reader: tiles in grid order, read ahead on threads; side reads under the caller's GDAL settings."""

from __future__ import annotations

import numpy as np
import rasterio

from rsinfer.io.reader import TileReader
from rsinfer.io.source import inspect_raster
from rsinfer.tiling import TileGrid


def test_tiles_come_in_grid_order_with_their_pixels(make_raster, random_image):
    image = random_image(300, 200, seed=4)
    info = inspect_raster(str(make_raster(image)), ("red", "green", "blue"), None, 255.0, None)
    grid = TileGrid(300, 200, 128, 32)
    got = list(TileReader(info, workers=3).iter_tiles(grid))
    assert [td.tile.index for td in got] == list(range(len(grid)))
    for td in got:
        np.testing.assert_array_equal(
            td.data, image[:, td.tile.rows.start : td.tile.rows.stop, td.tile.cols.start : td.tile.cols.stop]
        )


def test_side_reads_run_on_the_reader_threads_under_the_callers_gdal_env(make_raster, random_image):
    info = inspect_raster(str(make_raster(random_image(64, 64))), ("red", "green", "blue"), None, 255.0, None)
    seen = []

    def schedule(tile, submit):
        seen.append(submit(rasterio.env.getenv))

    with rasterio.Env(GDAL_CACHEMAX=77):
        list(TileReader(info, workers=2).iter_tiles(TileGrid(64, 64, 32, 0), schedule=schedule))
    assert len(seen) == 4 and all(f.result()["GDAL_CACHEMAX"] == 77 for f in seen)
