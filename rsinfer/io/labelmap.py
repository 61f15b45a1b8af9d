"""The label map as rsinfer writes and reads it: nodata, finished rows, tags, colour table, readers.

Everything that writes a label map (``segment``'s writers, ``synth``'s reference labels)
and everything that reads one (``eval``) takes these definitions from here. Nothing in
this module imports torch, so ``eval`` stays light.

A label map is read with :func:`open_labels`: a single-band integer GeoTIFF, or a zarr
group holding a ``labels`` (y, x) array, as ``rsinfer segment`` writes them. Its nodata is
the file's nodata value (NODATA_LABEL when it declares none); for zarr the ``nodata``
attribute of ``labels``, else NODATA_LABEL. zarr's own fill value is not taken as nodata,
since zarr defaults it to 0, a real class.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..tiling import Span
from .source import InputWarning, first_line, open_raster

if TYPE_CHECKING:
    from affine import Affine

# Label of pixels with no valid input (and the label map's nodata value).
NODATA_LABEL = 255

# Probabilities are stored as uint8 q = min(round(p * 255), PROB_MAX) and read back as
# q / PROB_SCALE (scale 1/255, offset 0 in the files); NODATA_PROB marks pixels with no valid
# input (not p = 0). Only the top step (p >= 254.5/255, about 0.998) moves, to 254 (0.996), to
# free 255 for nodata: every other value is the x255 rounding the stitcher makes, so readers
# dividing by 255 read what they did, and the bytes of distributed and single-process runs
# compare as before (a scale of 1/254 would move every rounding boundary).
PROB_SCALE = 255
PROB_MAX = 254
NODATA_PROB = 255

# GeoTIFF tags: band 1 carries the class names, the dataset carries provenance.
TAG_CLASS_NAMES = "CLASS_NAMES"  # JSON list, in class order
TAG_SOFTWARE = "rsinfer"


@dataclass
class FinishedRows:
    """Rows ``rows`` of the output, ready to write."""

    rows: Span
    labels: np.ndarray  # (h, W) uint8, NODATA_LABEL where invalid
    scores: np.ndarray | None = (
        None  # (K, h, W): uint8 probabilities (see PROB_SCALE; NODATA_PROB where invalid) or float32 raw scores
    )


def stored_probabilities(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Probabilities (K, h, w) as the outputs store them: the stitcher's uint8 (p × 255) capped
    at PROB_MAX, and NODATA_PROB where the label is NODATA_LABEL (no valid input). Idempotent."""
    stored = np.minimum(scores, PROB_MAX)
    stored[:, labels == NODATA_LABEL] = NODATA_PROB
    return stored


def colour_table(class_colors: Sequence[Sequence[int]]) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table of a label map: one opaque colour per class, nodata transparent."""
    table = {i: (int(c[0]), int(c[1]), int(c[2]), 255) for i, c in enumerate(class_colors)}
    table[NODATA_LABEL] = (0, 0, 0, 0)
    return table


def class_name_tags(class_names: Sequence[str]) -> dict[str, str]:
    """Band tags naming the classes: a JSON list, and one ``CLASS_<i>`` tag per class."""
    return {TAG_CLASS_NAMES: json.dumps(list(class_names)), **{f"CLASS_{i}": n for i, n in enumerate(class_names)}}


# ---------------------------------------------------------------------------------------------
# readers: GeoTIFF or zarr, read by windows
# ---------------------------------------------------------------------------------------------
class LabelRaster:
    """A single-band integer label raster opened for windowed reads (safe across threads)."""

    path: str
    width: int
    height: int
    dtype: np.dtype
    nodata: float
    crs: object  # rasterio CRS or None
    transform: Affine | None
    block_shape: tuple[int, int]
    class_names: tuple[str, ...] | None

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> LabelRaster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check(self) -> None:
        if not np.issubdtype(self.dtype, np.integer):
            raise InputError(f"{self.path}: data type {self.dtype} is not a label map's (integer class ids)")


def is_zarr(path: str | os.PathLike) -> bool:
    p = str(path).rstrip("/")
    return p.lower().endswith(".zarr") or (
        os.path.isdir(p) and any(os.path.exists(os.path.join(p, m)) for m in ("zarr.json", ".zgroup"))
    )


def open_labels(path: str | os.PathLike) -> LabelRaster:
    """Open a label map (GeoTIFF or zarr group with ``labels``); problems raise a one-line InputError."""
    path = str(path)
    return _ZarrLabels(path) if is_zarr(path) else _GeoTiffLabels(path)


def _parse_class_names(value, path: str) -> tuple[str, ...] | None:
    """Class names from a tag or attribute: a JSON list of strings (or the list itself), else None."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            warnings.warn(
                f"{path}: class names {value[:40]!r} are not a JSON list; ignoring them", InputWarning, stacklevel=4
            )
            return None
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _read_error(path: str, rows: slice, cols: slice, err: BaseException) -> InputError:
    return InputError(
        f"{path}: cannot read rows {rows.start}-{rows.stop}, cols {cols.start}-{cols.stop} ({first_line(err)})"
    )


