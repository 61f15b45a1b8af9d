"""``rsinfer segment`` as wiring: options → model, raster, backend, grid, predictor, writer → one job.

Each piece is built by the module that owns it; :func:`run_segment` only connects them and
runs the job (:mod:`rsinfer.job`) into the output's chunk store (:mod:`rsinfer.partial`),
which becomes the output (zarr) or is assembled into it (GeoTIFF) once every row is done,
verified, and renamed into place. An interrupted run keeps the store; ``resume`` continues it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import rasterio
import shapely

from .aoi import AreaOfInterest, area_view, make_area
from .backends import resolve_device
from .backends.base import Backend
from .backends.factory import BACKENDS, BackendName, backend_label, make_backend, resolve_backend
from .backends.torch_backend import PRECISIONS, Precision
from .batching import Batch, BatchSize, auto_batch_size, parse_memory
from .errors import ModelError, RsinferError
from .io.outputs import OutputLock, check_outputs, refuse_inputs_as_outputs, remove
from .io.reader import TileData, gdal_cache_mb
from .io.source import InputWarning, RasterInfo, inspect_raster
from .io.writers import (
    OutputError,
    OutputSpec,
    assemble_geotiff,
    create_output,
    dead_writer_files,
    open_writer,
    output_errors_named,
    output_files,
    output_format,
)
from .job import JobStats, ProgressFn, RowSink, SegmentJob, run_job
from .loading import MODES, LoadedModel, load_model
from .memory import peak_rss_mb
from .partial import (
    check_resumable,
    fresh_store_path,
    input_identity,
    park_fingerprint,
    parked_fingerprint,
    remove_store,
    remove_stray_files,
    resume_row,
    store_path,
    unfinished_stores,
    write_fingerprint,
)
from .predictors import Predictor, make_predictor
from .signals import StopRequest
from .tiling import BLENDS, Blend, Span, TileGrid
from .weights import state_dict_sha256

Mode = Literal["global-local", "global", "patch"]
log = logging.getLogger("rsinfer")


@dataclass
class SegmentOptions:
    """Everything ``rsinfer segment`` takes; None means 'the model config's default'.

    Choices are checked once, here, when the options are made.
    """

    input: str
    output: str
    model: str | None = None  # None: the weights' model, else the default model
    weights: str | None = None
    tile: int | None = None
    overlap: int | None = None
    global_size: int | None = None  # global-local models: the global view's side [the model config's]
    batch_size: int | Literal["auto"] = 4  # auto: the largest that fits max_gpu_mem (CUDA)
    max_gpu_mem: str | None = None  # e.g. 20GiB or 0.8; None: what is free
    precision: Precision = "fp32"  # torch autocast
    device: str = "auto"
    bands: tuple[int, ...] | None = None
    blend: Blend = "crop"
    probs: bool = False
    overwrite: bool = False
    value_scale: float | None = None
    read_workers: int = 0  # 0: choose from the CPU count
    mode: Mode | None = None  # global-local models: global-local (default), global or patch
    backend: BackendName = "torch"  # auto: ONNX Runtime where it is faster and verified, else torch
    onnx: str | None = None  # an exported graph; None: export and cache on first use
    resume: bool = False  # continue the partial output an interrupted run of this job left
    keep_partial: bool = True  # keep the partial output of an interrupted run (for resume)
    aoi: str | None = None  # a vector file: only the tiles touching its polygons run; the rest is nodata
    bbox: tuple[float, float, float, float] | None = None  # the same for a box (minx, miny, maxx, maxy)
    bbox_crs: str | None = None  # the box's CRS [the raster's]
    crop_to_aoi: bool = False  # write only the area's bounding window (georeferenced), not the full grid
    creation_options: tuple[tuple[str, str], ...] = ()  # --co KEY=VALUE for GDAL's COG driver (GeoTIFF outputs)

    def __post_init__(self) -> None:
        for name, value, choices in (
            ("blend", self.blend, BLENDS),
            ("backend", self.backend, BACKENDS),
            ("precision", self.precision, tuple(PRECISIONS)),
            ("mode", self.mode, (None, *MODES)),
        ):
            if value not in choices:
                known = ", ".join(c for c in choices if c)
                raise ModelError(f"unknown {name} {value!r}; choose one of {known}")
        if self.backend == "onnx" and self.precision != "fp32":
            raise ModelError(f"--precision {self.precision} needs --backend torch: ONNX Runtime runs the graph in fp32")
        if self.backend == "auto" and self.onnx:
            raise ModelError("--onnx FILE needs --backend onnx: auto runs only graphs it exports and verifies itself")
        if self.creation_options and output_format(self.output) == "zarr":
            raise RsinferError(f"{self.output}: --co sets GeoTIFF creation options; a zarr output takes none")
        if self.batch_size != "auto" and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ModelError(f"batch size {self.batch_size!r} must be a positive number or 'auto'")


@dataclass
class SegmentReport:
    input: str
    outputs: list[str]
    model: str
    device: str
    width: int
    height: int
    tiles: int
    tiles_predicted: int
    tiles_skipped: int
    model_calls: int
    seconds: float
    peak_rss_mb: float
    backend: str = "torch"
    completed_rows: list = field(default_factory=list)
    weights: str = ""
    resumed_from_row: int = 0  # 0, or where a resumed run took over from an interrupted one

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    @property
    def mpx_per_s(self) -> float:
        return self.megapixels / self.seconds if self.seconds > 0 else float("nan")


class JobInterrupted(RsinferError):
    """A stop signal ended the run early; what was finished is kept for ``--resume``."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def output_paths(output: str, probs: bool) -> list[str]:
    """Every file a segment job writes under its final names."""
    return output_files(output, probs)


