"""A segmentation job as data, and the loop that runs it: read → tile → batch → model → stitch → write.

A :class:`SegmentJob` names everything one run needs: the source raster, the grid, the
output rows to produce, the predictor (which hides what kind of model runs), how tiles
are merged, and the sink that takes finished rows. :func:`run_job` runs it. A job may
cover only some rows of the raster (``rows``): it then reads just the tile rows that
touch them and writes just those rows, bit for bit as the whole raster's run would.

Threads: reading runs on a pool ahead of the model (:mod:`rsinfer.io.reader`), writing on
its own thread behind it (:class:`WriterThread`), and the calling thread runs batches
through the predictor and the stitcher.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import rasterio
import torch

from .aoi import AreaOfInterest
from .backends.base import host_threads
from .batching import Batch, BatchSize, batch_tiles, predict_halving_on_oom
from .io.labelmap import FinishedRows
from .io.reader import TileReader, gdal_cache_mb
from .io.source import RasterInfo
from .predictors import Predictor
from .stitch import RowBandStitcher
from .tiling import Blend, Span, TileGrid

# progress(tiles_done, tiles_total, pixels_done)
ProgressFn = Callable[[int, int, int], None]


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


class RowSink(Protocol):
    """Where finished rows go (a label writer): rows top to bottom, then a flush."""

    def write(self, rows: FinishedRows) -> None: ...

    def flush(self) -> None: ...


@dataclass
class SegmentJob:
    """One run: ``rows`` of ``source`` through ``predictor`` into ``sink``."""

    source: RasterInfo
    grid: TileGrid
    predictor: Predictor
    sink: RowSink
    num_classes: int
    rows: Span | None = None  # None: every row
    blend: Blend = "crop"
    keep_scores: bool = False  # the sink also takes the blended probabilities
    batch_size: BatchSize | None = None
    read_workers: int = 2
    # Checked between batches: when set, the job stops reading and writes the rows it finished.
    stop: StopFlag | None = None
    # An area of interest (rsinfer.aoi.AreaOfInterest): tiles outside it are not read, pixels outside are nodata.
    area: AreaOfInterest | None = None

    @property
    def output_rows(self) -> Span:
        return self.rows or Span(0, self.grid.height)

    @property
    def tile_rows(self) -> range:
        return self.grid.rows_touching(self.output_rows)


@dataclass
class JobStats:
    tiles: int = 0  # tiles the job covers
    tiles_skipped: int = 0  # tiles with no valid pixel, never sent to the model
    pixels: int = 0  # core pixels of the tiles done
    stopped: bool = False  # the stop flag ended the job early


class WriterThread:
    """Runs ``sink.write`` on its own thread behind a bounded queue, so compression overlaps the model.

    An error on the writer thread is raised on the calling thread at the next :meth:`put`
    or at :meth:`close`; rows after a failed write are dropped, not written.
    """

    def __init__(self, sink: RowSink, depth: int = 2):
        self.sink = sink
        self._queue: queue.Queue[FinishedRows | None] = queue.Queue(maxsize=depth)
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
                    self.sink.write(item)
                except BaseException as err:  # reported on the calling thread
                    self._error = err

    def put(self, rows: FinishedRows) -> None:
        self._raise()
        self._queue.put(rows)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def run_job(job: SegmentJob, progress: ProgressFn | None = None) -> JobStats:
    """Run ``job`` and flush its sink; raises what the stages raise (one-line RsinferErrors for bad input).

    When ``job.stop`` is set the job ends early (``stats.stopped``): the rows finished so
    far are written, the rest are not.
    """
    grid, info = job.grid, job.source
    tiles = list(grid.tiles_in_rows(job.tile_rows))
    stats = JobStats(tiles=len(tiles))
    device = job.predictor.backend.device
    stitcher = RowBandStitcher(
        grid, job.num_classes, job.blend, keep_scores=job.keep_scores, device=device, rows=job.output_rows
    )
    batch_size = job.batch_size or BatchSize(4)
    # Crop blending without probabilities needs only each pixel's label: the predictor returns
    # uint8 labels (no softmax, one byte per pixel off the device).
    labels_only = job.blend == "crop" and not job.keep_scores
    reader = TileReader(info, workers=job.read_workers, area=job.area)
    cache_mb = gdal_cache_mb(info, grid.tile_shape[0], job.num_classes if job.keep_scores else 0)
    tiles_done = 0
    with rasterio.Env(GDAL_CACHEMAX=cache_mb):
        sink = WriterThread(job.sink)
        try:
            for item in batch_tiles(reader.iter_tiles(tiles, schedule=job.predictor.schedule), batch_size):
                if job.stop is not None and job.stop.is_set():
                    stats.stopped = True
                    break
                if isinstance(item, Batch):
                    probs = predict_halving_on_oom(partial(job.predictor, labels=labels_only), batch_size, item)
                    valid = torch.from_numpy(item.valid)
                    finished = []
                    with host_threads(device):
                        for i, td in enumerate(item.tiles):
                            finished += stitcher.add(td.tile, probs[i], valid[i])
                    done = [td.tile for td in item.tiles]
                else:  # a tile with no valid pixel
                    with host_threads(device):
                        finished = stitcher.add(item.tile, None, None)
                    done = [item.tile]
                    stats.tiles_skipped += 1
                for rows in finished:
                    sink.put(rows)
                tiles_done += len(done)
                stats.pixels += sum(t.core_rows.size * t.core_cols.size for t in done)
                if progress:
                    progress(tiles_done, stats.tiles, stats.pixels)
        finally:
            sink.close()
        if not stitcher.done and not stats.stopped:
            raise RuntimeError("stitcher did not finish every row")
        job.sink.flush()
    return stats
