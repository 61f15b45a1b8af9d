"""``vectorize_labels``: a label map (GeoTIFF or zarr) to polygons, streamed by strips of rows."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, RsinferError
from ..io.labelmap import LabelRaster, open_labels
from ..io.outputs import atomic_outputs, check_outputs, refuse_inputs_as_outputs
from .sink import PolygonSink, driver_for, require_pyogrio
from .strips import SHAPES_DTYPES, StripMerger

PathLike = str | os.PathLike[str]

# A strip is this many rows, fewer when the raster is so wide that a strip would pass STRIP_PIXELS.
BLOCK_ROWS = 1024
STRIP_PIXELS = 1 << 24


@dataclass
class VectorizeReport:
    labels: str
    output: str
    driver: str
    crs: str | None  # the output's CRS
    features: int = 0
    per_class: dict[int, tuple[int, float]] = field(default_factory=dict)  # class id -> (features, area)
    blocks: int = 0
    block_rows: int = 0
    largest_read: tuple[int, int] = (0, 0)  # (rows, cols) of the largest window read
    max_pending: int = 0  # most polygons waiting at a strip border at once
    seconds: float = 0.0


def default_block_rows(width: int) -> int:
    return max(64, min(BLOCK_ROWS, STRIP_PIXELS // max(width, 1)))


def vectorize_labels(
    labels_path: PathLike,
    out_path: PathLike,
    *,
    min_area: float = 0.0,
    simplify: float | None = None,
    classes: Sequence[str | int] | None = None,
    dst_crs: str | None = None,
    overwrite: bool = False,
    block_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VectorizeReport:
    """Write one polygon per 4-connected region of each class of ``labels_path`` to ``out_path``.

    Attributes: ``class_id``, ``class_name`` (from the raster's class names; null where it
    has none) and ``area``: the region's area in the raster's CRS units² (pixel count ×
    pixel area, before ``simplify`` and ``dst_crs``; pixels² without georeferencing).
    ``min_area`` drops smaller regions; ``simplify`` is a tolerance in the raster's CRS units
    (each polygon stays valid; borders shared with neighbours are simplified separately);
    ``classes`` keeps those classes (names or ids); ``dst_crs`` reprojects the vertices.
    Nodata pixels are never polygons. The output appears under its name only when complete.
    ``progress(rows_done, rows_total)`` is called after each strip.
    """
    require_pyogrio()  # before any work
    labels_path, out_path = os.fspath(labels_path), os.fspath(out_path)
    driver = driver_for(out_path)
    refuse_inputs_as_outputs([labels_path], [out_path])
    check_outputs([out_path], overwrite)
    start = time.perf_counter()
    with open_labels(labels_path) as raster:
        selected = _class_ids(raster, classes)
        to_map = _pixel_to_map(raster)
        reproject, out_crs = _reprojection(raster, dst_crs)
        rows = block_rows or default_block_rows(raster.width)
        report = VectorizeReport(labels_path, out_path, driver, out_crs, block_rows=rows)
        with atomic_outputs([out_path], overwrite, check=False) as (partial,):
            sink = PolygonSink(partial, driver, Path(out_path).stem, out_crs)
            merger = StripMerger(raster.width)
            for row0 in range(0, raster.height, rows):
                row1 = min(row0 + rows, raster.height)
                labels = raster.read(slice(row0, row1), slice(0, raster.width))
                report.largest_read = tuple(map(max, report.largest_read, labels.shape))
                mask = _valid(labels, raster, selected)
                geoms, ids = merger.add(_shapes_dtype(labels, raster), mask, row0, last=row1 == raster.height)
                _emit(sink, report, geoms, ids, raster, to_map, reproject, min_area, simplify)
                report.blocks += 1
                if progress is not None:
                    progress(row1, raster.height)
            sink.close()
        report.max_pending = merger.max_pending
    report.features = sink.features
    report.seconds = time.perf_counter() - start
    return report


def _emit(sink, report, geoms, ids, raster, to_map, reproject, min_area, simplify) -> None:
    """Map finished polygons to the output's CRS, filter them and append them to the layer."""
    import shapely

    if (shapely.get_type_id(geoms) != shapely.GeometryType.POLYGON).any():  # not expected: never write a multi
        geoms, index = shapely.get_parts(geoms, return_index=True)
        ids = ids[index]
    area = shapely.area(geoms) * to_map.pixel_area
    keep = area >= min_area if min_area > 0 else np.ones(len(geoms), dtype=bool)
    geoms, ids, area = geoms[keep], ids[keep], area[keep]
    if len(geoms) == 0:
        return
    geoms = shapely.transform(geoms, to_map)
    if simplify:
        geoms = shapely.simplify(geoms, simplify, preserve_topology=True)
    if reproject is not None:
        geoms = shapely.transform(geoms, reproject)
    geoms = shapely.orient_polygons(geoms)  # exteriors counter-clockwise, as GeoJSON wants
    names = raster.class_names or ()
    class_name = np.array([names[i] if 0 <= i < len(names) else None for i in ids.tolist()], dtype=object)
    sink.write(shapely.to_wkb(geoms), ids, class_name, area)
    for i in np.unique(ids).tolist():
        count, total = report.per_class.get(i, (0, 0.0))
        report.per_class[i] = (count + int((ids == i).sum()), total + float(area[ids == i].sum()))


