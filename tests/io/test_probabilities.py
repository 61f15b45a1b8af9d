"""Probabilities end to end: invalid input pixels are nodata in the probabilities too, not p = 0."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from rsinfer.io.labelmap import NODATA_LABEL, NODATA_PROB, PROB_MAX, PROB_SCALE
from rsinfer.pipeline import SegmentOptions, run_segment


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """One tiny scene with a nodata corner, segmented into GeoTIFF and zarr with --probs."""
    folder = tmp_path_factory.mktemp("probs")
    rng = np.random.default_rng(3)
    data = rng.integers(1, 255, size=(3, 150, 170)).astype(np.uint8)
    data[:, :40, :60] = 0
    src = folder / "in.tif"
    profile = dict(driver="GTiff", width=170, height=150, count=3, dtype="uint8", nodata=0, crs="EPSG:32632")
    with rasterio.open(src, "w", transform=rasterio.transform.from_origin(500000, 5400000, 0.5, 0.5), **profile) as ds:
        ds.write(data)
    for name in ("out.tif", "out.zarr"):
        torch.manual_seed(0)  # the same random weights for both
        run_segment(
            SegmentOptions(
                input=str(src),
                output=str(folder / name),
                model="simple-fcn",
                weights="random",
                tile=64,
                overlap=16,
                device="cpu",
                probs=True,
            )
        )
    return folder


def test_geotiff_probabilities_are_nodata_where_the_labels_are(segmented):
    with rasterio.open(segmented / "out.tif") as ds:
        invalid = ds.read(1) == NODATA_LABEL
    assert invalid[:40, :60].all() and not invalid[40:].any()
    with rasterio.open(segmented / "out_probs.tif") as ds:
        raw = ds.read()
        assert ds.nodata == NODATA_PROB and ds.scales[0] == 1 / PROB_SCALE
    assert (raw[:, invalid] == NODATA_PROB).all() and (raw[:, ~invalid] <= PROB_MAX).all()
    total = raw[:, ~invalid].astype(float).sum(0) / PROB_SCALE  # softmax: the classes sum to 1
    assert np.abs(total - 1).max() <= raw.shape[0] / PROB_SCALE / 2


def test_zarr_probabilities_decode_to_floats_with_nan_where_invalid(segmented):
    xr = pytest.importorskip("xarray")
    ds = xr.open_zarr(segmented / "out.zarr")
    probs = ds.probs.values  # decoded: stored / 255, NaN for 255
    invalid = np.isnan(ds.labels.values)  # labels' fill value (255) decodes to NaN too
    assert invalid[:40, :60].all() and not invalid[40:].any()
    assert np.isnan(probs[:, invalid]).all() and not np.isnan(probs[:, ~invalid]).any()
    assert np.abs(probs[:, ~invalid].sum(0) - 1).max() <= probs.shape[0] / PROB_SCALE / 2
    with rasterio.open(segmented / "out_probs.tif") as tif:  # the same numbers in both formats
        np.testing.assert_allclose(probs[:, ~invalid], tif.read()[:, ~invalid] / PROB_SCALE)
