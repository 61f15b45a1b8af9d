"""The segment job: read → tile → batch → model → stitch → write, wired together.

This module owns the threads, queues, progress and cleanup; each stage lives in its
own module and knows nothing of the others. Reading runs on a thread pool ahead of the
model (``rsinfer.io.reader``), writing runs on its own thread behind it, and the main
thread runs batches through the backend and the stitcher.
"""
from __future__ import annotations

import os
import queue
import resource
import sys
import threading
import warnings
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import rasterio
import torch

from .backends import OnnxBackend, TorchBackend, resolve_device
from .batching import Batch, BatchSize, auto_batch_size, batch_tiles, parse_memory, predict_halving_on_oom
from .errors import ModelError
from .export import export_onnx, global_graph_path
from .global_context import GlobalLocalFeeder
from .io.reader import TileReader
from .io.source import RasterInfo, inspect_raster
from .io.writers import LabelWriter, OutputSpec, open_writer
from .stitch import RowBandStitcher
from .tiling import BLENDS, TileGrid
from .weights import RANDOM_WEIGHTS, default_weights, load_checkpoint, resolve_weights


@dataclass
class SegmentOptions:
    """Everything ``rsinfer segment`` takes; None means 'the model config's default'."""

    input: str
    output: str
    model: str | None = None  # None: the weights' model, else the default model
    weights: str | None = None
    tile: int | None = None
    overlap: int | None = None
    batch_size: int | str = 4  # or "auto": the largest that fits max_gpu_mem (CUDA)
    max_gpu_mem: str | None = None  # e.g. 20GiB or 0.8; None: what is free
    precision: str = "fp32"  # fp32, fp16, bf16 (torch autocast)
    device: str = "auto"
    bands: tuple[int, ...] | None = None
    blend: str = "crop"
    probs: bool = False
    overwrite: bool = False
    value_scale: float | None = None
    read_workers: int = 0  # 0: choose from the CPU count
    mode: str | None = None  # global-local models: global-local (default), global or patch
    backend: str = "torch"  # torch or onnx
    onnx: str | None = None  # an exported graph; None: export and cache on first use


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


# progress(tiles_done, tiles_total, pixels_done)
ProgressFn = Callable[[int, int, int], None]


def build_model(opts: SegmentOptions):
    """Model config (weights' manifest entry, then CLI overrides), the network, and its weights."""
    from rsinfer.models import DEFAULT_MODEL, create_model, get_config

    spec = opts.weights
    if spec is None:  # the model's bundled default weights, if it has any
        spec = default_weights(opts.model or DEFAULT_MODEL)
    elif spec == RANDOM_WEIGHTS:
        spec = None
    weights_file, entry = resolve_weights(spec) if spec else (None, None)
    name = opts.model or (entry.model if entry else DEFAULT_MODEL)
    if weights_file is None and opts.weights != RANDOM_WEIGHTS:
        warnings.warn(f"model {name} has no trained weights here: its predictions are random "
                      f"(pass --weights FILE, or --weights {RANDOM_WEIGHTS} to silence this)", stacklevel=2)
    if entry and entry.model != name:
        raise ModelError(f"weights {entry.name} are for model {entry.model}, not {name}")
    try:
        config = get_config(name)
    except KeyError as err:
        raise ModelError(str(err.args[0])) from None
    if entry:
        try:
            config = config.replace(**entry.config_overrides())
        except ValueError as err:
            raise ModelError(f"weights {entry.name}: {err}") from None
    tile = opts.tile or config.tile
    overlap = config.overlap if opts.overlap is None else opts.overlap
    if not 0 <= overlap < tile:
        raise ModelError(f"model {config.name}: overlap {overlap} must be at least 0 and smaller than the tile ({tile})")
    try:
        config.check_tile(tile)
    except ValueError as err:
        raise ModelError(str(err)) from None
    config = config.replace(tile=tile, overlap=overlap)
    model = create_model(config.name, config)
    if weights_file:
        load_checkpoint(config.name, model, weights_file)
    # provenance for the report and the output's metadata
    model.rsinfer_weights = entry.name if entry else (weights_file.name if weights_file else RANDOM_WEIGHTS)
    return config, model


