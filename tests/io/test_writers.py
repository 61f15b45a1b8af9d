"""The label map files as GDAL, QGIS, rio-cogeo and xarray read them."""

import json
import os

import numpy as np
import pytest
import rasterio
from rasterio.enums import Compression
from rasterio.transform import Affine

from rsinfer.errors import RsinferError
from rsinfer.io.cog import parse_creation_options
from rsinfer.io.labelmap import NODATA_LABEL, NODATA_PROB, PROB_MAX, FinishedRows
from rsinfer.io.writers import OutputSpec, open_writer, output_files, probs_path
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


@pytest.fixture(scope="module")
def cog_output(tmp_path_factory):
    """A 700×600 label map with probabilities: each 2×2 block has a 3-pixel majority (its mode)."""
    rng = np.random.default_rng(1)
    half = rng.integers(0, 6, size=(300, 350)).astype(np.uint8)
    full = half.repeat(2, 0).repeat(2, 1)
    full[1::2, 1::2] = (half + 1) % 6  # the minority pixel of each block
    full[:50, :50] = half[:25, :25] = NODATA_LABEL
    probs = rng.integers(0, PROB_MAX + 1, size=(6, 600, 700)).astype(np.uint8)
    probs[:, full == NODATA_LABEL] = NODATA_PROB
    rows = [
        FinishedRows(Span(y, min(600, y + 256)), full[y : y + 256], probs[:, y : y + 256]) for y in range(0, 600, 256)
    ]
    path = tmp_path_factory.mktemp("cog") / "l.tif"
    s = spec(path, width=700, height=600, with_probs=True, source="scene.tif", model="lanet-lite", weights="random")
    write_all(s, rows)
    return path, full, half, probs


def test_geotiff_is_a_cog_georeferenced_with_colours_names_provenance_and_mode_overviews(cog_output):
    from rio_cogeo.cogeo import cog_validate

    path, full, half, _ = cog_output
    valid, errors, _ = cog_validate(str(path))
    assert valid and not errors
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.crs == CRS and ds.transform == TRANSFORM
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255
        assert ds.block_shapes[0] == (512, 512) and ds.compression == Compression.deflate
        np.testing.assert_array_equal(ds.read(1), full)
        cmap = ds.colormap(1)
        assert cmap[1][:3] == ISPRS_COLORS[1] and cmap[255][3] == 0
        assert json.loads(ds.tags(1)["CLASS_NAMES"]) == list(ISPRS_CLASSES)
        tags = ds.tags()
        assert (tags["SOURCE"], tags["MODEL"], tags["WEIGHTS"], tags["SOFTWARE"]) == (
            "scene.tif",
            "lanet-lite",
            "random",
            "rsinfer",
        )
        assert ds.overviews(1) == [2] and tags["OVERVIEW_RESAMPLING"] == "mode"
    with rasterio.open(path, overview_level=0) as ov:
        np.testing.assert_array_equal(ov.read(1), half)  # each block's majority class, nodata kept


def test_probabilities_are_a_cog_scaled_by_1_255_with_nodata_255_and_class_bands(cog_output):
    from rio_cogeo.cogeo import cog_validate

    path, full, half, probs = cog_output
    ppath = probs_path(str(path))
    assert cog_validate(ppath)[0]
    with rasterio.open(ppath) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.count == 6
        np.testing.assert_array_equal(ds.read(), probs)
        assert ds.nodata == NODATA_PROB and ds.scales == (1 / 255,) * 6 and ds.offsets == (0.0,) * 6
        assert ds.descriptions == ISPRS_CLASSES and ds.tags()["MODEL"] == "lanet-lite"
        masked = ds.read(2, masked=True)
        np.testing.assert_array_equal(masked.mask, full == NODATA_LABEL)  # invalid pixels read as nodata, not p=0
        assert ds.overviews(1) == [2] and ds.tags()["OVERVIEW_RESAMPLING"] == "average"
    with rasterio.open(ppath, overview_level=0) as ov:
        got = ov.read(1).astype(float)
    mean = probs[0].reshape(300, 2, 350, 2).astype(float).mean(axis=(1, 3))
    valid = half != NODATA_LABEL
    assert np.abs(got[valid] - mean[valid]).max() <= 1 and (got[~valid] == NODATA_PROB).all()


def test_class_names_and_attribute_table_are_where_gdal_reads_them(cog_output, gdal_native):
    path = cog_output[0]
    band = gdal_native.band(str(path))
    assert band.categories == list(ISPRS_CLASSES)
    assert band.rat_table_type == 0  # thematic
    # value (GFU_MinMax), name (GFU_Name), red, green, blue, alpha (GFU_Red..GFU_Alpha)
    assert [(name, usage) for name, _, usage in band.rat_columns] == [
        ("Value", 5),
        ("Class", 2),
        ("Red", 6),
        ("Green", 7),
        ("Blue", 8),
        ("Alpha", 9),
    ]
    assert band.rat_rows == [
        [str(i), name, *(str(c) for c in colour), "255"]
        for i, (name, colour) in enumerate(zip(ISPRS_CLASSES, ISPRS_COLORS, strict=True))
    ]


def test_qgis_style_lists_exactly_the_classes_with_nodata_transparent(cog_output):
    import xml.etree.ElementTree as ET

    path = cog_output[0]
    root = ET.parse(path.with_name("l.qml")).getroot()
    renderer = root.find("pipe/rasterrenderer")
    assert root.tag == "qgis" and renderer is not None
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = [(e.get("value"), e.get("label"), e.get("color"), e.get("alpha")) for e in renderer.iter("paletteEntry")]
    assert entries == [
        (str(i), name, "#{:02x}{:02x}{:02x}".format(*colour), "255")
        for i, (name, colour) in enumerate(zip(ISPRS_CLASSES, ISPRS_COLORS, strict=True))
    ]
    nodata = renderer.find("rasterTransparency/singleValuePixelList/pixelListEntry")
    assert nodata is not None and (nodata.get("min"), nodata.get("max"), nodata.get("percentTransparent")) == (
        "255",
        "255",
        "100",
    )


