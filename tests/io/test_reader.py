"""rsinfer.io.reader: tiles in grid order, read ahead on threads; side reads under the caller's GDAL settings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio

from rsinfer.io.reader import TileReader, model_bands
from rsinfer.io.source import InputWarning, inspect_raster
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


def test_model_bands_make_non_finite_pixels_invalid_and_zero(make_raster, random_image):
    path = str(make_raster(random_image(4, 4, bands=1).astype("float32")))
    with pytest.warns(InputWarning, match="single-band"):
        info = inspect_raster(path, ("red", "green", "blue"))
    raw = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    raw[0, 0, 0], raw[0, 1, 1], raw[0, 2, 2] = np.nan, np.inf, -np.inf
    data, valid = model_bands(info, raw.copy(), None)
    assert data.shape == (3, 4, 4) and np.isfinite(data).all()  # gray feeds all three
    assert data[0, 0, 0] == data[1, 1, 1] == data[2, 2, 2] == 0 and data[0, 3, 3] == 15
    assert valid is not None and valid.sum() == 13 and not valid[0, 0] and not valid[1, 1] and not valid[2, 2]
    mask = np.ones((4, 4), dtype=bool)
    mask[3, 3] = False
    assert model_bands(info, raw.copy(), mask)[1].sum() == 12
    finite = np.ones((1, 4, 4), dtype=np.float32)
    assert model_bands(info, finite, None)[1] is None  # nothing to mask: no mask made


def test_range_check_warns_once_after_the_first_tiles(make_raster, random_image):
    low = (random_image(256, 256, bands=3).astype("uint16") * 4).astype("uint16")  # 10-bit values
    info = inspect_raster(str(make_raster(low)), ("red", "green", "blue"))
    assert info.check_range
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        list(TileReader(info, workers=2).iter_tiles(TileGrid(256, 256, 32, 0)))  # 64 tiles
    messages = [str(w.message) for w in record if issubclass(w.category, InputWarning)]
    assert len(messages) == 1
    assert "values reach only 1020 of 65535" in messages[0] and "10-bit, pass --scale 0.249 (255/1023)" in messages[0]
