"""``rsinfer eval``: the command line (one-line errors, warnings, the JSON report)."""

import json
import os

import numpy as np
import pytest

from rsinfer.cli.evaluate import evaluate
from rsinfer.evaluation import evaluate_rasters

W, H = 1300, 900


@pytest.fixture
def pair(make_raster):
    """A random 1300x900 truth/prediction pair, tiled GeoTIFFs with 256 blocks, nodata 255 in both."""
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 6, size=(H, W)).astype(np.uint8)
    pred = np.where(rng.random((H, W)) < 0.7, truth, rng.integers(0, 6, size=(H, W))).astype(np.uint8)
    truth[:100, :200] = 255
    pred[800:, 1000:] = 255
    t = make_raster(truth, name="truth.tif", nodata=255, block=256)
    p = make_raster(pred, name="pred.tif", nodata=255, block=256)
    return p, t, pred, truth


def one_error_line(res):
    return [line for line in res.output.splitlines() if line.startswith("rsinfer: error:")]


# -- command line --------------------------------------------------------------------------------
def test_size_mismatch_is_one_line_naming_both_files(runner, make_raster):
    a = make_raster(np.zeros((64, 80), np.uint8), name="a.tif")
    b = make_raster(np.zeros((64, 64), np.uint8), name="b.tif")
    res = runner.invoke(evaluate, [str(a), str(b)])
    assert res.exit_code == 1
    assert res.output.splitlines() == one_error_line(res) and len(one_error_line(res)) == 1  # nothing else at all
    line = one_error_line(res)[0]
    assert "a.tif is 80x64 px" in line and "b.tif is 64x64 px" in line


@pytest.mark.parametrize(
    "args, needle",
    [
        (["missing.tif", "b.tif"], "missing.tif: no such file"),
        (["a.tif", "utm33.tif"], "different CRS (EPSG:32632 vs EPSG:32633)"),
        (["a.tif", "rgb.tif"], "rgb.tif: the raster has 3 bands"),
        (["a.tif", "float.tif"], "float.tif: data type float32"),
        (["a.tif", "empty.tif"], "no pixel is valid in both"),
        (["a.tif", "nolabels.zarr"], "nolabels.zarr: the zarr group has no `labels` array"),
    ],
)
def test_bad_inputs_are_one_line_with_exit_1(runner, make_raster, tmp_path, args, needle):
    import zarr

    data = np.ones((32, 32), np.uint8)
    make_raster(data, name="a.tif")
    make_raster(data, name="b.tif")
    make_raster(data, name="utm33.tif", crs="EPSG:32633")
    make_raster(np.stack([data] * 3), name="rgb.tif")
    make_raster(data.astype(np.float32), name="float.tif")
    make_raster(np.full((32, 32), 255, np.uint8), name="empty.tif")
    zarr.open_group(tmp_path / "nolabels.zarr", mode="w", zarr_format=3)
    res = runner.invoke(evaluate, [str(tmp_path / a) for a in args])
    assert res.exit_code == 1, res.output
    errors = one_error_line(res)
    assert len(errors) == 1 and needle in errors[0], res.output
    assert "Traceback" not in res.output


def test_a_missing_crs_is_a_warning(runner, make_raster):
    data = np.arange(64, dtype=np.uint8).reshape(8, 8) % 3
    a = make_raster(data, name="a.tif")
    b = make_raster(data, name="b.tif", crs=None)
    res = runner.invoke(evaluate, [str(a), str(b)])
    assert res.exit_code == 0, res.output
    assert "rsinfer: warning:" in res.output and "b.tif has no CRS" in res.output
    assert "OA 100.00" in res.output


def test_json_report_parses_and_matches(runner, pair, tmp_path):
    p, t, _, _ = pair
    out = tmp_path / "metrics.json"
    res = runner.invoke(evaluate, [str(p), str(t), "--ignore-index", "5", "--json", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("mIoU ") and len(res.output.strip().splitlines()) == 1  # -q: the summary alone
    report = json.loads(out.read_text())
    direct = evaluate_rasters(p, t, ignore=(5,))
    assert set(report) >= {"confusion_matrix", "classes", "iou", "f1", "miou", "oa", "mean_f1", "pixels"}
    assert report["confusion_matrix"] == direct.confusion_matrix.tolist()
    assert report["classes"] == list(direct.class_names)
    assert report["iou"][:5] == pytest.approx(direct.iou[:5].tolist()) and report["iou"][5] is None
    assert report["f1"][:5] == pytest.approx(direct.f1[:5].tolist()) and report["f1"][5] is None
    assert report["miou"] == pytest.approx(direct.miou) and report["mean_f1"] == pytest.approx(direct.mean_f1)
    assert report["oa"] == pytest.approx(direct.oa) and report["pixels"] == direct.pixels
    assert report["ignore_index"] == [5]
    assert sorted(os.listdir(tmp_path)) == ["metrics.json", "pred.tif", "truth.tif"]  # no partial file left

    # an existing report is kept without --overwrite
    before = out.read_text()
    again = runner.invoke(evaluate, [str(p), str(t), "--json", str(out)])
    assert again.exit_code == 1 and "--overwrite" in one_error_line(again)[0]
    assert out.read_text() == before
    again = runner.invoke(evaluate, [str(p), str(t), "--json", str(out), "--overwrite", "-q"])
    assert again.exit_code == 0 and json.loads(out.read_text())["ignore_index"] == []


def test_json_dash_writes_the_report_to_stdout_alone(runner, pair, tmp_path, monkeypatch):
    p, t, _, _ = pair
    monkeypatch.chdir(tmp_path)  # where a file named "-" would appear
    res = runner.invoke(evaluate, [str(p), str(t), "--json", "-"])
    assert res.exit_code == 0, res.output
    assert res.stdout == evaluate_rasters(p, t).to_json()  # the report alone: table and summary go to stderr
    assert "mIoU " in res.stderr and "-> stdout" in res.stderr
    assert sorted(os.listdir(tmp_path)) == ["pred.tif", "truth.tif"]
    quiet = runner.invoke(evaluate, [str(p), str(t), "--json", "-", "-q"])
    assert quiet.exit_code == 0 and quiet.stdout == res.stdout
    assert quiet.stderr.startswith("mIoU ") and len(quiet.stderr.strip().splitlines()) == 1
