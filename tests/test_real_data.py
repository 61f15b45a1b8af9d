"""The real rasters nobody here wrote, through the whole pipeline."""

import os
import warnings

import pytest
import rasterio

from rsinfer.errors import InputError
from rsinfer.io.labelmap import NODATA_LABEL
from rsinfer.io.source import InputWarning
from rsinfer.pipeline import SegmentOptions, run_segment


def segment(src, out, **kw):
    return run_segment(SegmentOptions(input=str(src), output=str(out), device="cpu", **kw))


def test_nodata_collar_stays_nodata_and_georeferencing_carries_over(real_data, tmp_path):
    src_path = real_data / "RGB.byte.tif"
    report = segment(src_path, tmp_path / "labels.tif")
    with rasterio.open(src_path) as src, rasterio.open(tmp_path / "labels.tif") as out:
        assert (out.width, out.height) == (src.width, src.height)
        assert out.crs == src.crs and out.transform == src.transform
        collar = src.dataset_mask() == 0
        labels = out.read(1)
    assert collar.sum() > 10000  # the scene has a real collar
    assert (labels[collar] == NODATA_LABEL).all()
    assert (labels[~collar] < 6).all()
    assert report.tiles_predicted == report.tiles  # every tile touches the scene


def test_uint16_with_alpha_uses_the_alpha_band_and_rgb_order(real_data, tmp_path):
    src_path = real_data / "RGBA.uint16.tif"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        report = segment(src_path, tmp_path / "labels.tif")
    # values up to 10000 of 65535: more than 1/8 of the range, so no --scale hint
    assert not [w for w in record if "values reach only" in str(w.message)]
    with rasterio.open(src_path) as src, rasterio.open(tmp_path / "labels.tif") as out:
        alpha = src.read(4)
        labels = out.read(1)
    assert (alpha == 0).any() and (alpha > 0).any()
    assert ((labels == NODATA_LABEL) == (alpha == 0)).all()
    assert report.tiles_predicted >= 1


def test_transparent_tiles_are_skipped_not_predicted(real_data, tmp_path):
    src_path = real_data / "alpha.tif"
    report = segment(src_path, tmp_path / "labels.tif", tile=256, overlap=32)
    with rasterio.open(src_path) as src:
        mask = src.dataset_mask()
    # count by hand the tiles that have any opaque pixel
    from rsinfer.tiling import TileGrid

    grid = TileGrid(mask.shape[0], mask.shape[1], 256, 32)
    expected = sum(mask[t.rows.start : t.rows.stop, t.cols.start : t.cols.stop].any() for t in grid)
    assert 0 < expected < len(grid)
    assert report.tiles_predicted == expected
    assert report.tiles_skipped == len(grid) - expected
    with rasterio.open(tmp_path / "labels.tif") as out:
        labels = out.read(1)
    assert ((labels == NODATA_LABEL) == (mask == 0)).all()


def test_rotated_raster_smaller_than_a_tile_without_crs(real_data, tmp_path):
    src_path = real_data / "rotated.tif"
    with pytest.warns(InputWarning, match="no CRS"):
        report = segment(src_path, tmp_path / "labels.tif")
    with rasterio.open(src_path) as src, rasterio.open(tmp_path / "labels.tif") as out:
        assert out.crs is None
        assert out.transform == src.transform  # rotation kept as it is
        assert (out.width, out.height) == (10, 15)
        assert (out.read(1) < 6).all()
    assert report.tiles == 1 and report.model_calls == 1


def test_all_nodata_gives_all_nodata_output_without_a_model_call(real_data, tmp_path):
    report = segment(real_data / "all-nodata.tif", tmp_path / "labels.zarr")
    assert report.model_calls == 0 and report.tiles_predicted == 0
    import zarr

    labels = zarr.open_group(str(tmp_path / "labels.zarr"), mode="r")["labels"][:]
    assert labels.shape == (2475, 71)
    assert (labels == NODATA_LABEL).all()


@pytest.mark.parametrize("out_name", ["labels.tif", "labels.zarr"])
def test_corrupt_tile_fails_cleanly_and_leaves_nothing(real_data, tmp_path, out_name):
    with pytest.raises(InputError) as err:
        segment(real_data / "corrupt.tif", tmp_path / out_name, probs=True)
    msg = str(err.value)
    assert "corrupt.tif" in msg and "cannot read" in msg and "\n" not in msg
    assert os.listdir(tmp_path) == []
