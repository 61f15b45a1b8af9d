"""Polygon layers written with pyogrio, batch by batch, so a layer never sits in memory whole."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import RsinferError

EXTRA_HINT = "pip install 'rsinfer[vector]'"

# Output suffix -> OGR driver.
DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".parquet": "Parquet", ".geoparquet": "Parquet"}

FIELDS = ["class_id", "class_name", "area"]

# Finished features buffered before an append to the file.
FLUSH_FEATURES = 20_000


def require_pyogrio() -> ModuleType:
    """pyogrio, or a one-line error naming the extra that installs it."""
    try:
        import pyogrio
    except ImportError:
        raise RsinferError(f"vectorize needs pyogrio: {EXTRA_HINT}") from None
    return pyogrio


def driver_for(path: str | os.PathLike[str]) -> str:
    """The OGR driver for an output name, checked against the GDAL that pyogrio carries."""
    pyogrio = require_pyogrio()
    suffix = Path(path).suffix.lower()
    driver = DRIVERS.get(suffix)
    if driver is None:
        raise RsinferError(f"{path}: unknown output format {suffix or '(no suffix)'}; use .gpkg, .geojson or .parquet")
    if "w" not in (pyogrio.list_drivers().get(driver) or ""):
        raise RsinferError(
            f"{path}: the GDAL {pyogrio.__gdal_version_string__} inside pyogrio cannot write {driver}; "
            "use .gpkg or .geojson"
        )
    return driver


class PolygonSink:
    """One polygon layer with ``class_id``, ``class_name``, ``area``, appended to in batches.

    :meth:`write` buffers features and appends them to the file once ``flush_features`` are
    waiting (each append reopens the file, which costs tens of milliseconds for a GeoPackage),
    so memory holds at most that many finished features beside one strip's.
    The file is created by the first non-empty append (GeoJSON keeps no fields for an empty
    layer, so an empty first write could not be appended to), or by :meth:`close`.
    """

    def __init__(self, path: str, driver: str, layer: str, crs: str | None, flush_features: int | None = None):
        self.path, self.driver, self.layer, self.crs = path, driver, layer, crs
        self.flush_features = flush_features or FLUSH_FEATURES
        self.features = 0  # appended to the file
        self.appends = 0
        self._buffer: list[tuple[np.ndarray, ...]] = []
        self._buffered = 0
        self._pyogrio = require_pyogrio()

    def write(self, wkb: np.ndarray, class_id: np.ndarray, class_name: np.ndarray, area: np.ndarray) -> None:
        if len(wkb):
            self._buffer.append((wkb, class_id, class_name, area))
            self._buffered += len(wkb)
        if self._buffered >= self.flush_features:
            self.flush()

    def flush(self) -> None:
        if not self._buffer and self.appends:
            return
        columns = [np.concatenate(c) if self._buffer else np.empty(0) for c in zip(*self._buffer)] or [np.empty(0)] * 4
        wkb, class_id, class_name, area = columns
        with warnings.catch_warnings():
            # GPKG wants its suffix; the partial name (<final>.partial-<pid>) has another until the commit.
            warnings.filterwarnings("ignore", message=".*(extension|non conformant file)", category=RuntimeWarning)
            warnings.filterwarnings("ignore", message="'crs' was not provided", category=UserWarning)
            self._pyogrio.raw.write(
                self.path,
                np.asarray(wkb, dtype=object),
                [np.asarray(class_id, dtype=np.int32), np.asarray(class_name, dtype=object), np.asarray(area, float)],
                FIELDS,
                layer=self.layer,
                driver=self.driver,
                geometry_type="Polygon",
                crs=self.crs,
                append=self.appends > 0,
            )
        self.appends += 1
        self.features += len(wkb)
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        """Append what is buffered; create the (empty) layer if nothing was ever written."""
        if self._buffer or not self.appends:
            self.flush()
