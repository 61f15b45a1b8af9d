"""The label map files: what GDAL, QGIS and xarray rely on."""

import json
import os

import numpy as np
import pytest
import rasterio
from rasterio.enums import Compression, Resampling
from rasterio.transform import Affine

from rsinfer.errors import RsinferError
from rsinfer.io.labelmap import FinishedRows
from rsinfer.io.writers import OutputSpec, open_writer, probs_path
from rsinfer.models.config import ISPRS_CLASSES, ISPRS_COLORS
from rsinfer.tiling import Span

CRS = rasterio.crs.CRS.from_epsg(32632)
TRANSFORM = Affine(0.2, 0.0, 500000.0, 0.0, -0.2, 5400000.0)


def spec(path, width=1300, height=1100, **kw):
    base = dict(
        path=str(path),
        width=width,
        height=height,
        crs=CRS,
        transform=TRANSFORM,
        class_names=ISPRS_CLASSES,
        class_colors=ISPRS_COLORS,
        chunk=256,
    )
    base.update(kw)
    return OutputSpec(**base)


def label_rows(height, width, strip=300, probs=False, seed=0):
    rng = np.random.default_rng(seed)
    full = rng.integers(0, 6, size=(height, width)).astype(np.uint8)
    full[:50, :50] = 255
    p = rng.integers(0, 256, size=(6, height, width)).astype(np.uint8) if probs else None
    rows = [
        FinishedRows(Span(y, min(height, y + strip)), full[y : y + strip], None if p is None else p[:, y : y + strip])
        for y in range(0, height, strip)
    ]
    return full, p, rows


def write_all(s, rows):
    with open_writer(s) as w:
        for r in rows:
            w.write(r)
        w.commit()
    return w


def test_geotiff_is_georeferenced_tiled_compressed_with_colours_names_and_mode_overviews(tmp_path):
    full, probs, rows = label_rows(1100, 1300, probs=True)
    w = write_all(spec(tmp_path / "l.tif", with_probs=True), rows)
    assert [(r.start, r.stop) for r in w.completed_rows] == [(0, 1100)]
    with rasterio.open(tmp_path / "l.tif") as ds:
        assert ds.crs == CRS and ds.transform == TRANSFORM
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255
        assert ds.block_shapes[0] == (512, 512) and ds.compression == Compression.deflate
        np.testing.assert_array_equal(ds.read(1), full)
        cmap = ds.colormap(1)
        assert cmap[1][:3] == ISPRS_COLORS[1] and cmap[255][3] == 0
        assert json.loads(ds.tags(1)["CLASS_NAMES"]) == list(ISPRS_CLASSES)
        assert ds.overviews(1) == [2, 4]
        assert ds.tags(ns="rio_overview")["resampling"] == Resampling.mode.name
    with rasterio.open(probs_path(str(tmp_path / "l.tif"))) as ds:
        assert ds.count == 6
        np.testing.assert_array_equal(ds.read(), probs)


def test_zarr_opens_georeferenced_in_xarray_with_class_attributes(tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("rioxarray")
    full, probs, rows = label_rows(700, 900, strip=128, probs=True)
    write_all(spec(tmp_path / "l.zarr", width=900, height=700, with_probs=True), rows)
    ds = xr.open_zarr(tmp_path / "l.zarr", decode_coords="all", mask_and_scale=False)
    assert ds.labels.rio.crs == CRS
    assert ds.labels.rio.transform() == TRANSFORM
    np.testing.assert_array_equal(ds.labels.values, full)
    np.testing.assert_array_equal(ds.probs.values, probs)
    assert ds.labels.attrs["class_names"] == list(ISPRS_CLASSES)
    assert ds.labels.encoding["chunks"] == (256, 256)
    assert ds.attrs["rsinfer"]["complete"] is True
    assert ds.attrs["rsinfer"]["completed_rows"] == [[0, 700]]


def test_zarr_records_completed_rows_while_writing(tmp_path):
    import zarr

    _, _, rows = label_rows(700, 300, strip=100)
    w = open_writer(spec(tmp_path / "l.zarr", width=300, height=700))
    with w:
        for r in rows[:4]:
            w.write(r)
        group = zarr.open_group(w.partial_paths[0], mode="r")
        assert group.attrs["rsinfer"]["completed_rows"] == [[0, 256]]  # whole chunk rows only
        assert group.attrs["rsinfer"]["complete"] is False
        assert not os.path.exists(tmp_path / "l.zarr")
    # left without commit: the partial store is gone and nothing took the real name
    assert os.listdir(tmp_path) == []


def test_rotated_transform_without_crs_round_trips(tmp_path):
    t = Affine.rotation(30) @ Affine(0.5, 0, 0, 0, -0.5, 0)
    _, _, rows = label_rows(40, 30, strip=16)
    write_all(spec(tmp_path / "r.tif", width=30, height=40, crs=None, transform=t), rows)
    with rasterio.open(tmp_path / "r.tif") as ds:
        assert ds.crs is None and ds.transform.almost_equals(t)


def test_existing_output_needs_overwrite(tmp_path):
    (tmp_path / "l.tif").write_bytes(b"old")
    with pytest.raises(RsinferError, match="exists"):
        open_writer(spec(tmp_path / "l.tif"))
    _, _, rows = label_rows(1100, 1300)
    write_all(spec(tmp_path / "l.tif", overwrite=True), rows)
    with rasterio.open(tmp_path / "l.tif") as ds:
        assert ds.width == 1300


def test_unknown_extension_and_missing_folder_are_refused(tmp_path):
    with pytest.raises(RsinferError, match="unknown output format"):
        spec(tmp_path / "l.png").format
    with pytest.raises(RsinferError, match="does not exist"):
        open_writer(spec(tmp_path / "nope" / "l.tif"))
