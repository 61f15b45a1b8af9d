"""An area of interest: only the tiles that touch it are read and predicted, pixels outside are nodata.

The area comes from a vector file (any format GDAL reads through pyogrio, any CRS) or a
bounding box, and is reprojected to the raster's CRS. It is kept as one geometry in the
raster's coordinates; each tile asks whether it touches the area (a box test on the
prepared geometry) and rasterizes the area over its own window only, so memory follows
the tile, never the raster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from rasterio.features import geometry_mask
from rasterio.warp import transform_geom
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from .errors import InputError, RsinferError

INSTALL_HINT = "reading an area of interest from a file needs pyogrio: pip install 'rsinfer[vector]'"


@dataclass(frozen=True)
class AreaOfInterest:
    """``geometry`` in the raster's CRS, over a raster with ``transform``."""

    geometry: Any  # shapely geometry
    transform: Any  # affine.Affine of the raster

    def __post_init__(self) -> None:
        shapely.prepare(self.geometry)

    def touches(self, window: Window) -> bool:
        """Whether the window's footprint meets the area (a cheap test before reading it)."""
        t = window_transform(window, self.transform)
        corners = [t @ (0, 0), t @ (window.width, 0), t @ (window.width, window.height), t @ (0, window.height)]
        return bool(self.geometry.intersects(shapely.Polygon(corners)))

    def mask(self, window: Window) -> np.ndarray:
        """(h, w) bool: the pixels of ``window`` whose centre lies in the area."""
        shape = (int(window.height), int(window.width))
        return geometry_mask(
            [self.geometry], out_shape=shape, transform=window_transform(window, self.transform), invert=True
        )


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        minx, miny, maxx, maxy = (float(v) for v in text.split(","))
    except ValueError:
        raise RsinferError(f"--bbox {text}: give minx,miny,maxx,maxy") from None
    if not (minx < maxx and miny < maxy):
        raise RsinferError(f"--bbox {text}: minx must be below maxx and miny below maxy")
    return minx, miny, maxx, maxy


def bbox_area(bbox: tuple[float, float, float, float], bbox_crs: Any, raster_crs: Any) -> Any:
    """The box as a polygon in the raster's CRS (edges densified, so a reprojected box stays true)."""
    minx, miny, maxx, maxy = bbox
    box = shapely.segmentize(shapely.box(minx, miny, maxx, maxy), max(maxx - minx, maxy - miny) / 64)
    return _to_raster_crs(box, bbox_crs or raster_crs, raster_crs, "--bbox")


def read_area(path: str, raster_crs: Any) -> Any:
    """Every geometry of the vector file at ``path``, unioned, in the raster's CRS."""
    try:
        from pyogrio.raw import read
    except ImportError:
        raise RsinferError(INSTALL_HINT) from None
    try:
        meta, _, wkb, _ = read(path, read_geometry=True, columns=[])
    except Exception as err:  # pyogrio's DataSourceError and friends: one line naming the file
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: cannot read the area of interest ({text})") from None
    geometries = [g for g in shapely.from_wkb(wkb) if g is not None and not g.is_empty]
    if not geometries:
        raise InputError(f"{path}: the area of interest has no geometry")
    if not all(g.geom_type in ("Polygon", "MultiPolygon") for g in geometries):
        raise InputError(f"{path}: the area of interest must be polygons")
    area = shapely.union_all(shapely.make_valid(np.asarray(geometries)))
    if meta.get("crs") is None and raster_crs is not None:
        raise InputError(f"{path}: the area of interest has no CRS")
    return _to_raster_crs(area, meta.get("crs"), raster_crs, path)


def _to_raster_crs(geometry: Any, crs: Any, raster_crs: Any, name: str) -> Any:
    if crs is None or raster_crs is None or _same_crs(crs, raster_crs):
        return geometry
    from rasterio.crs import CRS

    try:
        moved = transform_geom(CRS.from_user_input(crs), raster_crs, shapely.geometry.mapping(geometry))
    except Exception as err:
        raise RsinferError(f"{name}: cannot reproject the area to the raster's CRS ({err})") from None
    return shapely.make_valid(shapely.geometry.shape(moved))


def _same_crs(a: Any, b: Any) -> bool:
    from rasterio.crs import CRS

    return CRS.from_user_input(a) == CRS.from_user_input(b)


def make_area(
    info: Any, aoi: str | None, bbox: tuple[float, float, float, float] | None, bbox_crs: str | None
) -> AreaOfInterest | None:
    """The area for a raster (``RasterInfo``) from ``--aoi`` or ``--bbox``; None for neither.

    Refused with one line: a raster without a transform (georeferenced by GCPs, or not at
    all), and an area that misses the raster."""
    if aoi is None and bbox is None:
        return None
    if aoi is not None and bbox is not None:
        raise RsinferError("give --aoi or --bbox, not both")
    if info.gcps or (info.transform.is_identity and info.crs is None):
        raise InputError(f"{info.path}: has no geotransform, so an area of interest cannot be placed on it")
    if info.crs is None and (aoi is not None or bbox_crs is not None):
        raise InputError(f"{info.path}: has no CRS, so an area in another CRS cannot be placed on it")
    if aoi is not None:
        geometry = read_area(aoi, info.crs)
    else:
        assert bbox is not None
        geometry = bbox_area(bbox, bbox_crs, info.crs)
    t = info.transform
    raster = shapely.Polygon([t @ (0, 0), t @ (info.width, 0), t @ (info.width, info.height), t @ (0, info.height)])
    if geometry.intersection(raster).area <= 0:  # touching an edge is not overlapping
        raise InputError(f"{aoi or '--bbox'}: the area of interest does not overlap {info.path}")
    return AreaOfInterest(geometry, info.transform)


def area_view(path: str, area: AreaOfInterest, info: Any) -> str:
    """A GDAL ``vrt://`` view of the raster's window that holds ``area``: whole pixels, clipped to the raster."""
    a, b, c, d, e, f = (~area.transform)[:6]  # map → pixel (col, row)
    corners = shapely.transform(
        area.geometry, lambda xy: np.column_stack((a * xy[:, 0] + b * xy[:, 1] + c, d * xy[:, 0] + e * xy[:, 1] + f))
    )
    minx, miny, maxx, maxy = corners.bounds
    col0, row0 = max(0, int(np.floor(minx))), max(0, int(np.floor(miny)))
    col1, row1 = min(info.width, int(np.ceil(maxx))), min(info.height, int(np.ceil(maxy)))
    if "?" in path:  # GDAL's vrt:// syntax takes what follows a "?" as its options
        raise InputError(f"{path}: --crop-to-aoi cannot read a path with '?' in it; rename or link the file")
    return f"vrt://{os.path.abspath(path)}?srcwin={col0},{row0},{col1 - col0},{row1 - row0}"
