"""``rsinfer.evaluation.streaming``: the confusion matrix of two label maps, streamed window by window."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from rsinfer.cli.evaluate import evaluate
from rsinfer.errors import InputError
from rsinfer.evaluation import evaluate_rasters

W, H = 1300, 900
CLASSES = ("impervious_surfaces", "building", "low_vegetation", "tree", "car", "clutter")
COLORS = ((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0))  # ISPRS'


def reference_cm(truth, pred, k, valid):
    """The whole-array confusion matrix, one class pair at a time (no bincount)."""
    cm = np.zeros((k, k), dtype=np.int64)
    for i in range(k):
        for j in range(k):
            cm[i, j] = np.count_nonzero(valid & (truth == i) & (pred == j))
    return cm


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


@pytest.fixture
def read_log(monkeypatch):
    """Every rasterio band read: (file name, window)."""
    calls = []
    orig = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):
        calls.append((Path(self.name).name, kwargs.get("window")))
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    return calls


def test_streaming_equals_whole_array_and_never_reads_the_whole_raster(pair, read_log):
    p, t, pred, truth = pair
    res = evaluate_rasters(p, t)
    expected = reference_cm(truth, pred, 6, (truth != 255) & (pred != 255))
    np.testing.assert_array_equal(res.confusion_matrix, expected)
    assert res.confusion_matrix.dtype == np.int64 and res.pixels == expected.sum()
    assert res.oa == pytest.approx(np.trace(expected) / expected.sum())
    assert res.class_names == tuple(f"class {i}" for i in range(6))  # K from the data: no names in the files

    for name in ("pred.tif", "truth.tif"):
        windows = [w for n, w in read_log if n == name]
        assert windows and all(w is not None for w in windows), "every read is windowed"
        assert all(w.width * w.height < W * H for w in windows), "no window covers the raster"
        assert sum(w.width * w.height for w in windows) == W * H, "each pixel is read once"
        assert all(w.row_off % 256 == 0 for w in windows), "windows start on block rows"

    # any window grid, any number of threads: the same matrix
    read_log.clear()
    res2 = evaluate_rasters(p, t, window=(300, 500), workers=3)
    np.testing.assert_array_equal(res2.confusion_matrix, expected)
    assert res2.windows == 9 and len(read_log) == 18


def test_nodata_of_either_raster_is_excluded(make_raster):
    truth = np.array(
        [[0, 1, 1, 2], [1, 1, 2, 2], [0, 0, 2, 2], [1, 2, 2, 0]], dtype=np.uint8
    )  # the file declares nodata 0
    pred = np.array(
        [[1, 1, 255, 2], [1, 2, 2, 2], [2, 0, 2, 1], [255, 2, 2, 1]], dtype=np.uint8
    )  # no nodata declared: 255
    t = make_raster(truth, name="t.tif", nodata=0, tiled=False)
    p = make_raster(pred, name="p.tif", tiled=False)
    res = evaluate_rasters(p, t)
    np.testing.assert_array_equal(res.confusion_matrix, [[0, 0, 0], [0, 2, 1], [0, 1, 6]])
    assert res.pixels == 10 and res.oa == pytest.approx(0.8)
    assert math.isnan(res.iou[0])  # class 0 only ever appears as nodata
    assert res.miou == pytest.approx((2 / 4 + 6 / 8) / 2)


def test_ignore_index_leaves_label_classes_out(pair):
    p, t, pred, truth = pair
    res = evaluate_rasters(p, t, num_classes=6, ignore=(5, 4))
    valid = (truth != 255) & (pred != 255) & (truth != 5) & (truth != 4)
    expected = reference_cm(truth, pred, 6, valid)
    np.testing.assert_array_equal(res.confusion_matrix, expected)
    assert expected[:, 5].sum() > 0  # predicting an ignored class on a counted pixel is still an error
    assert res.ignore == (4, 5) and np.isnan(res.iou[4:]).all() and np.isnan(res.f1[4:]).all()
    tp = np.diag(expected)[:4]
    iou = tp / (expected.sum(0)[:4] + expected.sum(1)[:4] - tp)
    assert res.miou == pytest.approx(iou.mean()) and res.oa == pytest.approx(tp.sum() / expected.sum())


def test_class_ids_beyond_num_classes_are_an_error_naming_the_file(pair):
    p, t, _, _ = pair
    with pytest.raises(InputError, match=r"truth\.tif: class id 5 .* 4 classes"):
        evaluate_rasters(p, t, num_classes=4)


def test_wider_integer_types_give_the_same_result(pair, make_raster):
    """uint8 pairs take a fast path (bincount of truth << 8 | pred); other types mask first: same matrix."""
    p, t, pred, truth = pair
    t16 = make_raster(truth.astype(np.uint16), name="truth16.tif", nodata=255)
    fast = evaluate_rasters(p, t, ignore=(2,))
    general = evaluate_rasters(p, t16, ignore=(2,))
    np.testing.assert_array_equal(general.confusion_matrix, fast.confusion_matrix)
    assert fast.confusion_matrix[2].sum() == 0 and fast.confusion_matrix[:, 2].sum() > 0
    neg = truth.astype(np.int16)
    neg[500, 500] = -3
    bad = make_raster(neg, name="negative.tif", nodata=255)
    with pytest.raises(InputError, match=r"negative\.tif: negative class id -3 in rows 0-512"):
        evaluate_rasters(p, bad)
    with pytest.raises(InputError, match=r"pred\.tif: class id 5 .* 3 classes"):  # fast path, PRED out of range
        evaluate_rasters(
            p,
            make_raster(np.where(truth == 255, 255, np.minimum(truth, 2)).astype(np.uint8), name="t3.tif", nodata=255),
            num_classes=3,
        )


# -- zarr and rsinfer's own outputs -----------------------------------------------------------
def test_zarr_inputs_stream_by_chunks_and_match_geotiff(tmp_path, make_raster, monkeypatch):
    import zarr

    from rsinfer.io.labelmap import FinishedRows
    from rsinfer.io.writers import OutputSpec, open_writer
    from rsinfer.tiling import Span

    h, w = 700, 600
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 6, size=(h, w)).astype(np.uint8)
    pred = np.where(rng.random((h, w)) < 0.6, truth, rng.integers(0, 6, size=(h, w))).astype(np.uint8)
    truth[:40] = 255
    pred[:, :30] = 255
    transform = from_origin(500000.0, 5400000.0, 0.2, 0.2)

    # PRED: a zarr group written by rsinfer's writer (class names, CRS, transform in attributes)
    spec = OutputSpec(
        path=str(tmp_path / "pred.zarr"),
        width=w,
        height=h,
        crs=rasterio.crs.CRS.from_epsg(32632),
        transform=transform,
        class_names=CLASSES,
        class_colors=COLORS,
        chunk=256,
    )
    with open_writer(spec) as writer:
        writer.write(FinishedRows(Span(0, h), pred, None))
        writer.commit()
    # LABELS: a bare zarr v3 group with a `labels` array (no georeferencing: a warning)
    group = zarr.open_group(tmp_path / "truth.zarr", mode="w", zarr_format=3)
    arr = group.create_array("labels", shape=(h, w), chunks=(256, 256), dtype="uint8", fill_value=255)
    arr[:] = truth

    selections = []
    orig = zarr.Array.__getitem__

    def spy(self, sel):
        selections.append(sel)
        return orig(self, sel)

    monkeypatch.setattr(zarr.Array, "__getitem__", spy)
    with pytest.warns(UserWarning, match="truth.zarr has no CRS"):
        res = evaluate_rasters(tmp_path / "pred.zarr", tmp_path / "truth.zarr")
    monkeypatch.undo()
    assert selections and all((s[0].stop - s[0].start) * (s[1].stop - s[1].start) < h * w for s in selections)

    expected = reference_cm(truth, pred, 6, (truth != 255) & (pred != 255))
    np.testing.assert_array_equal(res.confusion_matrix, expected)
    assert res.class_names == CLASSES  # from the zarr `labels` attributes

    # the same data as GeoTIFFs gives the same matrix, in any combination
    t_tif = make_raster(truth, name="truth.tif", nodata=255, transform=transform)
    mixed = evaluate_rasters(tmp_path / "pred.zarr", t_tif)
    np.testing.assert_array_equal(mixed.confusion_matrix, expected)

    # the zarr's georeferencing is read: a shifted grid is refused
    shifted = make_raster(truth, name="shifted.tif", nodata=255, transform=from_origin(500010.0, 5400000.0, 0.2, 0.2))
    with pytest.raises(InputError, match="different pixel grids"):
        evaluate_rasters(tmp_path / "pred.zarr", shifted)


def test_class_names_and_count_come_from_the_prediction_tags(pair, runner):
    p, t, _, _ = pair
    with rasterio.open(p, "r+") as ds:
        ds.update_tags(1, CLASS_NAMES=json.dumps(list(CLASSES) + ["water"]))  # as rsinfer segment writes them
    res = evaluate_rasters(p, t)
    assert res.num_classes == 7 and res.class_names[-1] == "water" and math.isnan(res.iou[6])
    out = runner.invoke(evaluate, [str(p), str(t)])
    assert out.exit_code == 0, out.output
    assert "low_vegetation" in out.output and "water" in out.output and "means over 6 of 7 classes" in out.output
