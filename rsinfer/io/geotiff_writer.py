"""The GeoTIFF label map: a Cloud Optimized GeoTIFF with colour table, class names and mode overviews.

Rows stream into a tiled scratch GeoTIFF beside the partial output (``<partial>.scratch.tif``,
with every piece of metadata set); :meth:`GeoTiffWriter._finish` has GDAL's COG driver copy
it onto the partial name (overviews built by GDAL: mode for labels, average for
probabilities) and removes the scratch file, then writes the sidecars that name the
classes for GIS tools (:mod:`.gis_sidecars`). Everything is committed together by
:meth:`LabelWriter.commit` once it reads back.
"""

from __future__ import annotations

import os

from .cog import (
    LABEL_OPTIONS,
    PROB_OPTIONS,
    SCRATCH_PROFILE,
    check_creation_options,
    cog_copy,
    creation_options,
    is_cog,
    scratch_path,
    temporary_files,
)
from .gis_sidecars import aux_xml_path, check_xml, pam_aux_xml, qgis_style, qml_path, write_text
from .labelmap import (
    NODATA_LABEL,
    NODATA_PROB,
    PROB_SCALE,
    FinishedRows,
    class_name_tags,
    colour_table,
    stored_probabilities,
)
from .writers import LabelWriter, OutputError, probs_path


class GeoTiffWriter(LabelWriter):
    """COG label map (and probabilities) with its sidecars.

    A COG cannot be updated in place: an output made by :func:`create_output` and filled in
    parts (``update`` mode) is a plain tiled GeoTIFF with the same metadata and sidecars, no
    overviews. ``segment`` never does that: its jobs fill a zarr chunk store, and the COG is
    made from the finished store.
    """

    BLOCK = 512

    @property
    def chunk_rows(self) -> int:
        return self.BLOCK

    def _kind_paths(self) -> dict[str, str]:
        """The partial file of each part: ``labels``, ``probs`` (with probabilities), ``aux``, ``qml``."""
        s = self.spec
        finals = {s.path: "labels", probs_path(s.path): "probs", aux_xml_path(s.path): "aux", qml_path(s.path): "qml"}
        return {finals[f]: p for f, p in zip(self.final_paths, self.partial_paths, strict=True)}

    def _scratch_paths(self) -> list[str]:
        parts = self._kind_paths()
        rasters = [parts[k] for k in ("labels", "probs") if k in parts]
        return [scratch_path(p) for p in rasters] + [t for p in rasters for t in temporary_files(p)]

    def _profile(self, count: int, nodata: int) -> dict:
        s = self.spec
        # A GCP-georeferenced output has GCPs and no transform (GDAL would warn of an identity one).
        georef = dict(gcps=list(s.gcps), crs=s.gcp_crs) if s.gcps else dict(crs=s.crs, transform=s.transform)
        return dict(
            SCRATCH_PROFILE, width=s.width, height=s.height, count=count, dtype="uint8", nodata=nodata, **georef
        )

    def _open(self) -> None:
        s, parts = self.spec, self._kind_paths()
        if s.creation_options:  # before any row is written: GDAL would only warn and ignore them
            check_creation_options(s.creation_options)
        if self.mode == "new":
            self._open_rasters(scratch_path(parts["labels"]), scratch_path(parts["probs"]) if s.with_probs else None)
        else:  # create: the output itself, filled in place by later writers (a plain tiled GeoTIFF)
            self._open_rasters(parts["labels"], parts.get("probs"))
            self._write_sidecars()

    def _open_rasters(self, labels: str, probs: str | None) -> None:
        import rasterio

        s = self.spec
        # Every piece of metadata before the first block: GDAL cannot change the TIFF's
        # photometric interpretation (a colour table makes it a palette) once blocks are written.
        self._labels = dst = rasterio.open(labels, "w", **self._profile(1, NODATA_LABEL))
        dst.write_colormap(1, colour_table(s.class_colors))
        dst.set_band_description(1, "class")
        dst.update_tags(1, **class_name_tags(s.class_names))
        dst.update_tags(**self._provenance(), OVERVIEW_RESAMPLING="mode")
        self._probs = None
        if probs is not None:
            k = len(s.class_names)
            profile = self._profile(k, NODATA_PROB) | {"photometric": "MINISBLACK"}
            self._probs = p = rasterio.open(probs, "w", **profile)
            for i, n in enumerate(s.class_names):
                p.set_band_description(i + 1, n)
            p.scales, p.offsets = [1 / PROB_SCALE] * k, [0.0] * k
            names = class_name_tags(s.class_names)["CLASS_NAMES"]
            p.update_tags(**self._provenance(), CLASS_NAMES=names, OVERVIEW_RESAMPLING="average")

    def _open_existing(self) -> None:
        import rasterio

        parts = self._kind_paths()
        self._labels = rasterio.open(parts["labels"], "r+")
        self._probs = rasterio.open(parts["probs"], "r+") if self.spec.with_probs else None

    def _write_sidecars(self) -> None:
        s, parts = self.spec, self._kind_paths()
        write_text(parts["aux"], pam_aux_xml(s.class_names, s.class_colors))
        write_text(parts["qml"], qgis_style(s.class_names, s.class_colors))

    def _write_block(self, block: FinishedRows) -> None:
        from rasterio.windows import Window

        window = Window(0, block.rows.start, self.spec.width, block.rows.size)
        self._labels.write(block.labels, 1, window=window)
        if self._probs is not None:
            assert block.scores is not None
            self._probs.write(stored_probabilities(block.labels, block.scores), window=window)

    def _provenance(self) -> dict[str, str]:
        s = self.spec
        return dict(SOURCE=s.source, MODEL=s.model, WEIGHTS=s.weights, SOFTWARE="rsinfer")

    def _finish(self) -> None:
        s, parts = self.spec, self._kind_paths()
        self._close()
        for kind, base in (("labels", LABEL_OPTIONS), ("probs", PROB_OPTIONS)):
            if kind in parts:
                scratch = scratch_path(parts[kind])
                cog_copy(scratch, parts[kind], creation_options(base, s.creation_options))
                os.remove(scratch)
        self._write_sidecars()

    def _close(self) -> None:
        for name in ("_labels", "_probs"):
            ds = getattr(self, name, None)
            if ds is not None and not ds.closed:
                ds.close()

    def _verify(self, path: str) -> None:
        kind = {p: k for k, p in self._kind_paths().items()}[path]
        if kind == "aux":
            check_xml(path, "PAMDataset")
        elif kind == "qml":
            check_xml(path, "qgis")
        else:
            self._verify_raster(path)

    def _verify_raster(self, path: str) -> None:
        import rasterio
        from rasterio.windows import Window

        s = self.spec
        with rasterio.open(path) as ds:
            if (ds.width, ds.height) != (s.width, s.height):
                raise OutputError(f"{path}: the written file is not the size asked for")
            levels = len(ds.overviews(1))
        if not is_cog(path):
            raise OutputError(f"{path}: the written file is not a Cloud Optimized GeoTIFF")
        # The last block of each level: a truncated file fails to read it.
        for level in [None, *range(levels)]:
            with rasterio.open(path, overview_level=level) as ds:
                bh, bw = ds.block_shapes[0]
                y, x = (ds.height - 1) // bh * bh, (ds.width - 1) // bw * bw
                ds.read(window=Window(x, y, ds.width - x, ds.height - y))