@dataclass
class SegmentSetup:
    """What every process of one segment job knows before it writes: model, raster, grid, outputs."""

    opts: SegmentOptions
    loaded: LoadedModel
    mode: str | None
    info: RasterInfo
    grid: TileGrid
    spec: OutputSpec  # the final output
    finals: list[str]  # every file written under a final name
    area: AreaOfInterest | None = None  # --aoi / --bbox

    @property
    def store_spec(self) -> OutputSpec:
        """The job's chunk store (see :mod:`rsinfer.partial`)."""
        return replace(self.spec, path=store_path(self.opts.output))

    def job(self, predictor: Predictor, sink: RowSink, rows: Span, **kw: Any) -> SegmentJob:
        """The job producing ``rows`` of this run with ``predictor`` into ``sink``."""
        return SegmentJob(
            source=self.info,
            grid=self.grid,
            predictor=predictor,
            sink=sink,
            num_classes=self.loaded.config.num_classes,
            rows=rows,
            blend=self.opts.blend,
            keep_scores=self.opts.probs,
            read_workers=self.opts.read_workers or max(1, min(4, (os.cpu_count() or 2))),
            area=self.area,
            **kw,
        )

    @property
    def gdal_cache_mb(self) -> int:
        config = self.loaded.config
        return gdal_cache_mb(self.info, self.grid.tile_shape[0], config.num_classes if self.opts.probs else 0)


def prepare_segment(
    opts: SegmentOptions, check_outputs_first: bool = True, loaded: LoadedModel | None = None
) -> SegmentSetup:
    """Load the model (unless ``loaded`` is the one ``opts`` asks for, already loaded) and inspect
    the raster; with ``check_outputs_first``, refuse outputs that are the input or exist
    (without ``--overwrite``) before any of that work."""
    finals = output_paths(opts.output, opts.probs)
    if check_outputs_first:
        refuse_inputs_as_outputs([opts.input], [*finals, store_path(opts.output)])
    if loaded is None:
        log.info("loading model %s (weights: %s)", opts.model or "(default)", opts.weights or "(default)")
        loaded = load_model(
            opts.model, opts.weights, tile=opts.tile, overlap=opts.overlap, global_size=opts.global_size
        )
    config = loaded.config
    mode = loaded.set_mode(opts.mode)
    info = inspect_raster(opts.input, config.in_bands, opts.bands, config.input_range, opts.value_scale)
    warn_if_demo_weights_misfit(loaded, info)
    area = make_area(info, opts.aoi, opts.bbox, opts.bbox_crs)
    if opts.crop_to_aoi:
        if area is None:
            raise RsinferError("--crop-to-aoi needs --aoi or --bbox")
        # GDAL reads the window as a raster of its own (a vrt:// view): every reader, global
        # views included, then sees the cropped grid with its georeferencing.
        view = area_view(opts.input, area, info)
        info = inspect_raster(view, config.in_bands, opts.bands, config.input_range, opts.value_scale)
        area = AreaOfInterest(area.geometry, info.transform)
    grid = TileGrid(info.height, info.width, config.tile, config.overlap)
    spec = output_spec(opts.output, info, loaded, opts.probs, opts.overwrite, opts.creation_options)
    if check_outputs_first:
        check_outputs(finals, opts.overwrite)
    return SegmentSetup(opts, loaded, mode, info, grid, spec, finals, area)


