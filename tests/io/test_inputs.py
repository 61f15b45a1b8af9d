"""Inputs read right: non-finite floats, palette rasters, GCP-only georeferencing, 12-bit data in uint16.

Each case is a real GeoTIFF written here and segmented end to end, against a twin that
states the same content the plain way (nodata instead of NaN, RGB instead of a palette,
8-bit instead of 12-bit): the labels must be identical.
"""

import warnings

import numpy as np
import pytest
import rasterio
import torch
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

from rsinfer.cli.main import main
from rsinfer.global_context import read_global_view
from rsinfer.io.labelmap import NODATA_LABEL
from rsinfer.io.reader import TileReader
from rsinfer.io.source import InputWarning, inspect_raster
from rsinfer.pipeline import SegmentOptions, run_segment
from rsinfer.tiling import Span, TileGrid

RGB = ("red", "green", "blue")


def segment(path, out, **kw):
    """Segment on the CPU with the same random weights each time (for ``weights="random"``)."""
    torch.manual_seed(0)
    report = run_segment(SegmentOptions(input=str(path), output=str(out), device="cpu", **kw))
    with rasterio.open(out) as ds:
        return report, ds.read(1)


def input_warnings(record):
    return [str(w.message) for w in record if issubclass(w.category, InputWarning)]


# --- NaN and ±inf ---------------------------------------------------------------------------


def with_non_finite(random_image, h, w):
    """Float32 noise with NaN and ±inf pixels scattered over it and a NaN block the width of a tile."""
    data = random_image(h, w, seed=3).astype(np.float32)
    bad = np.zeros((h, w), dtype=bool)
    bad[:, :140] = True  # whole tiles of NaN: never sent to the model
    rng = np.random.default_rng(7)
    spots = rng.random((h, w)) < 0.01
    bad |= spots
    data[:, :, :140] = np.nan
    data[0][spots] = np.nan
    data[1][spots & (rng.random((h, w)) < 0.5)] = np.inf  # a pixel with one bad band is bad
    data[2][spots] = -np.inf
    return data, bad


@pytest.mark.parametrize(
    "model,weights,nodata",
    [("simple-fcn", "random", np.nan), ("simple-fcn", "random", None), ("glcanet-lite", None, np.nan)],
    ids=["nodata-nan", "no-nodata", "global-local"],
)
def test_non_finite_pixels_are_invalid_like_nodata(make_raster, random_image, tmp_path, model, weights, nodata):
    kw = dict(model=model, weights=weights, tile=128, overlap=16)
    size = (300, 400)
    if model == "glcanet-lite":
        # One tile, and a raster of the global view's size: the view is the raster itself, not
        # a resampled one (where bilinear spreads ±inf to neighbours, but not nodata).
        kw.update(tile=None, overlap=None)
        size = (500, 500)
    data, bad = with_non_finite(random_image, *size)
    path = make_raster(data, name="nan.tif", nodata=nodata)
    twin = data.copy()
    twin[:, bad] = -9999.0
    twin_path = make_raster(twin, name="twin.tif", nodata=-9999.0)
    report, labels = segment(path, tmp_path / "nan_labels.tif", **kw)
    twin_report, twin_labels = segment(twin_path, tmp_path / "twin_labels.tif", **kw)
    assert (labels[bad] == NODATA_LABEL).all()
    assert (labels[~bad] < NODATA_LABEL).all()
    np.testing.assert_array_equal(labels, twin_labels)
    assert report.tiles_skipped == twin_report.tiles_skipped
    if model == "simple-fcn":
        assert report.tiles_skipped > 0  # the tiles inside the NaN block


def test_reader_yields_finite_data_and_drops_all_non_finite_tiles(make_raster, random_image):
    data, bad = with_non_finite(random_image, 300, 400)
    info = inspect_raster(make_raster(data, nodata=np.nan), RGB)
    grid = TileGrid(300, 400, 128, 16)
    tiles = list(TileReader(info, workers=2).iter_tiles(grid))
    assert any(td.empty for td in tiles)
    for td in tiles:
        t = td.tile
        window_bad = bad[t.rows.start : t.rows.stop, t.cols.start : t.cols.stop]
        if window_bad.all():
            assert td.empty
            continue
        assert td.data is not None and np.isfinite(td.data).all()
        np.testing.assert_array_equal(td.valid, ~window_bad)
        raw = data[:, t.rows.start : t.rows.stop, t.cols.start : t.cols.stop]
        np.testing.assert_array_equal(td.data, np.where(np.isfinite(raw), raw, 0))  # finite bands kept


