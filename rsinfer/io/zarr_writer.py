"""The zarr label map: a v3 group with ``labels`` (y, x), optional ``probs`` (class, y, x), CF/GDAL georeferencing.

It is also the chunk store every job writes into (:mod:`rsinfer.partial`): chunks are
written atomically, and the group's ``rsinfer.completed_rows`` attribute says which rows
are done.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import zarr

from ..tiling import Span
from .labelmap import NODATA_LABEL, FinishedRows
from .writers import LabelWriter, OutputError, merge_spans


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
    group = zarr.open_group(path, mode="r+", zarr_format=3)
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
    """zarr v3 group: ``labels`` (y, x) uint8, optional ``probs`` (class, y, x), CF/GDAL georeferencing."""

    def _open(self) -> None:
        s = self.spec
        self._group = zarr.open_group(self.partial_paths[0], mode="w", zarr_format=3)
        self._labels = self._group.create_array(
            "labels",
            shape=(s.height, s.width),
            chunks=(s.chunk, s.chunk),
            dtype="uint8",
            fill_value=NODATA_LABEL,
            dimension_names=("y", "x"),
        )
        self._labels.attrs.update(
            {
                "grid_mapping": "spatial_ref",
                "coordinates": "spatial_ref",
                "long_name": "class",
                "class_names": list(s.class_names),
                "class_colors": [list(c) for c in s.class_colors],
                "flag_values": list(range(len(s.class_names))),
                "flag_meanings": " ".join(s.class_names),
                "nodata": NODATA_LABEL,
            }
        )
        self._probs = None
        if s.with_probs:
            self._probs = self._group.create_array(
                "probs",
                shape=(len(s.class_names), s.height, s.width),
                chunks=(len(s.class_names), s.chunk, s.chunk),
                dtype="uint8",
                fill_value=0,
                dimension_names=("class", "y", "x"),
            )
            self._probs.attrs.update(
                {
                    "grid_mapping": "spatial_ref",
                    "coordinates": "spatial_ref",
                    "scale_note": "probability x 255",
                    "class_names": list(s.class_names),
                }
            )
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
        self._group = zarr.open_group(self.partial_paths[0], mode="r+", zarr_format=3)
        self._labels = _array(self._group, "labels")
        self._probs = _array(self._group, "probs") if self.spec.with_probs else None
        done = _meta(self._group).get("completed_rows", [])
        self.completed_rows = merge_spans([Span(int(a), int(b)) for a, b in done])

    def _write_georeferencing(self) -> None:
        s, g, t = self.spec, self._group, self.spec.transform
        ref = g.create_array("spatial_ref", shape=(), dtype="int32", fill_value=0)
        attrs: dict[str, Any] = {"GeoTransform": " ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))}
        if s.crs is not None:
            attrs.update({"crs_wkt": s.crs.to_wkt(), "spatial_ref": s.crs.to_wkt()})
        if s.gcps:  # georeferenced by GCPs alone: (row, col, x, y, z) each, in gcp_crs_wkt
            attrs["gcps"] = [[g.row, g.col, g.x, g.y, g.z or 0.0] for g in s.gcps]
            if s.gcp_crs is not None:
                attrs["gcp_crs_wkt"] = s.gcp_crs.to_wkt()
        ref.attrs.update(attrs)
        if t.b == 0 and t.d == 0:  # north-up: 1-D pixel-centre coordinates describe the grid
            x = g.create_array(
                "x", shape=(s.width,), chunks=(min(s.width, 65536),), dtype="float64", dimension_names=("x",)
            )
            y = g.create_array(
                "y", shape=(s.height,), chunks=(min(s.height, 65536),), dtype="float64", dimension_names=("y",)
            )
            x[:] = t.c + t.a * (np.arange(s.width) + 0.5)
            y[:] = t.f + t.e * (np.arange(s.height) + 0.5)
            x.attrs.update({"standard_name": "projection_x_coordinate", "axis": "X"})
            y.attrs.update({"standard_name": "projection_y_coordinate", "axis": "Y"})

    def _write_block(self, block: FinishedRows) -> None:
        r = slice(block.rows.start, block.rows.stop)
        self._labels[r, :] = block.labels
        if self._probs is not None:
            assert block.scores is not None
            self._probs[:, r, :] = block.scores

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
            zarr.consolidate_metadata(self.partial_paths[0])
