"""``rsinfer segment`` as wiring: options → model, raster, backend, grid, predictor, writer → one job.

Each piece is built by the module that owns it; :func:`run_segment` only connects them and
runs the job (:mod:`rsinfer.job`) into a new output that is renamed into place when complete.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import rasterio

from .backends import resolve_device
from .backends.base import Backend
from .backends.factory import BACKENDS, BackendName, backend_label, make_backend
from .backends.torch_backend import PRECISIONS, Precision
from .batching import Batch, BatchSize, auto_batch_size, parse_memory
from .errors import ModelError
from .io.reader import TileData, gdal_cache_mb
from .io.source import inspect_raster
from .io.writers import OutputSpec, open_writer
from .job import JobStats, ProgressFn, SegmentJob, run_job
from .loading import MODES, load_model
from .memory import peak_rss_mb
from .predictors import Predictor, make_predictor
from .tiling import BLENDS, Blend, TileGrid

Mode = Literal["global-local", "global", "patch"]


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
    backend: BackendName = "torch"
    onnx: str | None = None  # an exported graph; None: export and cache on first use

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

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    @property
    def mpx_per_s(self) -> float:
        return self.megapixels / self.seconds if self.seconds > 0 else float("nan")


def run_segment(opts: SegmentOptions, progress: ProgressFn | None = None) -> SegmentReport:
    """Segment ``opts.input`` into ``opts.output``; raises RsinferError subclasses on bad input."""
    start = time.perf_counter()
    loaded = load_model(opts.model, opts.weights, tile=opts.tile, overlap=opts.overlap)
    config = loaded.config
    mode = loaded.set_mode(opts.mode)
    info = inspect_raster(opts.input, config.in_bands, opts.bands, config.input_range, opts.value_scale)
    device = resolve_device(opts.device)
    backend = make_backend(loaded, opts.backend, device, info.value_scale, opts.precision, opts.onnx, mode)
    grid = TileGrid(info.height, info.width, config.tile, config.overlap)
    predictor = make_predictor(loaded, backend, info, grid, mode)
    spec = OutputSpec(
        path=opts.output,
        width=info.width,
        height=info.height,
        crs=info.crs,
        transform=info.transform,
        class_names=config.class_names,
        class_colors=config.class_colors,
        chunk=config.tile,
        with_probs=opts.probs,
        overwrite=opts.overwrite,
        source=os.path.basename(info.path),
        model=config.name,
        weights=loaded.weights,
    )
    batch_size = BatchSize(choose_batch_size(opts.batch_size, opts.max_gpu_mem, predictor, grid, info))
    # The same GDAL cache for writing and the overviews as for the job itself.
    cache_mb = gdal_cache_mb(info, grid.tile_shape[0], config.num_classes if opts.probs else 0)
    with rasterio.Env(GDAL_CACHEMAX=cache_mb), open_writer(spec) as writer:
        job = SegmentJob(
            source=info,
            grid=grid,
            predictor=predictor,
            sink=writer,
            num_classes=config.num_classes,
            blend=opts.blend,
            keep_scores=opts.probs,
            batch_size=batch_size,
            read_workers=opts.read_workers or max(1, min(4, (os.cpu_count() or 2))),
        )
        stats: JobStats = run_job(job, progress)
        writer.commit()
    return SegmentReport(
        input=info.path,
        outputs=writer.final_paths,
        model=config.name,
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
        completed_rows=[(r.start, r.stop) for r in writer.completed_rows],
        weights=loaded.weights,
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