@contextlib.contextmanager
def claimed_output(setup: SegmentSetup) -> Iterator[int]:
    """Hold the output's lock and its chunk store for the block; yield the first row still to do.

    A failure in the block removes the store (nothing of the run is left); an interruption
    (a stop signal, a second signal) keeps it for ``--resume`` unless ``keep_partial`` is off.
    """
    opts, store = setup.opts, setup.store_spec
    with OutputLock(opts.output) as lock:
        if lock.stale_pid is not None:  # a job killed here before: what it was writing goes
            for leftover in dead_writer_files(setup.finals, lock.stale_pid):
                remove(leftover)
        fingerprint = job_fingerprint(opts, setup.info, setup.loaded, setup.mode, setup.area)
        try:
            with output_errors_named(store.path):
                first_row = open_store(store, fingerprint, opts.resume, opts.overwrite)
        except OutputError:  # e.g. no room for the store: leave nothing behind
            remove_store(store.path)
            raise
        try:
            yield first_row
        except KeyboardInterrupt:  # a second signal: keep what is done, as for the first
            if not opts.keep_partial:
                remove_store(store.path)
            raise
        except JobInterrupted:
            raise
        except BaseException:  # a failure: nothing of this run is left behind
            remove_store(store.path)
            raise


def finish_from_store(setup: SegmentSetup) -> None:
    """Make the final output from the finished store: the store itself (zarr), or a GeoTIFF assembled from it."""
    store = setup.store_spec
    if setup.spec.format == "zarr":
        # The output holds the job's result, not its recipe: the fingerprint waits beside the
        # store until the store is the output, so a kill at any point leaves a resumable store.
        park_fingerprint(store.path)
        with open_writer(store, "update") as writer:
            writer.commit(to=setup.spec.path)
        remove_store(store.path)
        return
    # The store keeps its fingerprint until the GeoTIFF is committed: killed while assembling,
    # a --resume assembles it again.
    assemble_geotiff(store, setup.spec)
    remove_store(store.path)


