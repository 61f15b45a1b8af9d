"""Writers for the label map: GeoTIFF and zarr behind one small interface.

A writer receives finished rows top to bottom, buffers them into whole chunk rows (so
every compressed block is written once) and, in its ``new`` mode, writes under a temporary
name (:mod:`rsinfer.io.outputs`) and renames onto the target only in
:meth:`LabelWriter.commit`. Until then the output does not exist under its real name;
:meth:`LabelWriter.abort` removes the partial file. In ``update`` mode it writes rows into
an output that exists (made by :func:`create_output`), in place: that is how a job runs
only some rows of a raster.

Each writer records which rows are complete (:attr:`LabelWriter.completed_rows`); the
zarr writer also stores that record in the store, which is what resuming builds on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import RsinferError
from ..tiling import Span
from .labelmap import NODATA_LABEL, FinishedRows, class_name_tags, colour_table
from .outputs import check_outputs, commit, describe_os_error, partial_path, remove


class OutputError(RsinferError):
    """An output could not be written (full disk, no permission, a failed GDAL write)."""


@dataclass(frozen=True)
class OutputSpec:
    """What the output must look like; everything comes from the input and the model config."""

    path: str
    width: int
    height: int
    crs: object
    transform: object
    class_names: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...]
    chunk: int = 512
    with_probs: bool = False
    overwrite: bool = False
    source: str = ""
    model: str = ""
    weights: str = ""  # what the model ran with: a manifest entry, a checkpoint file name, or "random"

    @property
    def format(self) -> str:
        return output_format(self.path)


def output_format(path: str) -> str:
    p = str(path).rstrip("/").lower()
    if p.endswith(".zarr"):
        return "zarr"
    if p.endswith((".tif", ".tiff")):
        return "GTiff"
    raise RsinferError(f"{path}: unknown output format; name the output *.tif, *.tiff or *.zarr")


def probs_path(path: str) -> str:
    """Where a GeoTIFF job writes its class probabilities: ``labels.tif`` → ``labels_probs.tif``."""
    p = Path(path)
    return str(p.with_name(p.stem + "_probs" + p.suffix))


WriteMode = Literal["new", "update", "create"]


class LabelWriter(ABC):
    """Base writer: row buffering, temporary names, completion record.

    ``mode``: ``new`` writes a new output under a partial name, renamed by :meth:`commit`;
    ``update`` writes into the existing output at ``spec.path`` in place (no commit; an
    abort leaves it); ``create`` makes the empty output at ``spec.path`` (see :func:`create_output`).
    """

    def __init__(self, spec: OutputSpec, mode: WriteMode = "new"):
        self.spec = spec
        self.mode = mode
        self.final_paths = self._final_paths()
        if mode == "new":
            check_outputs(self.final_paths, spec.overwrite)
            self.partial_paths = [partial_path(p) for p in self.final_paths]
        else:
            self.partial_paths = list(self.final_paths)
        self.completed_rows: list[Span] = []
        self._pending: list[FinishedRows] = []
        self._pending_top: int | None = None  # the first row not yet written; set by the first rows
        self._committed = False

    def _final_paths(self) -> list[str]:
        return [self.spec.path]

    @property
    def chunk_rows(self) -> int:
        """Rows written at a time: one row of the format's blocks/chunks."""
        return self.spec.chunk

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> LabelWriter:
        try:
            if self.mode == "update":
                self._open_existing()
            else:
                self._open()
        except Exception:
            self.abort()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            self.abort()

    def write(self, rows: FinishedRows) -> None:
        """Take finished rows (top to bottom, starting anywhere); write every complete chunk row."""
        if self._pending_top is None:
            self._pending_top = rows.rows.start
        if rows.rows.start != self._pending_top + sum(r.rows.size for r in self._pending):
            raise RuntimeError("rows must arrive top to bottom without gaps")
        self._pending.append(rows)
        with self._failures_named():
            self._drain(final=rows.rows.stop >= self.spec.height)

    def flush(self) -> None:
        """Write the rows still buffered (the end of a job that stops above the last row)."""
        with self._failures_named():
            self._drain(final=True)

    def commit(self, to: str | None = None) -> None:
        """Finish the output (overviews, metadata), check it reads back, and move it onto its real name.

        A ``new`` output moves from its partial name onto ``spec.path``; an ``update``d
        store (a finished partial store) moves onto ``to``. Nothing is moved unless every
        row was written and the files read back; a failure is one RsinferError naming the
        output and the cause (e.g. "disk full").
        """
        if self.mode == "new" and to is None:
            pairs = list(zip(self.partial_paths, self.final_paths, strict=True))
        elif self.mode == "update" and to is not None:
            pairs = [(self.spec.path, to)]
        else:
            raise RuntimeError(f"a writer in {self.mode} mode cannot commit {'to ' + to if to else ''}")
        with self._failures_named():
            self._drain(final=True)
            if self.completed_rows != [Span(0, self.spec.height)]:
                raise RuntimeError("commit before every row was written")
            self._finish()
            for path in self.partial_paths:
                self._verify(path)
            for partial, final in pairs:
                commit(partial, final, overwrite=self.spec.overwrite)
        self._committed = True

    @contextlib.contextmanager
    def _failures_named(self) -> Iterator[None]:
        """Errors of the storage (full disk, permissions, GDAL write failures) as one line naming the output."""
        from rasterio._err import CPLE_BaseError
        from rasterio.errors import RasterioError

        try:
            yield
        except RsinferError:
            raise
        except (OSError, RasterioError, CPLE_BaseError) as err:
            cause = describe_os_error(err)
            raise OutputError(f"{self.spec.path}: cannot write the output ({cause})") from err

    def abort(self) -> None:
        """Close; in ``new`` mode also remove the partial files (an update leaves its output)."""
        try:
            self._close()
        finally:
            if self.mode == "new":
                for p in self.partial_paths:
                    remove(p)

    def close(self) -> None:
        """Close an ``update`` or ``create`` writer, keeping what it wrote."""
        self._close()
        self._committed = True

    def _drain(self, final: bool) -> None:
        chunk = self.chunk_rows
        have = sum(r.rows.size for r in self._pending)
        while have:
            assert self._pending_top is not None
            # Up to the next chunk-row boundary, so blocks stay aligned when a job starts mid-chunk.
            to_boundary = chunk - self._pending_top % chunk
            take = min(to_boundary, have)
            if take < to_boundary and not final:
                break  # an incomplete chunk row: wait for more rows
            block = self._take_rows(take)
            self._write_block(block)
            self._mark_complete(block.rows)
            have -= take

    def _take_rows(self, n: int) -> FinishedRows:
        """Pop the first ``n`` pending rows as one block."""
        labels, probs, got = [], [], 0
        while got < n:
            head = self._pending[0]
            need = n - got
            if head.rows.size <= need:
                self._pending.pop(0)
                part = head
            else:
                part = FinishedRows(
                    Span(head.rows.start, head.rows.start + need),
                    head.labels[:need],
                    None if head.scores is None else head.scores[:, :need],
                )
                self._pending[0] = FinishedRows(
                    Span(head.rows.start + need, head.rows.stop),
                    head.labels[need:],
                    None if head.scores is None else head.scores[:, need:],
                )
            labels.append(part.labels)
            if part.scores is not None:
                probs.append(part.scores)
            got += part.rows.size
        top = self._pending_top
        assert top is not None
        self._pending_top = top + n
        return FinishedRows(Span(top, top + n), np.concatenate(labels, 0), np.concatenate(probs, 1) if probs else None)

    def _mark_complete(self, rows: Span) -> None:
        self.completed_rows = merge_spans([*self.completed_rows, rows])
        self._record_progress()

    def _record_progress(self) -> None:
        """Persist the completion record (formats that can)."""

    # -- format specific -------------------------------------------------------------------
    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _open_existing(self) -> None: ...

    @abstractmethod
    def _write_block(self, block: FinishedRows) -> None: ...

    @abstractmethod
    def _finish(self) -> None: ...

    @abstractmethod
    def _verify(self, path: str) -> None:
        """Re-open a finished file and read its last block (of every level): raise if it does not read."""

    def _close(self) -> None:
        """Close open datasets (formats that hold any)."""