def test_global_view_of_non_finite_data_is_finite_and_masked(make_raster, random_image):
    data, bad = with_non_finite(random_image, 300, 400)
    info = inspect_raster(make_raster(data), RGB)  # no nodata declared: only the values say it
    view = read_global_view(info, Span(0, 300), Span(0, 400), 100)
    assert view.data.shape == (3, 75, 100)
    assert np.isfinite(view.data).all()
    assert not view.valid[:, :30].any()  # inside the NaN block
    assert view.valid[:, 40:].mean() > 0.5


# --- palette rasters ------------------------------------------------------------------------


def palette_pair(make_raster, h=500, w=500):
    """A paletted uint8 GeoTIFF and the RGB GeoTIFF its colour table expands it to."""
    rng = np.random.default_rng(5)
    colours = {i: tuple(int(c) for c in rng.integers(0, 256, 3)) + (255,) for i in range(12)}
    index = rng.integers(0, 14, (h, w)).astype(np.uint8)  # 12 and 13 are not in the table
    index[: h // 2, : w // 3] = 4  # a large flat area, as real palette maps have
    path = make_raster(index, name="palette.tif", photometric="palette")
    with rasterio.open(path, "r+") as dst:
        dst.write_colormap(1, colours)
    table = np.zeros((256, 3), dtype=np.uint8)
    for i, rgba in colours.items():
        table[i] = rgba[:3]
    rgb = np.moveaxis(table[index], -1, 0)
    return path, make_raster(rgb, name="rgb.tif"), table


def test_palette_raster_is_read_through_its_colour_table(make_raster):
    path, rgb_path, table = palette_pair(make_raster, 200, 300)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        info = inspect_raster(path, RGB)
    assert input_warnings(record) == []  # not 'single-band raster'
    assert info.bands == (1, 1, 1) and info.value_scale == 1.0
    assert info.palette is not None and info.palette.shape == (256, 3) and info.palette.dtype == np.uint8
    np.testing.assert_array_equal(info.palette, table)
    assert (info.palette[12:] == 0).all()
    bgr = inspect_raster(path, ("blue", "green", "red"))
    np.testing.assert_array_equal(bgr.palette, table[:, ::-1])
    with rasterio.open(rgb_path) as ds:
        expected = ds.read()
    got = list(TileReader(info).iter_tiles(TileGrid(200, 300, 128, 16)))
    for td in got:
        t = td.tile
        np.testing.assert_array_equal(td.data, expected[:, t.rows.start : t.rows.stop, t.cols.start : t.cols.stop])
    view = read_global_view(info, Span(0, 200), Span(0, 300), 60)  # decimated: indices by nearest
    colours = {tuple(c) for c in table}
    assert view.data.dtype == np.uint8 and {tuple(px) for px in view.data.reshape(3, -1).T} <= colours


@pytest.mark.parametrize("model", ["lanet-lite", "glcanet-lite"])
def test_palette_raster_segments_like_its_rgb_expansion(make_raster, tmp_path, model):
    path, rgb_path, _ = palette_pair(make_raster)
    _, labels = segment(path, tmp_path / "palette_labels.tif", model=model)
    _, rgb_labels = segment(rgb_path, tmp_path / "rgb_labels.tif", model=model)
    np.testing.assert_array_equal(labels, rgb_labels)
    assert len(np.unique(labels)) > 1


# --- GCP-only georeferencing ----------------------------------------------------------------


def test_gcp_only_raster_keeps_its_gcps(random_image, tmp_path):
    gcps = [
        GroundControlPoint(0, 0, 500000.0, 5400000.0, 0.0),
        GroundControlPoint(0, 90, 500018.0, 5400000.0, 0.0),
        GroundControlPoint(60, 0, 500000.0, 5399988.0, 0.0),
        GroundControlPoint(60, 90, 500018.5, 5399987.5, 0.0),
    ]
    path = tmp_path / "gcps.tif"
    data = random_image(60, 90)
    with rasterio.open(path, "w", driver="GTiff", width=90, height=60, count=3, dtype="uint8") as dst:
        dst.gcps = (gcps, CRS.from_epsg(32632))
        dst.write(data)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        info = inspect_raster(path, RGB)
    messages = input_warnings(record)
    assert len(messages) == 1 and "georeferenced by 4 GCPs" in messages[0] and "EPSG:32632" in messages[0]
    assert "keeps them" in messages[0] and "no CRS" not in messages[0]
    assert info.crs is None and info.gcp_crs == CRS.from_epsg(32632)
    assert [(g.row, g.col, g.x, g.y) for g in info.gcps] == [(g.row, g.col, g.x, g.y) for g in gcps]
    report, labels = segment(path, tmp_path / "labels.tif", model="simple-fcn", weights="random")
    assert labels.shape == (60, 90) and report.tiles_predicted == 1
    with rasterio.open(tmp_path / "labels.tif") as out:  # the label map carries the same GCPs
        out_gcps, out_crs = out.gcps
        assert out_crs == CRS.from_epsg(32632)
        assert [(g.row, g.col, g.x, g.y) for g in out_gcps] == [(g.row, g.col, g.x, g.y) for g in gcps]


def test_raster_without_georeferencing_still_says_no_crs(random_image, make_raster):
    path = make_raster(random_image(40, 40), crs=None)
    with pytest.warns(InputWarning, match="no CRS"):
        info = inspect_raster(path, RGB)
    assert info.gcps == [] and info.gcp_crs is None


# --- 12-bit data in uint16 ------------------------------------------------------------------


def twelve_bit(random_image, h, w):
    """8-bit noise in steps of 17, and the same values as 12-bit (255 ↔ 4095, exactly)."""
    eight = (random_image(h, w, seed=9) // 17 * 17).astype(np.uint8)
    return eight, (eight.astype(np.uint16) // 17 * 273).astype(np.uint16)


def test_nbits_12_scales_like_the_same_data_in_8_bit(make_raster, random_image, tmp_path):
    eight, twelve = twelve_bit(random_image, 300, 260)
    assert twelve.max() == 4095
    path = make_raster(twelve, name="twelve.tif", nbits=12)
    eight_path = make_raster(eight, name="eight.tif")
    info = inspect_raster(path, RGB)
    assert info.value_scale == pytest.approx(255 / 4095) and not info.check_range
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _, labels = segment(path, tmp_path / "twelve_labels.tif", model="lanet-lite")
    assert input_warnings(record) == []
    _, eight_labels = segment(eight_path, tmp_path / "eight_labels.tif", model="lanet-lite")
    np.testing.assert_array_equal(labels, eight_labels)


def test_low_range_uint16_without_nbits_warns_once_naming_scale(make_raster, random_image, tmp_path):
    _, twelve = twelve_bit(random_image, 300, 260)
    path = make_raster(twelve, name="twelve.tif")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        segment(path, tmp_path / "a.tif", model="simple-fcn", weights="random", tile=64, overlap=8)
    messages = [m for m in input_warnings(record) if "values reach only" in m]
    assert messages == [
        f"{path}: values reach only 4095 of 65535 in the first tiles, and are scaled as if they used the full "
        "range: if the data are 12-bit, pass --scale 0.0623 (255/4095)"
    ]
    # the user's --scale silences it
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        segment(path, tmp_path / "b.tif", model="simple-fcn", weights="random", value_scale=255 / 4095)
    assert not [m for m in input_warnings(record) if "values reach only" in m]


def test_low_range_warning_reaches_the_command_line(make_raster, random_image, runner, tmp_path):
    _, twelve = twelve_bit(random_image, 64, 64)
    path = make_raster(twelve, name="twelve.tif")
    args = ["segment", str(path), "-o", str(tmp_path / "l.tif"), "--device", "cpu", "--model", "simple-fcn"]
    res = runner.invoke(main, [*args, "--weights", "random"])
    assert res.exit_code == 0, res.output
    assert "rsinfer: warning:" in res.stderr and "--scale 0.0623 (255/4095)" in res.stderr


def test_full_range_uint16_does_not_warn(make_raster, random_image, tmp_path):
    data = (random_image(100, 100, seed=2).astype(np.uint16) * 257).astype(np.uint16)
    path = make_raster(data)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        segment(path, tmp_path / "l.tif", model="simple-fcn", weights="random")
    assert not [m for m in input_warnings(record) if "values reach only" in m]
