"""segment --aoi / --bbox: only tiles touching the area run, pixels outside are nodata, and the
labels inside are those of a run on the raster masked to the area."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.warp import transform_geom
from rasterio.windows import Window

from rsinfer.aoi import AreaOfInterest
from rsinfer.cli.main import main
from rsinfer.io.labelmap import NODATA_LABEL
from rsinfer.synth import write_synthetic_scene
from rsinfer.tiling import TileGrid

try:
    import pyogrio  # noqa: F401

    HAS_PYOGRIO = True
except ImportError:
    HAS_PYOGRIO = False

SEGMENT = ["--model", "lanet-lite", "--tile", "128", "--overlap", "32", "--device", "cpu", "-q"]
ORIGIN, PIXEL = (500000.0, 5400000.0), 0.2
# Columns 100-230 and rows 150-260 of the scene, in its CRS (EPSG:32632).
BOX = (ORIGIN[0] + 100 * PIXEL, ORIGIN[1] - 260 * PIXEL, ORIGIN[0] + 230 * PIXEL, ORIGIN[1] - 150 * PIXEL)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("aoi") / "scene.tif"
    write_synthetic_scene(path, path.with_name("truth.tif"), 400, 300, seed=5, origin=ORIGIN, pixel_size=PIXEL)
    return path


def read_labels(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_area_tests_tiles_and_masks_pixel_centres():
    from affine import Affine

    area = AreaOfInterest(shapely.box(10, -20, 30, -10), Affine(1, 0, 0, 0, -1, 0))  # rows 10-20, cols 10-30
    assert area.touches(Window(0, 0, 12, 12)) and not area.touches(Window(40, 0, 10, 10))
    mask = area.mask(Window(5, 5, 30, 20))
    want = np.zeros((20, 30), bool)
    want[5:15, 5:25] = True
    assert np.array_equal(mask, want)


def test_bbox_labels_equal_a_run_on_the_masked_raster_and_outside_tiles_never_run(scene, tmp_path, runner):
    out = tmp_path / "box.tif"
    polygons = tmp_path / "box.gpkg"  # segment --vector: the labels as polygons too
    vector = ["--vector", str(polygons)] if HAS_PYOGRIO else []
    res = runner.invoke(
        main, ["segment", str(scene), "-o", str(out), *SEGMENT, "--bbox", ",".join(map(str, BOX)), *vector]
    )
    assert res.exit_code == 0, res.output

    # The same raster with a GDAL mask that is the box: the reference for every pixel.
    masked = tmp_path / "masked.tif"
    with rasterio.open(scene) as src:
        profile = src.profile
        data = src.read()
    inside = np.zeros(data.shape[1:], bool)
    inside[150:260, 100:230] = True
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "w", **profile) as dst:
        dst.write(data)
        dst.write_mask(inside.astype(np.uint8) * 255)
    ref = tmp_path / "ref.tif"
    assert runner.invoke(main, ["segment", str(masked), "-o", str(ref), *SEGMENT]).exit_code == 0

    labels = read_labels(out)
    assert np.array_equal(labels, read_labels(ref))
    assert (labels[~inside] == NODATA_LABEL).all() and (labels[inside] != NODATA_LABEL).all()
    with rasterio.open(out) as ds, rasterio.open(scene) as src:
        assert ds.crs == src.crs and ds.transform == src.transform and (ds.width, ds.height) == (400, 300)
    if HAS_PYOGRIO:  # the polygons cover exactly the labelled pixels
        from pyogrio.raw import read

        meta, _, wkb, fields = read(polygons)
        areas = shapely.area(shapely.from_wkb(wkb))
        assert areas.sum() == pytest.approx(inside.sum() * PIXEL**2)
        assert list(meta["fields"]) == ["class_id", "class_name", "area"]


def test_aoi_file_in_another_crs_is_reprojected(scene, tmp_path, runner):
    pyogrio = pytest.importorskip("pyogrio")
    lonlat = transform_geom("EPSG:32632", "EPSG:4326", shapely.geometry.mapping(shapely.box(*BOX)))
    aoi = tmp_path / "aoi.geojson"
    pyogrio.raw.write(  # geopandas is not needed: the raw writer takes WKB
        aoi,
        np.array([shapely.to_wkb(shapely.geometry.shape(lonlat))], dtype=object),
        [],
        [],
        crs="EPSG:4326",
        geometry_type="Polygon",
        driver="GeoJSON",
    )
    out = tmp_path / "aoi.tif"
    res = runner.invoke(main, ["segment", str(scene), "-o", str(out), *SEGMENT, "--aoi", str(aoi)])
    assert res.exit_code == 0, res.output
    labels = read_labels(out)
    assert (labels[152:258, 102:228] != NODATA_LABEL).all()  # well inside (reprojection moves edges < 1 px)
    outside = np.ones_like(labels, bool)
    outside[148:262, 98:232] = False
    assert (labels[outside] == NODATA_LABEL).all()


def test_tiles_not_touching_the_area_are_skipped(scene, tmp_path, runner):
    from rsinfer.pipeline import SegmentOptions, run_segment

    report = run_segment(
        SegmentOptions(
            str(scene), str(tmp_path / "r.tif"), model="lanet-lite", tile=128, overlap=32, device="cpu", bbox=BOX
        )
    )
    grid = TileGrid(300, 400, 128, 32)
    box = shapely.box(100, 150, 230, 260)
    touching = sum(shapely.box(t.cols.start, t.rows.start, t.cols.stop, t.rows.stop).intersects(box) for t in grid)
    assert report.tiles_predicted == touching < len(grid) and report.tiles_skipped == len(grid) - touching


@pytest.mark.parametrize(
    "args,message",
    [
        (["--bbox", "0,0,1,1"], "does not overlap"),
        (["--bbox", "500080,5399950,500090,5399960"], "does not overlap"),  # touches the right edge only
        (["--bbox", "3,0,1,1"], "minx must be below maxx"),
        (["--aoi", "missing.gpkg"], "cannot read the area of interest"),
    ],
)
def test_bad_areas_are_one_line_and_no_output(scene, tmp_path, runner, args, message):
    out = tmp_path / "x.tif"
    res = runner.invoke(main, ["segment", str(scene), "-o", str(out), *SEGMENT, *args])
    assert res.exit_code != 0 and message in res.output and res.output.count("\n") <= 2
    assert not out.exists()


def test_an_area_on_a_raster_without_crs_must_be_in_its_coordinates(real_data, tmp_path, runner):
    out = tmp_path / "x.tif"
    res = runner.invoke(
        main,
        [
            "segment",
            str(real_data / "rotated.tif"),
            "-o",
            str(out),
            *SEGMENT,
            "--bbox",
            "0,0,1,1",
            "--bbox-crs",
            "EPSG:4326",
        ],
    )
    assert res.exit_code == 1 and "has no CRS" in res.output and not out.exists()


def test_crop_to_aoi_writes_the_areas_window_as_a_run_on_that_window_would(scene, tmp_path, runner):
    out = tmp_path / "crop.tif"
    bbox = ",".join(map(str, BOX))
    res = runner.invoke(main, ["segment", str(scene), "-o", str(out), *SEGMENT, "--bbox", bbox, "--crop-to-aoi"])
    assert res.exit_code == 0, res.output

    window = Window(100, 150, 130, 110)  # the box's pixels (it lies on whole pixels)
    cut = tmp_path / "cut.tif"
    with rasterio.open(scene) as src:
        profile = dict(src.profile, width=130, height=110, transform=src.window_transform(window))
        with rasterio.open(cut, "w", **profile) as dst:
            dst.write(src.read(window=window))
    ref = tmp_path / "ref.tif"
    assert runner.invoke(main, ["segment", str(cut), "-o", str(ref), *SEGMENT]).exit_code == 0
    with rasterio.open(out) as got, rasterio.open(ref) as want:
        assert (got.width, got.height) == (130, 110) and got.transform == want.transform and got.crs == want.crs
        assert np.array_equal(got.read(1), want.read(1))
        assert got.tags()["SOURCE"] == "scene.tif"


def test_crop_to_aoi_refuses_a_path_gdal_would_misread(scene, tmp_path, runner):
    odd = tmp_path / "what?.tif"
    odd.symlink_to(scene)
    res = runner.invoke(
        main,
        [
            "segment",
            str(odd),
            "-o",
            str(tmp_path / "x.tif"),
            *SEGMENT,
            "--bbox",
            ",".join(map(str, BOX)),
            "--crop-to-aoi",
        ],
    )
    assert res.exit_code == 1 and "cannot read a path with '?'" in res.output and res.output.count("\n") == 1
