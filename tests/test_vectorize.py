"""Polygons from label maps: strip-by-strip polygonizing gives the whole raster's polygons."""

from __future__ import annotations

import json

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from rsinfer.errors import RsinferError
from rsinfer.io import labelmap
from rsinfer.io.labelmap import NODATA_LABEL, class_name_tags
from rsinfer.vector import sink as sink_module
from rsinfer.vector import vectorize_labels
from rsinfer.vector.strips import StripMerger

NAMES = ["background", "building", "tree", "water"]
PIXEL = 0.5  # metres: a pixel is 0.25 m²
TRANSFORM = from_origin(500000.0, 5400000.0, PIXEL, PIXEL)


def scene() -> np.ndarray:
    """36 x 40 labels: a U, a ring with a hole, an arch, a diagonal pair, a field with holes, nodata, noise."""
    rng = np.random.default_rng(3)
    a = np.where(rng.random((36, 40)) < 0.5, 0, 3).astype(np.uint8)  # noise: many small pieces
    a[0:11, 2:4] = 1  # U: two arms down rows 0-10, joined by a bar in rows 10-11
    a[0:11, 8:10] = 1
    a[10:12, 2:10] = 1
    a[1:11, 12:21] = 2  # ring rows 1-10 around a hole of class 0 with nodata inside
    a[3:9, 14:19] = 0
    a[5:7, 16:18] = NODATA_LABEL
    a[14:26, 2:12] = 1  # arch: joined at the top, two legs apart below
    a[18:26, 5:9] = 0
    a[3, 25] = a[4, 26] = 2  # touch at a corner only, across the border at row 4: two polygons
    a[3, 26] = a[4, 25] = 0
    a[28:, 30:] = NODATA_LABEL
    a[27:36, 2:20] = 3  # a field with holes inside one strip, the field crossing strip borders
    a[29:31, 4:6] = a[33, 10] = 0
    return a


def write_labels(path, labels: np.ndarray, names=NAMES, crs="EPSG:32632", transform=TRANSFORM):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=labels.shape[1],
        height=labels.shape[0],
        count=1,
        dtype=labels.dtype.name,
        nodata=NODATA_LABEL,
        crs=crs,
        transform=transform,
    ) as dst:
        dst.write(labels, 1)
        if names:
            dst.update_tags(1, **class_name_tags(names))
    return path


def read_layer(path):
    meta, _, wkb, fields = pyogrio.raw.read(path)
    columns = dict(zip(meta["fields"], fields))
    return meta, shapely.from_wkb(wkb), columns


@pytest.fixture(scope="module")
def labels_tif(tmp_path_factory):
    return write_labels(tmp_path_factory.mktemp("vec") / "labels.tif", scene())


@pytest.fixture(scope="module")
def whole(labels_tif, tmp_path_factory):
    """The polygons of the raster read as one strip."""
    out = tmp_path_factory.mktemp("whole") / "whole.gpkg"
    vectorize_labels(labels_tif, out, block_rows=10_000)
    return read_layer(out)


def sorted_features(layer):
    _, geoms, cols = layer
    bounds = shapely.bounds(geoms)
    order = np.lexsort((cols["area"], bounds[:, 1], bounds[:, 0], cols["class_id"]))
    return geoms[order], cols["class_id"][order], cols["area"][order]


# -- the border merge ----------------------------------------------------------------------------
@pytest.mark.parametrize("block_rows", [1, 3, 4, 7])
def test_strips_give_the_whole_rasters_polygons(labels_tif, whole, tmp_path, block_rows):
    out = tmp_path / "strips.gpkg"
    report = vectorize_labels(labels_tif, out, block_rows=block_rows)
    assert report.blocks == -(-36 // block_rows)
    got, want = sorted_features(read_layer(out)), sorted_features(whole)
    assert len(got[0]) == len(want[0]) == report.features
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[2], want[2])
    assert shapely.equals(got[0], want[0]).all()
    assert shapely.is_valid(got[0]).all()
    # no vertex is left on a former strip border: the same vertex count as in one strip
    np.testing.assert_array_equal(shapely.get_num_coordinates(got[0]), shapely.get_num_coordinates(want[0]))
    field = got[0][(got[1] == 3) & (got[2] > 30)]
    assert len(field) == 1 and shapely.get_num_interior_rings(field[0]) >= 2