class _GeoTiffLabels(LabelRaster):
    def __init__(self, path: str):
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        self.path = path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = open_raster(path)
        # one dataset handle per reader thread: a GDAL handle is not safe to share
        self._local = threading.local()
        self._lock = threading.Lock()
        self._handles = [ds]
        self._local.ds = ds
        self._rasterio = rasterio
        if ds.count != 1:
            self.close()
            raise InputError(f"{path}: the raster has {ds.count} bands; a label map has one")
        self.width, self.height = ds.width, ds.height
        self.dtype = np.dtype(ds.dtypes[0])
        self.nodata = ds.nodata if ds.nodata is not None else NODATA_LABEL
        self.crs = ds.crs
        self.transform = None if (ds.crs is None and ds.transform.is_identity) else ds.transform
        self.block_shape = tuple(ds.block_shapes[0])
        tags = ds.tags(1)
        self.class_names = _parse_class_names(tags.get(TAG_CLASS_NAMES), path)
        if self.class_names is None and tags.get("classes"):  # `rsinfer synth` label rasters
            self.class_names = tuple(n.strip() for n in tags["classes"].split(","))
        try:
            self._check()
        except InputError:
            self.close()
            raise

    def _dataset(self):
        ds = getattr(self._local, "ds", None)
        if ds is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", self._rasterio.errors.NotGeoreferencedWarning)
                ds = self._rasterio.open(self.path)
            self._local.ds = ds
            with self._lock:
                self._handles.append(ds)
        return ds

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        try:
            return self._dataset().read(1, window=window)
        except RasterioError as err:
            raise _read_error(self.path, rows, cols, err) from None

    def close(self) -> None:
        with self._lock:
            for ds in self._handles:
                ds.close()
            self._handles.clear()
        self._local = threading.local()


class _ZarrLabels(LabelRaster):
    def __init__(self, path: str):
        import zarr

        self.path = path
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # consolidated metadata is a v3 extension
                group = zarr.open_group(path, mode="r")
        except Exception as err:  # zarr raises many kinds; all mean the same to the user
            raise InputError(f"{path}: not a zarr group zarr can read ({first_line(err)})") from None
        try:
            arr = group["labels"]
        except KeyError:
            raise InputError(f"{path}: the zarr group has no `labels` array") from None
        if not isinstance(arr, zarr.Array) or arr.ndim != 2:
            raise InputError(f"{path}: `labels` is not a 2-D (y, x) array")
        self._array = arr
        self.height, self.width = arr.shape
        self.dtype = np.dtype(arr.dtype)
        attrs = dict(arr.attrs)
        nodata = attrs.get("nodata", attrs.get("_FillValue"))
        self.nodata = nodata if isinstance(nodata, (int, float)) and not isinstance(nodata, bool) else NODATA_LABEL
        self.block_shape = (int(arr.chunks[0]), int(arr.chunks[1]))
        self.class_names = _parse_class_names(attrs.get("class_names"), path)
        self.crs, self.transform = self._georeferencing(group)
        meta = dict(group.attrs).get("rsinfer")
        if isinstance(meta, dict) and meta.get("complete") is False:
            warnings.warn(
                f"{path}: the zarr store is marked incomplete (an interrupted job); unwritten pixels read as nodata",
                InputWarning,
                stacklevel=3,
            )
        self._check()

    def _georeferencing(self, group):
        from affine import Affine
        from rasterio.crs import CRS

        try:
            attrs = dict(group["spatial_ref"].attrs)
        except KeyError:
            return None, None
        crs = transform = None
        wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
        if wkt:
            try:
                crs = CRS.from_wkt(wkt)
            except Exception:
                warnings.warn(
                    f"{self.path}: the CRS in spatial_ref cannot be parsed; ignoring it", InputWarning, stacklevel=4
                )
        gt = attrs.get("GeoTransform")
        if gt:
            try:
                c, a, b, f, d, e = (float(v) for v in str(gt).split())
                transform = Affine(a, b, c, d, e, f)
            except ValueError:
                warnings.warn(
                    f"{self.path}: GeoTransform {gt!r} cannot be parsed; ignoring it", InputWarning, stacklevel=4
                )
        return crs, transform

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        try:
            return np.asarray(self._array[rows, cols])
        except Exception as err:
            raise _read_error(self.path, rows, cols, err) from None
