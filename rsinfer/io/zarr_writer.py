"""The zarr label map: a group with ``labels`` (y, x), optional ``probs`` (class, y, x), CF/GDAL georeferencing.

Zarr format 2 with zlib-compressed chunks: the format and codec that GDAL's Zarr driver
(3.4 and later, as bundled with rasterio: ``ZARR:"out.zarr":/labels``), xarray/rioxarray
and every other zarr reader open. GDAL 3.10 cannot read zarr v3's ``bytes`` codec. The
group carries what both conventions need:

- each array's dimension names (``_ARRAY_DIMENSIONS``, xarray's and GDAL's v2 convention);
- ``x``/``y`` pixel-centre coordinate arrays (north-up grids): GDAL derives the geotransform
  from them, xarray indexes by them;
- a ``spatial_ref`` variable with CF ``grid_mapping_name``, ``crs_wkt`` and GDAL's
  ``GeoTransform`` (what rioxarray reads), named by each array's ``grid_mapping``; and
  GDAL's ``_CRS`` attribute (``{"wkt": ...}``) on each array;
- ``probs``: uint8 with ``scale_factor`` 1/255 and ``add_offset`` 0 (xarray decodes to
  floats), fill value 255 = nodata, and a ``class`` coordinate of class names, so
  ``ds.probs.sel({"class": "building"})`` works.

It is also the chunk store every job writes into (:mod:`rsinfer.partial`): zarr v2 writes
each chunk as one file, atomically, and the group's ``rsinfer.completed_rows`` attribute
says which rows are done.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal, cast

import numpy as np
import zarr

from ..tiling import Span
from .labelmap import NODATA_LABEL, NODATA_PROB, PROB_SCALE, FinishedRows, stored_probabilities
from .writers import LabelWriter, OutputError, merge_spans

ZARR_FORMAT: Literal[2] = 2
# zlib: in every GDAL build's Zarr driver and every zarr library; level 3 compresses label
# maps nearly as well as the default 6 in a third of the time.
COMPRESSOR: dict[str, Any] = {"id": "zlib", "level": 3}

# CF grid_mapping_name of the PROJ projections CF names (PROJ's +proj= name → CF's).
_CF_GRID_MAPPINGS = {
    "utm": "transverse_mercator",
    "tmerc": "transverse_mercator",
    "longlat": "latitude_longitude",
    "merc": "mercator",
    "lcc": "lambert_conformal_conic",
    "laea": "lambert_azimuthal_equal_area",
    "aea": "albers_conical_equal_area",
    "sterea": "oblique_stereographic",
    "sinu": "sinusoidal",
    "ortho": "orthographic",
    "geos": "geostationary",
    "cea": "lambert_cylindrical_equal_area",
    "aeqd": "azimuthal_equidistant",
}


def cf_grid_mapping_name(crs: Any) -> str | None:
    """CF's name for ``crs``'s projection (None for one CF does not name)."""
    if crs.is_geographic:
        return "latitude_longitude"
    try:
        params = crs.to_dict()
    except Exception:  # a CRS without a PROJ string
        return None
    proj = params.get("proj")
    if proj == "stere":
        return "polar_stereographic" if abs(float(params.get("lat_0", 0))) == 90 else "stereographic"
    return _CF_GRID_MAPPINGS.get(str(proj))


def _array(group: zarr.Group, name: str) -> zarr.Array:
    array = group[name]
    if not isinstance(array, zarr.Array):
        raise OutputError(f"{group.store}: `{name}` is not an array")
    return array


def _meta(group: zarr.Group) -> dict[str, Any]:
    """The group's ``rsinfer`` attribute (provenance and completion record)."""
    return dict(cast(Mapping[str, Any], group.attrs["rsinfer"]))


def record_completed(path: str, rows: Span) -> list[Span]:
    """Add ``rows`` to a store's completion record (the one writer of the record); the record after."""
    group = zarr.open_group(path, mode="r+", zarr_format=ZARR_FORMAT)
    meta = _meta(group)
    done = merge_spans([*(Span(int(a), int(b)) for a, b in meta.get("completed_rows", [])), rows])
    meta["completed_rows"] = [[r.start, r.stop] for r in done]
    group.attrs["rsinfer"] = meta
    return done


def open_store_arrays(path: str, with_probs: bool) -> tuple[zarr.Array, zarr.Array | None]:
    """The ``labels`` and (when asked) ``probs`` arrays of a finished store, for reading."""
    group = zarr.open_group(path, mode="r")
    return _array(group, "labels"), _array(group, "probs") if with_probs else None