def merge_spans(spans: list[Span]) -> list[Span]:
    """Sorted, with touching or overlapping spans joined."""
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if out and span.start <= out[-1].stop:
            out[-1] = Span(out[-1].start, max(out[-1].stop, span.stop))
        else:
            out.append(span)
    return out


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
        return dict(
            driver="GTiff",
            width=s.width,
            height=s.height,
            count=count,
            dtype="uint8",
            crs=s.crs,
            transform=s.transform,
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


class ZarrWriter(LabelWriter):
    """zarr v3 group: ``labels`` (y, x) uint8, optional ``probs`` (class, y, x), CF/GDAL georeferencing."""

    def _open(self) -> None:
        import zarr

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
        import zarr

        self._group = zarr.open_group(self.partial_paths[0], mode="r+", zarr_format=3)
        self._labels = self._group["labels"]
        self._probs = self._group["probs"] if self.spec.with_probs else None
        done = self._group.attrs["rsinfer"].get("completed_rows", [])
        self.completed_rows = merge_spans([Span(a, b) for a, b in done])

    def _write_georeferencing(self) -> None:
        s, g, t = self.spec, self._group, self.spec.transform
        ref = g.create_array("spatial_ref", shape=(), dtype="int32", fill_value=0)
        attrs = {"GeoTransform": " ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))}
        if s.crs is not None:
            attrs.update({"crs_wkt": s.crs.to_wkt(), "spatial_ref": s.crs.to_wkt()})
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
            self._probs[:, r, :] = block.scores

    def _verify(self, path: str) -> None:
        import zarr

        group = zarr.open_group(path, mode="r")
        for name in ("labels", "probs") if self.spec.with_probs else ("labels",):
            array = group[name]
            if array.shape[-2:] != (self.spec.height, self.spec.width):
                raise OutputError(f"{path}: the written {name} array is not the size asked for")
            array[..., -1:, -1:]  # the last chunk reads back

    def _record_progress(self) -> None:
        meta = dict(self._group.attrs["rsinfer"])
        meta["completed_rows"] = [[r.start, r.stop] for r in self.completed_rows]
        self._group.attrs["rsinfer"] = meta

    def _finish(self) -> None:
        import zarr

        meta = dict(self._group.attrs["rsinfer"])
        meta["complete"] = True
        self._group.attrs["rsinfer"] = meta
        with warnings.catch_warnings():
            # zarr notes that consolidated metadata is an extension of v3; xarray reads it.
            warnings.simplefilter("ignore", UserWarning)
            zarr.consolidate_metadata(self.partial_paths[0])


def open_writer(spec: OutputSpec, mode: WriteMode = "new") -> LabelWriter:
    """The writer for ``spec``'s format (see :class:`LabelWriter` for the modes)."""
    writer_class: type[LabelWriter] = {"GTiff": GeoTiffWriter, "zarr": ZarrWriter}[spec.format]
    return writer_class(spec, mode)


def _check_room_for_overviews(paths: list[str]) -> None:
    """Refuse to build overviews on a disk that cannot hold them: GDAL can crash, not fail,
    when the disk fills while it builds them. They take about a third of the file."""
    need = sum(os.path.getsize(p) for p in paths if os.path.exists(p)) // 3 + 16 * 2**20
    free = shutil.disk_usage(Path(paths[0]).parent).free
    if free < need:
        raise OSError(
            28, f"No space left on device for overviews ({free / 2**20:.0f} MiB free, need {need / 2**20:.0f})"
        )


def assemble_geotiff(store: OutputSpec, spec: OutputSpec) -> list[str]:
    """Write the GeoTIFF output(s) of ``spec`` from a finished chunk store, block row by block row
    (memory: one block row), verify them and move them onto their names."""
    import zarr

    group = zarr.open_group(store.path, mode="r")
    labels = group["labels"]
    probs = group["probs"] if spec.with_probs else None
    with open_writer(spec) as writer:
        for y in range(0, spec.height, GeoTiffWriter.BLOCK):
            rows = Span(y, min(spec.height, y + GeoTiffWriter.BLOCK))
            scores = None if probs is None else np.asarray(probs[:, rows.start : rows.stop])
            writer.write(FinishedRows(rows, np.asarray(labels[rows.start : rows.stop]), scores))
        writer.commit()
    return writer.final_paths


def create_output(spec: OutputSpec) -> None:
    """Make the output at ``spec.path`` with no row written yet, for jobs that fill it in parts
    (:func:`open_writer` with ``mode="update"``)."""
    with open_writer(spec, "create") as writer:
        writer.close()