class _WriterThread:
    """Runs ``writer.write`` on its own thread behind a bounded queue, so compression overlaps the model."""

    def __init__(self, writer: LabelWriter, depth: int = 2):
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rsinfer-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self.writer.write(item)
                except BaseException as err:  # reported on the main thread
                    self._error = err

    def put(self, rows) -> None:
        self._raise()
        self._queue.put(rows)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def run_segment(opts: SegmentOptions, progress: ProgressFn | None = None) -> SegmentReport:
    """Segment ``opts.input`` into ``opts.output``; raises RsinferError subclasses on bad input."""
    if opts.blend not in BLENDS:
        raise ModelError(f"unknown blend {opts.blend!r}; choose one of {', '.join(BLENDS)}")
    start = time.perf_counter()
    config, model = build_model(opts)
    info = inspect_raster(opts.input, config.in_bands, opts.bands, config.input_range, opts.value_scale)
    device = resolve_device(opts.device)
    backend = make_backend(opts, model, config, info, device)
    grid = TileGrid(info.height, info.width, config.tile, config.overlap)
    spec = OutputSpec(
        path=opts.output, width=info.width, height=info.height, crs=info.crs, transform=info.transform,
        class_names=config.class_names, class_colors=config.class_colors, chunk=config.tile,
        with_probs=opts.probs, overwrite=opts.overwrite, source=os.path.basename(info.path), model=config.name,
        weights=model.rsinfer_weights,
    )
    stitcher = RowBandStitcher(grid, config.num_classes, opts.blend, keep_scores=opts.probs, device=device)
    feeder = global_local_feeder(model, opts.mode, info, grid, config, backend)
    batch_size = BatchSize(choose_batch_size(opts, backend, feeder, grid, info))
    workers = opts.read_workers or max(1, min(4, (os.cpu_count() or 2)))
    reader = TileReader(info, workers=workers)

    done = skipped = pixels = 0
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb(info, grid, config.num_classes if opts.probs else 0)), \
            open_writer(spec) as writer:
        sink = _WriterThread(writer)
        try:
            for item in batch_tiles(reader.iter_tiles(grid), batch_size):
                if isinstance(item, Batch):
                    tiles = [td.tile for td in item.tiles]
                    contexts, boxes = feeder.for_tiles(tiles) if feeder else (None, None)
                    probs = predict_halving_on_oom(backend.predict, batch_size, item.data, item.valid, contexts, boxes)
                    valid = torch.from_numpy(item.valid)
                    finished = []
                    for i, td in enumerate(item.tiles):
                        finished += stitcher.add(td.tile, probs[i], valid[i])
                else:
                    finished = stitcher.add(item.tile, None, None)
                    tiles = [item.tile]
                    skipped += 1
                for rows in finished:
                    sink.put(rows)
                done += len(tiles)
                pixels += sum(t.core_rows.size * t.core_cols.size for t in tiles)
                if progress:
                    progress(done, len(grid), pixels)
        finally:
            sink.close()
        if not stitcher.done:
            raise RuntimeError("stitcher did not finish every row")
        writer.commit()
    return SegmentReport(
        input=info.path, outputs=writer.final_paths, model=config.name, device=str(device),
        width=info.width, height=info.height, tiles=len(grid), tiles_predicted=backend.tiles,
        tiles_skipped=skipped, model_calls=backend.calls, seconds=time.perf_counter() - start,
        peak_rss_mb=peak_rss_mb(), backend=backend_label(backend), completed_rows=[(r.start, r.stop) for r in writer.completed_rows],
        weights=model.rsinfer_weights,
    )


