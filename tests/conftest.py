"""Shared fixtures: real rasters from the shared data folder and small rasters made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("RSINFER_REAL_DATA", REPO.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session", autouse=True)
def cache_folder(tmp_path_factory) -> Path:
    """The tests' own RSINFER_CACHE (exported graphs, counted FLOPs), never the user's."""
    folder = tmp_path_factory.mktemp("rsinfer-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RSINFER_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real GeoTIFFs nobody here wrote (nodata collar, 16-bit + alpha, corrupt, ...)."""
    if not (REAL_DATA / "RGB.byte.tif").exists():
        pytest.fail(f"real test rasters not found in {REAL_DATA} (set RSINFER_REAL_DATA)")
    return REAL_DATA


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def make_raster(tmp_path):
    """Write a small tiled GeoTIFF: ``make_raster(data, name=..., nodata=..., **profile)``."""

    def make(
        data: np.ndarray,
        name: str = "in.tif",
        nodata=None,
        crs="EPSG:32632",
        transform=None,
        tiled=True,
        block=256,
        colorinterp=None,
        **profile,
    ) -> Path:
        if data.ndim == 2:
            data = data[None]
        path = tmp_path / name
        prof = dict(
            driver="GTiff",
            width=data.shape[2],
            height=data.shape[1],
            count=data.shape[0],
            dtype=data.dtype.name,
            crs=crs,
            nodata=nodata,
            transform=transform or from_origin(500000.0, 5400000.0, 0.2, 0.2),
        )
        if tiled:
            prof.update(tiled=True, blockxsize=block, blockysize=block)
        prof.update(profile)
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(data)
            if colorinterp:
                dst.colorinterp = colorinterp
        return path

    return make


@pytest.fixture
def random_image():
    """``random_image(height, width, bands=3, seed=0, dtype="uint8")``: uniform noise, (bands, h, w)."""

    def make(height: int, width: int, bands: int = 3, seed: int = 0, dtype="uint8") -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, size=(bands, height, width)).astype(dtype)

    return make