class _PixelToMap:
    """Pixel (column, row) coordinates to the raster's CRS, as a ``shapely.transform`` function."""

    def __init__(self, transform):
        self.a, self.b, self.c, self.d, self.e, self.f = transform[:6]
        self.pixel_area = abs(self.a * self.e - self.b * self.d)

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([self.a * x + self.b * y + self.c, self.d * x + self.e * y + self.f])


def _pixel_to_map(raster: LabelRaster) -> _PixelToMap:
    from affine import Affine

    return _PixelToMap(raster.transform if raster.transform is not None else Affine.identity())


def _reprojection(raster: LabelRaster, dst_crs: str | None):
    """(vertex function or None, output CRS as WKT or None)."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    src: Any = raster.crs  # a rasterio CRS (untyped) or None
    if not dst_crs:
        return None, (src.to_wkt() if src else None)
    try:
        dst = CRS.from_user_input(dst_crs)
    except CRSError:
        raise RsinferError(f"--dst-crs {dst_crs}: not a coordinate reference system (e.g. EPSG:4326)") from None
    if src is None:
        raise InputError(f"{raster.path}: the label map has no CRS, so its polygons cannot be reprojected to {dst_crs}")
    if dst == src:
        return None, src.to_wkt()

    def reproject(xy: np.ndarray) -> np.ndarray:
        from rasterio.warp import transform

        xs, ys = transform(src, dst, xy[:, 0], xy[:, 1])
        return np.column_stack([xs, ys])

    return reproject, dst.to_wkt()


def _class_ids(raster: LabelRaster, classes: Sequence[str | int] | None) -> np.ndarray | None:
    """The class ids ``classes`` names (names or ids), or None for every class."""
    if not classes:
        return None
    names = list(raster.class_names or ())
    ids = []
    for c in classes:
        text = str(c).strip()
        if text.isdigit():
            ids.append(int(text))
        elif text in names:
            ids.append(names.index(text))
        else:
            known = ", ".join(names) if names else "none: select classes by id"
            raise InputError(f"{raster.path}: no class named {text!r} (class names: {known})")
    return np.array(sorted(set(ids)), dtype=np.int64)


def _valid(labels: np.ndarray, raster: LabelRaster, selected: np.ndarray | None) -> np.ndarray:
    mask = labels != raster.nodata
    if selected is not None:
        mask &= np.isin(labels, selected)
    return mask


def _shapes_dtype(labels: np.ndarray, raster: LabelRaster) -> np.ndarray:
    """Labels in a type ``rasterio.features.shapes`` takes (it reads uint8..int32)."""
    if labels.dtype.name in SHAPES_DTYPES:
        return labels
    if labels.dtype.itemsize <= 2:
        return labels.astype(np.int32 if labels.dtype.kind == "u" else np.int16)
    if labels.size and (labels.min() < np.iinfo(np.int32).min or labels.max() > np.iinfo(np.int32).max):
        raise InputError(f"{raster.path}: class ids beyond the 32-bit range cannot be polygonized")
    return labels.astype(np.int32)