def test_every_file_of_an_output_is_listed_and_written_together(cog_output, tmp_path):
    path = str(cog_output[0])
    files = output_files(path, probs=True)
    assert files == [path, probs_path(path), path + ".aux.xml", path[: -len(".tif")] + ".qml"]
    assert sorted(os.listdir(os.path.dirname(path))) == sorted(os.path.basename(f) for f in files)
    assert output_files(path, probs=False) == [path, path + ".aux.xml", path[: -len(".tif")] + ".qml"]
    assert output_files(str(tmp_path / "l.zarr"), probs=True) == [str(tmp_path / "l.zarr")]


def test_cog_is_deterministic_and_creation_options_override_the_defaults(tmp_path):
    _, _, rows = label_rows(300, 280, strip=100)
    write_all(spec(tmp_path / "a.tif", width=280, height=300), rows)
    write_all(spec(tmp_path / "b.tif", width=280, height=300), rows)
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()
    options = (("compress", "zstd"), ("BLOCKSIZE", "256"))
    write_all(spec(tmp_path / "c.tif", width=280, height=300, creation_options=options), rows)
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert ds.compression == Compression.zstd and ds.block_shapes[0] == (256, 256)
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.overviews(1) == [2]


def test_creation_options_are_checked_against_gdals_cog_driver(tmp_path):
    assert parse_creation_options(["compress=ZSTD", "LEVEL=9"]) == (("COMPRESS", "ZSTD"), ("LEVEL", "9"))
    for bad, says in (
        (["COMPRESS"], "expected KEY=VALUE"),
        (["FOO=1"], "does not support creation option FOO"),
        (["COMPRESS=BOGUS"], "unexpected value for COMPRESS"),
        (["OVERVIEW_RESAMPLING=BOGUS"], 'Unsupported resampling method "BOGUS"'),
    ):
        with pytest.raises(RsinferError, match=says):
            parse_creation_options(bad)
    with pytest.raises(RsinferError, match="FOO"):  # the writer checks them before any row too
        open_writer(spec(tmp_path / "l.tif", creation_options=(("FOO", "1"),))).__enter__()
    assert os.listdir(tmp_path) == []


def test_an_unfinished_geotiff_leaves_nothing(tmp_path):
    _, _, rows = label_rows(700, 300, strip=100, probs=True)
    with open_writer(spec(tmp_path / "l.tif", width=300, height=700, with_probs=True)) as w:
        for r in rows[:6]:
            w.write(r)
        assert any(name.endswith(".scratch.tif") for name in os.listdir(tmp_path))
    assert os.listdir(tmp_path) == []  # no commit: scratch and partial files all removed


def test_zarr_opens_georeferenced_in_xarray_and_in_gdal(tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("rioxarray")
    full, probs, rows = label_rows(300, 260, strip=128, probs=True)
    probs = np.minimum(probs, PROB_MAX)
    probs[:, full == NODATA_LABEL] = NODATA_PROB
    rows = [FinishedRows(r.rows, r.labels, probs[:, r.rows.start : r.rows.stop]) for r in rows]
    write_all(spec(tmp_path / "l.zarr", width=260, height=300, with_probs=True), rows)

    ds = xr.open_zarr(tmp_path / "l.zarr", decode_coords="all")
    assert ds.labels.rio.crs == CRS and ds.probs.rio.crs == CRS
    assert ds.labels.rio.transform() == TRANSFORM
    assert ds.spatial_ref.attrs["grid_mapping_name"] == "transverse_mercator"
    assert ds.labels.encoding["chunks"] == (256, 256) and ds.probs.encoding["chunks"] == (6, 256, 256)
    raw = xr.open_zarr(tmp_path / "l.zarr", mask_and_scale=False)
    np.testing.assert_array_equal(raw.labels.values, full)
    np.testing.assert_array_equal(raw.probs.values, probs)
    building = ds.probs.sel({"class": "building"}).values  # decoded: probability, NaN where nodata
    assert building.dtype.kind == "f" and np.isnan(building[full == NODATA_LABEL]).all()
    valid = full != NODATA_LABEL
    np.testing.assert_allclose(building[valid], probs[1][valid] / 255)
    assert list(ds["class"].values) == list(ISPRS_CLASSES)

    for name, bands in (("labels", 1), ("probs", 6)):
        with rasterio.open(f'ZARR:"{tmp_path / "l.zarr"}":/{name}') as gd:
            assert gd.crs == CRS and gd.transform.almost_equals(TRANSFORM) and gd.count == bands
            assert gd.nodata == 255 and (gd.width, gd.height) == (260, 300)
            assert gd.scales[0] == (1.0 if name == "labels" else 1 / 255)
            np.testing.assert_array_equal(gd.read(1), full if name == "labels" else probs[0])


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
    _, _, rows = label_rows(200, 300)
    write_all(spec(tmp_path / "l.tif", width=300, height=200, overwrite=True), rows)
    with rasterio.open(tmp_path / "l.tif") as ds:
        assert ds.width == 300


def test_unknown_extension_and_missing_folder_are_refused(tmp_path):
    with pytest.raises(RsinferError, match="unknown output format"):
        spec(tmp_path / "l.png").format
    with pytest.raises(RsinferError, match="does not exist"):
        open_writer(spec(tmp_path / "nope" / "l.tif"))