@pytest.mark.parametrize("block_rows", [4, 10_000])
def test_class_areas_are_pixel_counts_times_pixel_area(labels_tif, tmp_path, block_rows):
    out = tmp_path / "o.gpkg"
    vectorize_labels(labels_tif, out, block_rows=block_rows)
    _, geoms, cols = read_layer(out)
    a = scene()
    for cls in range(len(NAMES)):
        mine = cols["class_id"] == cls
        expected = (a == cls).sum() * PIXEL * PIXEL
        assert shapely.area(geoms[mine]).sum() == pytest.approx(expected, rel=1e-12)
        assert cols["area"][mine].sum() == pytest.approx(expected, rel=1e-12)
        assert set(cols["class_name"][mine]) == {NAMES[cls]}
    assert NODATA_LABEL not in cols["class_id"]
    # nodata is outside every polygon
    nodata_pixel = shapely.Point(*(TRANSFORM @ (16.5, 5.5)))
    assert not shapely.contains(geoms, nodata_pixel).any()


def test_u_ring_and_arch_spanning_three_strips_are_one_feature_each(labels_tif, whole, tmp_path):
    out = tmp_path / "o.gpkg"
    vectorize_labels(labels_tif, out, block_rows=4)  # the U spans strips 0-2, the ring 0-2, the arch 3-6
    _, geoms, cols = read_layer(out)
    buildings = geoms[cols["class_id"] == 1]
    assert len(buildings) == 2  # the U and the arch
    assert sorted(shapely.area(buildings)) == pytest.approx(sorted([(22 + 22 + 12) * 0.25, (120 - 32) * 0.25]))
    trees = geoms[cols["class_id"] == 2]
    ring = trees[shapely.area(trees) > 1]
    assert len(ring) == 1 and shapely.get_num_interior_rings(ring[0]) == 1
    assert shapely.area(ring[0]) == pytest.approx((90 - 30) * 0.25)
    corner_pair = trees[shapely.area(trees) == 0.25]
    assert len(corner_pair) == 2  # pixels touching at a corner stay apart, as without strips
    whole_ring = [g for g in whole[1][whole[2]["class_id"] == 2] if shapely.area(g) > 1]
    assert shapely.equals(ring[0], whole_ring[0])