def run_segment(
    opts: SegmentOptions,
    progress: ProgressFn | None = None,
    stop: StopRequest | None = None,
    loaded: LoadedModel | None = None,
    assemble: bool = True,
) -> SegmentReport:
    """Segment ``opts.input`` into ``opts.output``; raises RsinferError subclasses on bad input.

    ``stop`` (see :func:`rsinfer.signals.stop_on_signals`) ends the run early with
    :class:`JobInterrupted`, keeping the rows done for ``opts.resume``. ``loaded``: the model
    ``opts`` names, already loaded (a worker that runs many scenes loads it once).
    ``assemble=False`` stops once every row is in the chunk store: :func:`assemble_output`
    makes the output from it later, on another thread (``batch`` overlaps it with the next
    scene's inference).
    """
    start = time.perf_counter()
    setup = prepare_segment(opts, loaded=loaded)
    info, grid, loaded = setup.info, setup.grid, setup.loaded
    device = resolve_device(opts.device)
    backend = make_backend(loaded, opts.backend, device, info.value_scale, opts.precision, opts.onnx, setup.mode)
    predictor = make_predictor(loaded, backend, info, grid, setup.mode)
    batch_size = BatchSize(choose_batch_size(opts.batch_size, opts.max_gpu_mem, predictor, grid, info))
    stats = JobStats()
    # The same GDAL cache for writing and the overviews as for the job itself.
    with rasterio.Env(GDAL_CACHEMAX=setup.gdal_cache_mb), claimed_output(setup) as first_row:
        if first_row < info.height:
            with open_writer(setup.store_spec, "update") as writer:
                job = setup.job(predictor, writer, Span(first_row, info.height), batch_size=batch_size, stop=stop)
                stats = run_job(job, progress)
                writer.close()
            if stats.stopped:
                raise _interrupted(opts, setup.store_spec.path, writer.completed_rows, info.height, stop)
        if assemble:
            finish_from_store(setup)
    return SegmentReport(
        input=info.path,
        outputs=setup.finals,
        model=loaded.name,
        device=str(device),
        width=info.width,
        height=info.height,
        tiles=len(grid),
        tiles_predicted=backend.tiles,
        tiles_skipped=stats.tiles_skipped,
        model_calls=backend.calls,
        seconds=time.perf_counter() - start,
        peak_rss_mb=peak_rss_mb(),
        backend=backend_label(backend),
        completed_rows=[(0, info.height)],
        weights=loaded.weights,
        resumed_from_row=first_row,
    )


def assemble_output(opts: SegmentOptions, loaded: LoadedModel | None = None) -> None:
    """Make the output of a job whose rows are all in its chunk store (``run_segment(...,
    assemble=False)``): the same claim of the output, fingerprint check and verified commit
    as the end of :func:`run_segment`, with no model run."""
    setup = prepare_segment(replace(opts, resume=True), loaded=loaded)
    with rasterio.Env(GDAL_CACHEMAX=setup.gdal_cache_mb), claimed_output(setup) as first_row:
        if first_row < setup.info.height:
            raise OutputError(f"{setup.store_spec.path}: rows from {first_row} on are not done; run with --resume")
        finish_from_store(setup)


# The bundled demo weights (manifest entries ``*.synthetic``) learnt 0.2 m synthetic scenes.
DEMO_PIXEL_METRES = 0.2


def pixel_size_metres(info: RasterInfo) -> float | None:
    """The raster's pixel size in metres (the mean of both axes), when its CRS says how."""
    crs, t = info.crs, info.transform
    if crs is None or info.gcps:
        return None
    size = abs(t.a * t.e - t.b * t.d) ** 0.5  # type: ignore[attr-defined]
    if crs.is_geographic:  # type: ignore[attr-defined]
        return size * 111_320.0  # metres per degree at the equator: the right order of magnitude
    try:
        _, factor = crs.linear_units_factor  # type: ignore[attr-defined]
    except Exception:  # a CRS without linear units
        return None
    return size * factor


def warn_if_demo_weights_misfit(loaded: LoadedModel, info: RasterInfo) -> None:
    """Say so when demo weights run on imagery far from what they learnt (they would give nonsense quietly)."""
    if not loaded.weights.endswith(".synthetic"):
        return
    metres = pixel_size_metres(info)
    if metres is not None and not DEMO_PIXEL_METRES / 4 <= metres <= DEMO_PIXEL_METRES * 4:
        warnings.warn(
            f"{info.path}: {metres:.3g} m pixels, but the demo weights {loaded.weights} learnt synthetic "
            f"{DEMO_PIXEL_METRES} m scenes only: expect meaningless labels (pass --weights for trained ones)",
            InputWarning,
            stacklevel=2,
        )


def output_spec(
    path: str,
    info: RasterInfo,
    loaded: LoadedModel,
    probs: bool,
    overwrite: bool = False,
    creation_options: tuple[tuple[str, str], ...] = (),
) -> OutputSpec:
    """The label map a job on ``info`` with ``loaded`` writes: the input's grid and georeferencing,
    the model's classes, chunks of one tile, provenance."""
    config = loaded.config
    return OutputSpec(
        path=path,
        width=info.width,
        height=info.height,
        crs=info.crs,
        transform=info.transform,
        class_names=config.class_names,
        class_colors=config.class_colors,
        chunk=config.tile,
        with_probs=probs,
        overwrite=overwrite,
        source=os.path.basename(info.path.split("?")[0]),
        model=config.name,
        weights=loaded.weights,
        gcps=tuple(info.gcps),
        gcp_crs=info.gcp_crs,
        creation_options=creation_options,
    )


