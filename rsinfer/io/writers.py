"""Writers for the label map: GeoTIFF (:mod:`.geotiff_writer`) and zarr (:mod:`.zarr_writer`) behind one interface.

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
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import RsinferError
from ..tiling import Span
from .labelmap import FinishedRows
from .outputs import check_outputs, commit, describe_os_error, partial_path, remove


class OutputError(RsinferError):
    """An output could not be written (full disk, no permission, a failed GDAL write)."""


@dataclass(frozen=True)
class OutputSpec:
    """What the output must look like; everything comes from the input and the model config."""

    path: str
    width: int
    height: int
    crs: Any  # rasterio CRS or None
    transform: Any  # affine.Affine
    class_names: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...]
    chunk: int = 512
    with_probs: bool = False
    overwrite: bool = False
    source: str = ""
    model: str = ""
    weights: str = ""  # what the model ran with: a manifest entry, a checkpoint file name, or "random"
    # Ground control points (rasterio GroundControlPoint) and their CRS, for inputs georeferenced
    # by GCPs alone: the output keeps them instead of a transform.
    gcps: tuple[Any, ...] = ()
    gcp_crs: Any = None
    # GDAL creation options for GeoTIFF outputs (the user's --co KEY=VALUE), given to the COG
    # driver after rsinfer's defaults, so they override them (see rsinfer.io.cog).
    creation_options: tuple[tuple[str, str], ...] = ()

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


def output_files(path: str, probs: bool) -> list[str]:
    """Every file an output at ``path`` is made of, the output itself first.

    A zarr output is its store. A GeoTIFF output is the label map, its probabilities
    (``labels_probs.tif``, with ``probs``), GDAL's ``labels.tif.aux.xml`` (class names and
    attribute table) and QGIS's ``labels.qml`` (legend); they are written and committed together.
    """
    from .gis_sidecars import aux_xml_path, qml_path

    if output_format(path) == "zarr":
        return [path]
    return [path, *([probs_path(path)] if probs else []), aux_xml_path(path), qml_path(path)]


WriteMode = Literal["new", "update", "create"]


def dead_writer_files(finals: Sequence[str], pid: int) -> list[str]:
    """What a writer process ``pid`` killed mid-write can leave beside ``finals``: its partial
    files, a GeoTIFF's scratch file and GDAL's temporary overview files."""
    from .cog import scratch_path, temporary_files

    partials = [partial_path(f, pid) for f in finals]
    return [f for p in partials for f in (p, scratch_path(p), *temporary_files(p), *temporary_files(scratch_path(p)))]


@contextlib.contextmanager
def output_errors_named(path: str) -> Iterator[None]:
    """Errors of the storage (full disk, permissions, GDAL write failures) as one line naming the output."""
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    try:
        yield
    except RsinferError:
        raise
    except (OSError, RasterioError, CPLE_BaseError) as err:
        raise OutputError(f"{path}: cannot write the output ({describe_os_error(err)})") from err


class LabelWriter(ABC):
    """Base writer: row buffering, temporary names, completion record.

    ``mode``: ``new`` writes a new output under a partial name, renamed by :meth:`commit`;
    ``update`` writes into the existing output at ``spec.path`` in place (no commit; an
    abort leaves it); ``create`` makes the empty output at ``spec.path`` (see :func:`create_output`).
    """

    def __init__(self, spec: OutputSpec, mode: WriteMode = "new", record_progress: bool = True):
        self.spec = spec
        self.mode = mode
        # Off when several processes write one store: the one that owns the store records for them.
        self.records_progress = record_progress
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
        return output_files(self.spec.path, self.spec.with_probs)

    @property
    def chunk_rows(self) -> int:
        """Rows written at a time: one row of the format's blocks/chunks."""
        return self.spec.chunk

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> LabelWriter:
        try:
            with self._failures_named():
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
            # The output itself last: once it is there under its name, so is every file beside it.
            for partial, final in reversed(pairs):
                commit(partial, final, overwrite=self.spec.overwrite)
        self._committed = True

    def _failures_named(self) -> contextlib.AbstractContextManager[None]:
        return output_errors_named(self.spec.path)

    def abort(self) -> None:
        """Close; in ``new`` mode also remove the partial files (an update leaves its output)."""
        try:
            self._close()
        finally:
            if self.mode == "new":
                for p in [*self.partial_paths, *self._scratch_paths()]:
                    remove(p)

    def _scratch_paths(self) -> list[str]:
        """Working files a format makes beside its partial files (removed with them)."""
        return []

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
        if self.records_progress:
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


def open_writer(spec: OutputSpec, mode: WriteMode = "new", record_progress: bool = True) -> LabelWriter:
    """The writer for ``spec``'s format (see :class:`LabelWriter` for the modes)."""
    from .geotiff_writer import GeoTiffWriter
    from .zarr_writer import ZarrWriter

    if spec.format == "zarr":
        return ZarrWriter(spec, mode, record_progress)
    return GeoTiffWriter(spec, mode, record_progress)


def assemble_geotiff(store: OutputSpec, spec: OutputSpec) -> list[str]:
    """Write the GeoTIFF output(s) of ``spec`` from a finished chunk store, block row by block row
    (memory: one block row), verify them and move them onto their names."""
    from .geotiff_writer import GeoTiffWriter
    from .zarr_writer import open_store_arrays

    labels, probs = open_store_arrays(store.path, spec.with_probs)
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