class ZarrWriter(LabelWriter):
    """zarr v2 group: ``labels`` (y, x) uint8, optional ``probs`` (class, y, x), CF/GDAL georeferencing."""

    def _create(
        self,
        name: str,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
        dtype: Any,
        fill_value: Any,
        dims: tuple[str, ...],
    ) -> zarr.Array:
        array = self._group.create_array(
            name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill_value, compressors=COMPRESSOR
        )
        array.attrs["_ARRAY_DIMENSIONS"] = list(dims)
        return array

    def _georeferenced(self) -> dict[str, Any]:
        """Attributes of a gridded array: its grid mapping (CF) and its CRS (GDAL)."""
        attrs: dict[str, Any] = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref"}
        if self.spec.crs is not None and not self.spec.gcps:
            attrs["_CRS"] = {"wkt": self.spec.crs.to_wkt()}
        return attrs

    def _open(self) -> None:
        s = self.spec
        self._group = zarr.open_group(self.partial_paths[0], mode="w", zarr_format=ZARR_FORMAT)
        shape, chunks = (s.height, s.width), (s.chunk, s.chunk)
        self._labels = self._create("labels", shape, chunks, "uint8", NODATA_LABEL, ("y", "x"))
        self._labels.attrs.update(
            {
                **self._georeferenced(),
                "long_name": "class",
                "class_names": list(s.class_names),
                "class_colors": [list(c) for c in s.class_colors],
                "flag_values": list(range(len(s.class_names))),
                # CF: blank-separated words, so a name's own blanks become underscores
                "flag_meanings": " ".join("_".join(n.split()) for n in s.class_names),
                "nodata": NODATA_LABEL,
            }
        )
        self._probs = None
        if s.with_probs:
            k = len(s.class_names)
            self._probs = self._create("probs", (k, *shape), (k, *chunks), "uint8", NODATA_PROB, ("class", "y", "x"))
            self._probs.attrs.update(
                {
                    **self._georeferenced(),
                    "long_name": "class probability",
                    "units": "1",
                    # probability = stored value / 255; the fill value (255) is nodata
                    "scale_factor": 1 / PROB_SCALE,
                    "add_offset": 0.0,
                    "class_names": list(s.class_names),
                }
            )
            width = max(1, *(len(n) for n in s.class_names))
            names = self._create("class", (k,), (k,), f"<U{width}", None, ("class",))
            names[:] = np.array(s.class_names, dtype=f"<U{width}")
            names.attrs["long_name"] = "class name"
        self._write_georeferencing()
        self._group.attrs.update(
            {
                "rsinfer": {
                    "source": s.source,
                    "model": s.model,
                    "weights": s.weights,
                    "complete": False,
                    "chunk_rows": s.chunk,
                    "completed_rows": [],
                }
            }
        )

    def _open_existing(self) -> None:
        self._group = zarr.open_group(self.partial_paths[0], mode="r+", zarr_format=ZARR_FORMAT)
        self._labels = _array(self._group, "labels")
        self._probs = _array(self._group, "probs") if self.spec.with_probs else None
        done = _meta(self._group).get("completed_rows", [])
        self.completed_rows = merge_spans([Span(int(a), int(b)) for a, b in done])

    def _write_georeferencing(self) -> None:
        s, t = self.spec, self.spec.transform
        ref = self._create("spatial_ref", (), (), "int32", None, ())
        attrs: dict[str, Any] = {"GeoTransform": " ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))}
        if s.crs is not None:
            name = cf_grid_mapping_name(s.crs)
            attrs.update({"crs_wkt": s.crs.to_wkt(), "spatial_ref": s.crs.to_wkt()})
            if name is not None:
                attrs["grid_mapping_name"] = name
        if s.gcps:  # georeferenced by GCPs alone: (row, col, x, y, z) each, in gcp_crs_wkt
            attrs["gcps"] = [[g.row, g.col, g.x, g.y, g.z or 0.0] for g in s.gcps]
            if s.gcp_crs is not None:
                attrs["gcp_crs_wkt"] = s.gcp_crs.to_wkt()
        ref.attrs.update(attrs)
        if t.b == 0 and t.d == 0:  # north-up: 1-D pixel-centre coordinates describe the grid
            geographic = s.crs is not None and s.crs.is_geographic
            for dim, size, start, step, axis in (("x", s.width, t.c, t.a, "X"), ("y", s.height, t.f, t.e, "Y")):
                coord = self._create(dim, (size,), (min(size, 65536),), "float64", None, (dim,))
                coord[:] = start + step * (np.arange(size) + 0.5)
                if geographic:
                    standard, units = ("longitude", "degrees_east") if dim == "x" else ("latitude", "degrees_north")
                else:
                    standard, units = f"projection_{dim}_coordinate", "m"
                coord.attrs.update({"standard_name": standard, "axis": axis})
                if s.crs is not None and (geographic or s.crs.linear_units in ("metre", "meter")):
                    coord.attrs["units"] = units

    def _write_block(self, block: FinishedRows) -> None:
        r = slice(block.rows.start, block.rows.stop)
        self._labels[r, :] = block.labels
        if self._probs is not None:
            assert block.scores is not None
            self._probs[:, r, :] = stored_probabilities(block.labels, block.scores)

    def _verify(self, path: str) -> None:
        group = zarr.open_group(path, mode="r")
        for name in ("labels", "probs") if self.spec.with_probs else ("labels",):
            array = _array(group, name)
            if array.shape[-2:] != (self.spec.height, self.spec.width):
                raise OutputError(f"{path}: the written {name} array is not the size asked for")
            array[..., -1:, -1:]  # the last chunk reads back

    def _record_progress(self) -> None:
        meta = _meta(self._group)
        meta["completed_rows"] = [[r.start, r.stop] for r in self.completed_rows]
        self._group.attrs["rsinfer"] = meta

    def _finish(self) -> None:
        meta = _meta(self._group)
        meta["complete"] = True
        self._group.attrs["rsinfer"] = meta
        with warnings.catch_warnings():
            # zarr notes that consolidated metadata is an extension of v3; xarray reads it.
            warnings.simplefilter("ignore", UserWarning)
            zarr.consolidate_metadata(self.partial_paths[0], zarr_format=ZARR_FORMAT)