def job_fingerprint(
    opts: SegmentOptions, info: RasterInfo, loaded: LoadedModel, mode: str | None, area: AreaOfInterest | None = None
) -> dict:
    """What makes two runs produce the same output: a partial output resumes only under the same."""
    return {
        **input_identity(opts.input),
        "input_view": info.path if info.path != opts.input else None,
        "model": loaded.name,
        "weights": loaded.weights,
        "weights_sha256": state_dict_sha256(loaded.module),
        "tile": loaded.config.tile,
        "overlap": loaded.config.overlap,
        "blend": opts.blend,
        "mode": mode,
        "global_size": loaded.config.global_local.global_size if loaded.config.global_local else None,
        "procedure": loaded.config.global_local.procedure if loaded.config.global_local else None,
        "bands": list(info.bands),
        "value_scale": info.value_scale,
        "probs": opts.probs,
        # What the job runs on, auto resolved: a resumed run cannot mix backends.
        "backend": resolve_backend(opts.backend, loaded, resolve_device(opts.device), opts.precision, mode),
        "precision": opts.precision,
        "format": output_format(opts.output),
        "area_sha256": None if area is None else hashlib.sha256(shapely.to_wkb(area.geometry)).hexdigest(),
    }


def open_store(store: OutputSpec, fingerprint: dict, resume: bool, overwrite: bool) -> int:
    """Create the job's chunk store, or continue one an interrupted run left; the first row to produce."""
    if os.path.lexists(store.path):
        if resume:
            check_resumable(store.path, fingerprint)
            remove_stray_files(store.path)
            with open_writer(store, "update") as existing:
                done = existing.completed_rows
                existing.close()
            return resume_row(done, store.height, store.chunk)
        if not overwrite:
            raise RsinferError(
                f"{store.path}: found a partial output from an interrupted run; --resume continues it, "
                "--overwrite starts over"
            )
        remove_store(store.path)
    remove(parked_fingerprint(store.path))  # left by a run killed as its zarr output took its name
    for stray in unfinished_stores(store.path):  # a process killed while it created a store
        remove(stray)
    fresh = replace(store, path=fresh_store_path(store.path))
    try:
        create_output(fresh)
        write_fingerprint(fresh.path, fingerprint)
        os.rename(fresh.path, store.path)  # under its name only with its fingerprint
    except BaseException:
        remove(fresh.path)
        raise
    return 0


def _interrupted(opts: SegmentOptions, store: str, done: list[Span], height: int, stop) -> JobInterrupted:
    rows = done[0].stop if done and done[0].start == 0 else 0
    if opts.keep_partial:
        what = f"partial output kept in {store}; rerun with --resume to continue"
    else:
        remove(store)
        what = "partial output removed"
    return JobInterrupted(
        f"{opts.output}: interrupted by {stop.name} after {rows} of {height} rows; {what}", stop.exit_code
    )


def choose_batch_size(
    batch_size: int | Literal["auto"], max_gpu_mem: str | None, predictor: Predictor, grid: TileGrid, info
) -> int:
    """The batch size asked for, or with ``auto`` the largest that fits the GPU budget."""
    if batch_size != "auto":
        return int(batch_size)
    backend: Backend = predictor.backend
    h, w = grid.tile_shape
    first = grid.tile_at(0, 0)

    def try_batch(b: int) -> None:
        data = np.zeros((b, len(info.bands), h, w), dtype=info.dtype)
        valid = np.ones((b, h, w), dtype=bool)
        predictor(Batch([TileData(first, None, None)] * b, data, valid))

    budget = parse_memory(max_gpu_mem) if max_gpu_mem else None
    return auto_batch_size(try_batch, backend.device, budget)
