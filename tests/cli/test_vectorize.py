"""``rsinfer vectorize``: the command line (outputs, options, one-line errors)."""

from __future__ import annotations

import sys

import numpy as np
import pyogrio
import pytest
import rasterio
from rasterio.transform import from_origin

from rsinfer.cli.main import main
from rsinfer.io.labelmap import NODATA_LABEL, class_name_tags

NAMES = ["background", "building", "tree"]


@pytest.fixture
def labels_tif(tmp_path):
    labels = np.zeros((30, 20), np.uint8)
    labels[2:28, 3:6] = 1  # a building strip down the whole raster
    labels[5:9, 10:15] = 2
    labels[20:, 12:] = NODATA_LABEL
    path = tmp_path / "labels.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=20,
        height=30,
        count=1,
        dtype="uint8",
        nodata=NODATA_LABEL,
        crs="EPSG:32632",
        transform=from_origin(500000.0, 5400000.0, 2.0, 2.0),
    ) as dst:
        dst.write(labels, 1)
        dst.update_tags(1, **class_name_tags(NAMES))
    return path


def errors(res) -> list[str]:
    return [line for line in res.output.splitlines() if line.startswith("rsinfer: error:")]


def test_writes_a_geopackage_with_the_rasters_crs(runner, labels_tif, tmp_path):
    out = tmp_path / "polygons.gpkg"
    res = runner.invoke(main, ["vectorize", str(labels_tif), "-o", str(out), "--block-rows", "8"])
    assert res.exit_code == 0, res.output
    assert "3 polygons (3 classes), 4 strips of 8 rows" in res.output
    info = pyogrio.read_info(out)
    assert info["crs"] == "EPSG:32632" and info["features"] == 3 and info["layer_name"] == "polygons"
    meta, _, _, fields = pyogrio.raw.read(out)
    by_class = dict(zip(fields[1], fields[2]))
    assert by_class == {"background": (600 - 78 - 20 - 80) * 4.0, "building": 78 * 4.0, "tree": 20 * 4.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif", "polygons.gpkg"]


def test_options_classes_min_area_dst_crs(runner, labels_tif, tmp_path):
    out = tmp_path / "o.geojson"
    args = ["vectorize", str(labels_tif), "-o", str(out), "--classes", "building,2", "--min-area", "100"]
    res = runner.invoke(main, [*args, "--dst-crs", "EPSG:4326", "--simplify", "1", "-q"])
    assert res.exit_code == 0 and res.output == ""
    meta, _, _, fields = pyogrio.raw.read(out)
    assert meta["crs"] == "EPSG:4326"
    assert list(fields[1]) == ["building"]  # the tree (80 m²) is under --min-area


def test_existing_output_is_refused_without_overwrite(runner, labels_tif, tmp_path):
    out = tmp_path / "o.gpkg"
    out.write_text("earlier")
    res = runner.invoke(main, ["vectorize", str(labels_tif), "-o", str(out)])
    assert res.exit_code == 1 and len(errors(res)) == 1 and "output exists; pass --overwrite" in res.output
    assert out.read_text() == "earlier"
    res = runner.invoke(main, ["vectorize", str(labels_tif), "-o", str(out), "--overwrite"])
    assert res.exit_code == 0 and pyogrio.read_info(out)["features"] == 3


def test_without_pyogrio_one_line_names_the_extra(runner, labels_tif, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyogrio", None)  # `import pyogrio` raises ImportError
    out = tmp_path / "o.gpkg"
    res = runner.invoke(main, ["vectorize", str(labels_tif), "-o", str(out)])
    assert res.exit_code == 1
    assert res.output.splitlines() == ["rsinfer: error: vectorize needs pyogrio: pip install 'rsinfer[vector]'"]
    assert not out.exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["missing.tif", "-o", "o.gpkg"], "missing.tif: no such file"),
        (["rgb.tif", "-o", "o.gpkg"], "rgb.tif: the raster has 3 bands"),
        (["float.tif", "-o", "o.gpkg"], "float.tif: data type float32"),
        (["labels.tif", "-o", "o.shp"], "o.shp: unknown output format .shp"),
        (["labels.tif", "-o", "o.gpkg", "--classes", "roof"], "labels.tif: no class named 'roof'"),
        (["labels.tif", "-o", "o.gpkg", "--dst-crs", "EPSG:0"], "--dst-crs EPSG:0: not a coordinate reference"),
        (["labels.tif", "-o", "nodir/o.gpkg"], "nodir/o.gpkg: output folder"),
    ],
)
def test_bad_inputs_are_one_line_and_no_output(runner, labels_tif, tmp_path, monkeypatch, args, needle):
    for name, count, dtype in (("rgb.tif", 3, "uint8"), ("float.tif", 1, "float32")):
        with rasterio.open(
            tmp_path / name,
            "w",
            driver="GTiff",
            width=4,
            height=4,
            count=count,
            dtype=dtype,
            crs="EPSG:32632",
            transform=from_origin(0, 8, 2, 2),
        ) as dst:
            dst.write(np.zeros((count, 4, 4), dtype))
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(main, ["vectorize", *args])
    assert res.exit_code == 1, res.output
    assert res.output.splitlines() == errors(res) and len(errors(res)) == 1
    assert needle in errors(res)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
