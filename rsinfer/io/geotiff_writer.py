"""The GeoTIFF label map: tiled, compressed uint8 with colour table, class names and mode overviews."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .labelmap import NODATA_LABEL, FinishedRows, class_name_tags, colour_table
from .writers import LabelWriter, OutputError, probs_path


def overview_factors(width: int, height: int, smallest: int = 256) -> list[int]:
    factors, f = [], 2
    while max(width, height) / f >= smallest:
        factors.append(f)
        f *= 2
    return factors or ([2] if max(width, height) > 2 else [])


class GeoTiffWriter(LabelWriter):
    """Tiled, compressed uint8 GeoTIFF with colour table, class names and mode overviews."""

    BLOCK = 512

    def _final_paths(self) -> list[str]:
        return [self.spec.path] + ([probs_path(self.spec.path)] if self.spec.with_probs else [])

    @property
    def chunk_rows(self) -> int:
        return self.BLOCK

    def _profile(self, count: int) -> dict:
        s = self.spec
        # A GCP-georeferenced output has GCPs and no transform (GDAL would warn of an identity one).
        georef = dict(gcps=list(s.gcps), crs=s.gcp_crs) if s.gcps else dict(crs=s.crs, transform=s.transform)
        return dict(
            driver="GTiff",
            width=s.width,
            height=s.height,
            count=count,
            dtype="uint8",
            **georef,
            tiled=True,
            blockxsize=self.BLOCK,
            blockysize=self.BLOCK,
            compress="deflate",
            predictor=1,
            BIGTIFF="IF_SAFER",
            num_threads=2,
        )

    def _open(self) -> None:
        import rasterio

        s = self.spec
        self._labels = rasterio.open(self.partial_paths[0], "w", nodata=NODATA_LABEL, **self._profile(1))
        self._probs = None
        if s.with_probs:
            self._probs = rasterio.open(self.partial_paths[1], "w", **self._profile(len(s.class_names)))

    def _open_existing(self) -> None:
        import rasterio

        self._labels = rasterio.open(self.partial_paths[0], "r+")
        self._probs = rasterio.open(self.partial_paths[1], "r+") if self.spec.with_probs else None

    def _write_block(self, block: FinishedRows) -> None:
        from rasterio.windows import Window

        window = Window(0, block.rows.start, self.spec.width, block.rows.size)
        self._labels.write(block.labels, 1, window=window)
        if self._probs is not None:
            self._probs.write(block.scores, window=window)

    def _finish(self) -> None:
        from rasterio.enums import ColorInterp, Resampling

        s = self.spec
        dst = self._labels
        dst.write_colormap(1, colour_table(s.class_colors))
        dst.set_band_description(1, "class")
        dst.update_tags(1, **class_name_tags(s.class_names))
        dst.update_tags(SOURCE=s.source, MODEL=s.model, WEIGHTS=s.weights, SOFTWARE="rsinfer")
        factors = overview_factors(s.width, s.height)
        if factors:
            _check_room_for_overviews(self.partial_paths)
            dst.build_overviews(factors, Resampling.mode)
            dst.update_tags(ns="rio_overview", resampling="mode")
        if self._probs is not None:
            p = self._probs
            for i, n in enumerate(s.class_names):
                p.set_band_description(i + 1, f"p({n}) x 255")
            p.colorinterp = [ColorInterp.gray] * len(s.class_names)
            if factors:
                p.build_overviews(factors, Resampling.average)
        self._close()

    def _close(self) -> None:
        for name in ("_labels", "_probs"):
            ds = getattr(self, name, None)
            if ds is not None and not ds.closed:
                ds.close()

    def _verify(self, path: str) -> None:
        import rasterio
        from rasterio.windows import Window

        s = self.spec
        factors = overview_factors(s.width, s.height)
        with rasterio.open(path) as ds:
            if (ds.width, ds.height) != (s.width, s.height) or ds.overviews(1) != factors:
                raise OutputError(f"{path}: the written file is not the one asked for (size or overviews)")
            levels = len(factors)
        # The last block of each level was written last: a truncated file fails to read it.
        for level in [None, *range(levels)]:
            with rasterio.open(path, overview_level=level) as ds:
                bh, bw = ds.block_shapes[0]
                y, x = (ds.height - 1) // bh * bh, (ds.width - 1) // bw * bw
                ds.read(window=Window(x, y, ds.width - x, ds.height - y))


def _check_room_for_overviews(paths: list[str]) -> None:
    """Refuse to build overviews on a disk that cannot hold them: GDAL can crash, not fail,
    when the disk fills while it builds them. They take about a third of the file."""
    need = sum(os.path.getsize(p) for p in paths if os.path.exists(p)) // 3 + 2**20
    free = shutil.disk_usage(Path(paths[0]).parent).free
    if free < need:
        raise OSError(
            28, f"No space left on device for overviews ({free / 2**20:.0f} MiB free, need {need / 2**20:.0f})"
        )