def make_backend(opts: SegmentOptions, model, config, info: RasterInfo, device):
    """The torch backend, or ONNX Runtime on the exported (or given) graph."""
    if opts.backend == "torch":
        return TorchBackend(model, config, device, value_scale=info.value_scale, precision=opts.precision)
    if opts.backend != "onnx":
        raise ModelError(f"unknown backend {opts.backend!r}; use torch or onnx")
    set_model_mode(model, opts.mode, config)  # the graph is exported in the mode asked for
    onnx_path, sessions = (Path(opts.onnx), None) if opts.onnx else cached_onnx(model, config)
    global_path = global_graph_path(onnx_path)
    return OnnxBackend(onnx_path, config, device, value_scale=info.value_scale,
                       global_path=global_path if global_path.exists() else None, sessions=sessions)


def gdal_cache_mb(info: RasterInfo, grid: TileGrid, prob_bands: int) -> int:
    """GDAL block cache sized for a band of tile rows (read) and of block rows (write).

    GDAL decodes whole blocks, and tile windows straddle them; a cache holding the blocks
    under the current tile row (plus one block row) decodes each block once. GDAL's default
    (5 % of RAM) would instead let the cache, and the process, grow with the raster.
    """
    import numpy as np

    block_h = info.block_shape[0]
    itemsize = np.dtype(info.dtype).itemsize
    read = len(set(info.bands)) * itemsize * info.width * (grid.tile_shape[0] + 2 * block_h)
    write = (1 + prob_bands) * info.width * 2 * 512
    return int(min(1024, max(64, 2 * (read + write) / 2**20)))


def choose_batch_size(opts: SegmentOptions, backend, feeder, grid: TileGrid, info: RasterInfo) -> int:
    """The batch size asked for, or with ``auto`` the largest that fits the GPU budget."""
    if opts.batch_size != "auto":
        return int(opts.batch_size)
    import numpy as np

    h, w = grid.tile_shape
    tiles = list(grid)[:1]

    def try_batch(b: int) -> None:
        data = np.zeros((b, len(info.bands), h, w), dtype=info.dtype)
        valid = np.ones((b, h, w), dtype=bool)
        contexts, boxes = feeder.for_tiles(tiles * b) if feeder else (None, None)
        backend.predict(data, valid, contexts, boxes)

    budget = parse_memory(opts.max_gpu_mem) if opts.max_gpu_mem else None
    return auto_batch_size(try_batch, backend.device, budget)


def set_model_mode(model, mode: str | None, config) -> bool:
    """Put a global-local model in ``mode``; False for a sliding-window model (which has no modes)."""
    from rsinfer.models.global_local import GlobalLocalModel

    if not isinstance(model, GlobalLocalModel):
        if mode not in (None, "patch"):
            raise ModelError(f"model {config.name} has no global branch; --mode {mode} needs GLNet or GLCANet")
        return False
    try:
        model.set_mode(mode or "global-local")
    except ValueError as err:
        raise ModelError(str(err)) from None
    return True


def global_local_feeder(model, mode: str | None, info, grid, config, backend):
    """The context/box feeder for global-local models; None for sliding-window models."""
    if not set_model_mode(model, mode, config):
        return None
    return GlobalLocalFeeder(info, grid, config, backend.compute_context, needs_context=model.mode != "patch")


def cached_onnx(model, config) -> tuple[Path, dict | None]:
    """The model's ONNX graph for this tile, exported on first use into the cache folder
    (with the CPU sessions that verified it, which a CPU backend reuses).

    The cache key covers the model, tile, mode and a digest of the weights, so a new
    checkpoint never reuses an old graph.
    """
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    mode = getattr(model, "mode", "sliding")
    cache = Path(os.environ.get("RSINFER_CACHE", Path.home() / ".cache" / "rsinfer")) / "onnx"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{config.name}-{config.tile}-{mode}-{digest.hexdigest()[:16]}.onnx"
    if path.exists():
        return path, None
    return path, export_onnx(model, config, config.tile, path).sessions


def backend_label(backend) -> str:
    provider = getattr(backend, "provider", None)
    return f"onnx {provider}" if provider else "torch"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (the kernel's high-water mark).

    Linux's ``VmHWM`` belongs to this program's address space; ``ru_maxrss`` would also
    count a parent's memory from before fork/exec, which a benchmark child must not.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
