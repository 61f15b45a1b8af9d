"""``rsinfer.io.labelmap`` readers: a label map as a GeoTIFF or a zarr group, read by windows."""

import json

import numpy as np
import pytest
import rasterio

from rsinfer.errors import InputError
from rsinfer.io.labelmap import (
    NODATA_LABEL,
    NODATA_PROB,
    PROB_MAX,
    PROB_SCALE,
    TAG_CLASS_NAMES,
    is_zarr,
    open_labels,
    stored_probabilities,
)

NAMES = ("road", "building", "tree")


def test_geotiff_reader_takes_nodata_and_class_names_from_the_file(make_raster):
    data = (np.arange(40 * 30, dtype=np.uint8) % 3).reshape(30, 40)
    tagged = make_raster(data, name="tagged.tif", nodata=0)
    with rasterio.open(tagged, "r+") as ds:
        ds.update_tags(1, **{TAG_CLASS_NAMES: json.dumps(list(NAMES))})  # as rsinfer segment writes them
    with open_labels(tagged) as lab:
        assert (lab.width, lab.height, lab.nodata, lab.class_names) == (40, 30, 0, NAMES)
        np.testing.assert_array_equal(lab.read(slice(5, 10), slice(20, 40)), data[5:10, 20:40])

    synth = make_raster(data, name="synth.tif")
    with rasterio.open(synth, "r+") as ds:
        ds.update_tags(1, classes=",".join(NAMES))  # as rsinfer synth writes its reference labels
    with open_labels(synth) as lab:
        assert lab.nodata == NODATA_LABEL and lab.class_names == NAMES  # no nodata declared: rsinfer's


def test_zarr_reader_takes_nodata_from_the_attribute_not_the_fill_value(tmp_path):
    import zarr

    data = (np.arange(64 * 48, dtype=np.uint8) % 3).reshape(48, 64)
    for name, attrs, nodata in (("plain.zarr", {}, NODATA_LABEL), ("attr.zarr", {"nodata": 7}, 7)):
        group = zarr.open_group(tmp_path / name, mode="w", zarr_format=3)
        arr = group.create_array("labels", shape=data.shape, chunks=(16, 32), dtype="uint8", fill_value=0)
        arr[:] = data
        arr.attrs.update({"class_names": list(NAMES), **attrs})
        assert is_zarr(tmp_path / name)
        with open_labels(tmp_path / name) as lab:
            assert (lab.width, lab.height, lab.block_shape) == (64, 48, (16, 32))
            assert lab.nodata == nodata and lab.class_names == NAMES and lab.crs is None
            np.testing.assert_array_equal(lab.read(slice(10, 30), slice(0, 64)), data[10:30])


def test_a_label_map_is_one_integer_band(make_raster):
    with pytest.raises(InputError, match="has 3 bands; a label map has one"):
        open_labels(make_raster(np.ones((3, 8, 8), np.uint8), name="rgb.tif"))
    with pytest.raises(InputError, match="data type float32 is not a label map's"):
        open_labels(make_raster(np.ones((8, 8), np.float32), name="float.tif"))


def test_stored_probabilities_keep_255_for_nodata_only():
    labels = np.array([[0, 1, NODATA_LABEL]], np.uint8)
    scores = np.array([[[255, 0, 0]], [[0, 128, 7]]], np.uint8)  # the stitcher's p × 255, 0 where invalid
    stored = stored_probabilities(labels, scores)
    np.testing.assert_array_equal(stored, [[[PROB_MAX, 0, NODATA_PROB]], [[0, 128, NODATA_PROB]]])
    np.testing.assert_array_equal(stored_probabilities(labels, stored), stored)  # idempotent
    assert (PROB_SCALE, PROB_MAX, NODATA_PROB) == (255, 254, 255)