def test_merger_pending_set_is_bounded_by_the_border_row():
    """Only polygons on the border wait; they are emitted as soon as a strip no longer reaches them."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (64, 50)).astype(np.uint8)
    merger = StripMerger(50)
    finished = 0
    for row0 in range(0, 64, 8):
        strip = labels[row0 : row0 + 8]
        geoms, _ = merger.add(strip, np.ones(strip.shape, bool), row0, last=row0 + 8 == 64)
        finished += len(geoms)
        runs = 1 + int((np.diff(strip[-1].astype(int)) != 0).sum())  # same-class runs in the border row
        assert merger.pending <= runs
        if row0 < 56:
            assert len(geoms) > 0  # finished polygons leave at each strip, not at the end
    assert merger.pending == 0
    from rasterio.features import shapes

    assert finished == sum(1 for _ in shapes(labels, connectivity=4))


def test_features_are_appended_to_the_file_strip_by_strip(labels_tif, whole, tmp_path, monkeypatch):
    appends = []
    flush = sink_module.PolygonSink.flush

    def spy(self):
        appends.append(self._buffered)
        flush(self)

    monkeypatch.setattr(sink_module, "FLUSH_FEATURES", 1)
    monkeypatch.setattr(sink_module.PolygonSink, "flush", spy)
    out = tmp_path / "o.gpkg"
    vectorize_labels(labels_tif, out, block_rows=4)
    assert len(appends) == 9 and max(appends) < len(whole[1]) / 2
    assert shapely.equals(sorted_features(read_layer(out))[0], sorted_features(whole)[0]).all()


def test_reads_are_never_larger_than_one_strip(labels_tif, tmp_path, monkeypatch):
    windows = []
    read = labelmap._GeoTiffLabels.read

    def spy(self, rows, cols):
        windows.append((rows.stop - rows.start, cols.stop - cols.start))
        return read(self, rows, cols)

    monkeypatch.setattr(labelmap._GeoTiffLabels, "read", spy)
    report = vectorize_labels(labels_tif, tmp_path / "o.gpkg", block_rows=5)
    assert max(w[0] for w in windows) == 5 and len(windows) == report.blocks == 8
    assert report.largest_read == (5, 40)
    assert report.max_pending <= 40


# -- options -------------------------------------------------------------------------------------
def test_classes_by_name_or_id(labels_tif, tmp_path):
    vectorize_labels(labels_tif, tmp_path / "a.gpkg", classes=["building", "2"], block_rows=4)
    _, geoms, cols = read_layer(tmp_path / "a.gpkg")
    assert set(cols["class_id"]) == {1, 2}
    assert shapely.area(geoms).sum() == pytest.approx(((scene() == 1) | (scene() == 2)).sum() * 0.25)
    with pytest.raises(RsinferError, match="no class named 'roof'.*background, building"):
        vectorize_labels(labels_tif, tmp_path / "b.gpkg", classes=["roof"])
    assert not (tmp_path / "b.gpkg").exists()


def test_min_area_drops_small_regions_after_merging(labels_tif, tmp_path):
    vectorize_labels(labels_tif, tmp_path / "o.gpkg", min_area=10.0, block_rows=2)
    _, geoms, cols = read_layer(tmp_path / "o.gpkg")
    assert (cols["area"] >= 10.0).all() and len(geoms) >= 2
    # the U is 14 m² in total but under 10 m² in any one strip: it survives because merging comes first
    assert 14.0 in cols["area"][cols["class_id"] == 1]


def test_dst_crs_reprojects_vertices_and_keeps_areas_in_the_rasters_units(labels_tif, whole, tmp_path):
    out = tmp_path / "o.geojson"
    vectorize_labels(labels_tif, out, dst_crs="EPSG:4326", block_rows=4)
    meta, geoms, cols = read_layer(out)
    assert meta["crs"] == "EPSG:4326"
    lon, lat = shapely.get_coordinates(geoms).mean(axis=0)
    assert 6 < lon < 12 and 48 < lat < 49  # UTM 32N, 5400 km north
    assert sorted(cols["area"]) == pytest.approx(sorted(whole[2]["area"]))


def test_simplify_keeps_polygons_valid(labels_tif, whole, tmp_path):
    vectorize_labels(labels_tif, tmp_path / "o.gpkg", simplify=0.6, block_rows=4)
    _, geoms, cols = read_layer(tmp_path / "o.gpkg")
    assert len(geoms) == len(whole[1]) and shapely.is_valid(geoms).all()
    assert shapely.get_num_coordinates(geoms).sum() < shapely.get_num_coordinates(whole[1]).sum()
    assert cols["area"].sum() == pytest.approx(whole[2]["area"].sum())  # area: the region's, not the outline's


# -- inputs and outputs --------------------------------------------------------------------------
def test_zarr_labels_like_the_geotiff(labels_tif, whole, tmp_path):
    import zarr

    group = zarr.open_group(tmp_path / "labels.zarr", mode="w")
    arr = group.create_array("labels", shape=(36, 40), chunks=(8, 16), dtype="uint8")
    arr[:] = scene()
    arr.attrs.update({"nodata": NODATA_LABEL, "class_names": NAMES})
    ref = group.create_array("spatial_ref", shape=(), dtype="int64")
    ref.attrs.update(
        {
            "crs_wkt": rasterio.crs.CRS.from_epsg(32632).to_wkt(),
            "GeoTransform": " ".join(str(v) for v in TRANSFORM.to_gdal()),
        }
    )
    out = tmp_path / "o.gpkg"
    vectorize_labels(tmp_path / "labels.zarr", out, block_rows=8)
    meta, geoms, cols = got = read_layer(out)
    assert meta["crs"] == "EPSG:32632"
    assert shapely.equals(sorted_features(got)[0], sorted_features(whole)[0]).all()


def test_all_nodata_gives_an_empty_layer_with_its_fields(tmp_path):
    labels = write_labels(tmp_path / "empty.tif", np.full((10, 10), NODATA_LABEL, np.uint8))
    for name in ("o.gpkg", "o.geojson"):
        report = vectorize_labels(labels, tmp_path / name, block_rows=3)
        info = pyogrio.read_info(tmp_path / name)
        assert report.features == 0 and info["features"] == 0
        assert list(info["fields"]) == ["class_id", "class_name", "area"] or name.endswith(".geojson")


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_without_class_names_or_crs(tmp_path):
    labels = np.zeros((6, 6), np.uint8)
    labels[2:4, 2:4] = 7
    path = tmp_path / "plain.tif"
    with rasterio.open(path, "w", driver="GTiff", width=6, height=6, count=1, dtype="uint8") as dst:
        dst.write(labels, 1)
    vectorize_labels(path, tmp_path / "o.gpkg")
    meta, geoms, cols = read_layer(tmp_path / "o.gpkg")
    assert meta["crs"] is None
    assert list(cols["class_name"]) == [None, None]
    assert sorted(cols["area"]) == [4.0, 32.0]  # pixels²
    with pytest.raises(RsinferError, match="plain.tif: the label map has no CRS"):
        vectorize_labels(path, tmp_path / "p.gpkg", dst_crs="EPSG:4326")


def test_parquet_is_written_or_refused_in_one_line(labels_tif, tmp_path):
    out = tmp_path / "o.parquet"
    if "w" in (pyogrio.list_drivers().get("Parquet") or ""):
        vectorize_labels(labels_tif, out)
        assert pyogrio.read_info(out)["features"] > 0
    else:
        with pytest.raises(RsinferError, match=r"o.parquet: the GDAL .* cannot write Parquet; use .gpkg or .geojson"):
            vectorize_labels(labels_tif, out)
        assert not out.exists()


def test_a_failure_midway_leaves_no_output(labels_tif, tmp_path, monkeypatch):
    out = tmp_path / "o.gpkg"
    out.write_text("earlier")
    calls = []
    write = sink_module.PolygonSink.write

    def fail_second(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return write(self, *args)

    monkeypatch.setattr(sink_module.PolygonSink, "write", fail_second)
    with pytest.raises(OSError):
        vectorize_labels(labels_tif, out, block_rows=4, overwrite=True)
    assert out.read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.gpkg"]


def test_existing_output_is_refused_without_overwrite(labels_tif, tmp_path):
    out = tmp_path / "o.gpkg"
    out.write_text("earlier")
    with pytest.raises(RsinferError, match="output exists; pass --overwrite"):
        vectorize_labels(labels_tif, out)
    assert out.read_text() == "earlier"
    vectorize_labels(labels_tif, out, overwrite=True)
    assert pyogrio.read_info(out)["features"] > 0


def test_class_name_tags_are_what_the_reader_takes(labels_tif):
    with rasterio.open(labels_tif) as ds:
        assert json.loads(ds.tags(1)["CLASS_NAMES"]) == NAMES
