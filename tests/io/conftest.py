"""A band's category names and raster attribute table as GDAL itself reads them.

rasterio has no API for either, so this calls the GDAL library rasterio is linked to (the
one already loaded in this process) through ctypes. It lives here, as a fixture, because
test modules cannot import one another under pytest's importlib import mode.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

import pytest


def _loaded_libgdal() -> str | None:
    """The path of the libgdal this process has loaded through rasterio, else the system's."""
    import rasterio._base  # noqa: F401  (loads libgdal)

    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "libgdal" in os.path.basename(path) and os.path.exists(path):
                    return path
    except OSError:
        pass
    return ctypes.util.find_library("gdal")


@dataclass
class BandInfo:
    categories: list[str]
    rat_table_type: int | None  # GRTT_THEMATIC 0, GRTT_ATHEMATIC 1
    rat_columns: list[tuple[str, int, int]]  # name, GDALRATFieldType, GDALRATFieldUsage
    rat_rows: list[list[str]]


class GdalNative:
    def __init__(self, path: str):
        lib = ctypes.CDLL(path)
        vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for name, res, args in (
            ("GDALAllRegister", None, []),
            ("GDALOpen", vp, [cp, i]),
            ("GDALClose", None, [vp]),
            ("GDALGetRasterBand", vp, [vp, i]),
            ("GDALGetMetadata", vp, [vp, cp]),
            ("GDALGetRasterCategoryNames", ctypes.POINTER(cp), [vp]),
            ("GDALGetDefaultRAT", vp, [vp]),
            ("GDALRATGetTableType", i, [vp]),
            ("GDALRATGetRowCount", i, [vp]),
            ("GDALRATGetColumnCount", i, [vp]),
            ("GDALRATGetNameOfCol", cp, [vp, i]),
            ("GDALRATGetTypeOfCol", i, [vp, i]),
            ("GDALRATGetUsageOfCol", i, [vp, i]),
            ("GDALRATGetValueAsString", cp, [vp, i, i]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        lib.GDALAllRegister()
        self.lib = lib

    def band(self, path: str, band: int = 1) -> BandInfo:
        g = self.lib
        ds = g.GDALOpen(os.fspath(path).encode(), 0)
        assert ds, f"GDAL cannot open {path}"
        try:
            # What any application reads first. GDAL's GeoTIFF driver loads the .aux.xml sidecar
            # on the first such call; GDALGetRasterCategoryNames alone (3.10) does not load it.
            g.GDALGetMetadata(ds, None)
            b = g.GDALGetRasterBand(ds, band)
            names = g.GDALGetRasterCategoryNames(b)
            categories = []
            while names and names[len(categories)] is not None:
                categories.append(names[len(categories)].decode())
            rat = g.GDALGetDefaultRAT(b)
            if not rat:
                return BandInfo(categories, None, [], [])
            ncol, nrow = g.GDALRATGetColumnCount(rat), g.GDALRATGetRowCount(rat)
            columns = [
                (g.GDALRATGetNameOfCol(rat, c).decode(), g.GDALRATGetTypeOfCol(rat, c), g.GDALRATGetUsageOfCol(rat, c))
                for c in range(ncol)
            ]
            rows = [[g.GDALRATGetValueAsString(rat, r, c).decode() for c in range(ncol)] for r in range(nrow)]
            return BandInfo(categories, g.GDALRATGetTableType(rat), columns, rows)
        finally:
            g.GDALClose(ds)


@pytest.fixture(scope="session")
def gdal_native() -> GdalNative:
    path = _loaded_libgdal()
    if path is None:
        pytest.skip("cannot find the GDAL library rasterio uses")
    return GdalNative(path)
