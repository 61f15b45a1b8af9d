"""The host ceiling: the whole ``segment`` pipeline with a zero-cost model against raw decoding.

    rsinfer bench pipeline --size 8000 --tile 512 --overlap 64 --read-workers 2

A model that does no arithmetic (:class:`ZeroCostModel`: a broadcast view of the input as
N class scores) leaves only what the host does around the model: reading and decoding,
batching, normalization and padding, the activation, stitching, writing. Its throughput is
the most any real model can reach through the pipeline on this machine. It is set against
plain threaded decoding of the same windows (rasterio, same thread count, same GDAL cache)
measured in the same run, so that other load on the machine weighs on both: the ratio
``pipeline / decode`` is the figure to quote, not either speed alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import rasterio
import torch
import torch.nn as nn


class ZeroCostModel(nn.Module):
    """Logits with no arithmetic: the first input band, broadcast (a view) to ``classes`` channels."""

    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1].expand(-1, self.classes, -1, -1)


def zero_cost_loaded(tile: int, overlap: int):
    """A :class:`~rsinfer.loading.LoadedModel` of :class:`ZeroCostModel` with the default model's classes."""
    from rsinfer.loading import LoadedModel
    from rsinfer.models import ModelConfig

    config = ModelConfig(name="zero-cost", description="no arithmetic (host ceiling)", tile=tile, overlap=overlap)
    return LoadedModel(config, ZeroCostModel(config.num_classes).eval(), "random")


def make_scene(path: Path, size: int, seed: int = 1) -> Path:
    """A ``size``² tiled (512 px blocks), deflate-compressed synthetic RGB orthophoto, made once."""
    from rsinfer.synth import write_synthetic_scene

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        labels = path.with_name(path.stem + "_labels.tif")
        write_synthetic_scene(str(path), str(labels), size, size, seed=seed, block=512, compress="deflate")
        labels.unlink(missing_ok=True)
    return path


def decode_seconds(path: str, tile: int, overlap: int, workers: int) -> float:
    """Seconds to decode every tile window of the grid (all bands) on ``workers`` threads.

    Each thread holds its own dataset handle, windows are taken in grid order, under the
    GDAL block cache the pipeline uses: what the pipeline's reader does, and nothing else.
    """
    from rsinfer.io.reader import gdal_cache_mb
    from rsinfer.io.source import inspect_raster
    from rsinfer.tiling import TileGrid

    info = inspect_raster(path, ("red", "green", "blue"), None, 255.0, None)
    grid = TileGrid(info.height, info.width, tile, overlap)
    local = threading.local()
    handles: list = []
    lock = threading.Lock()

    def read(t) -> int:
        ds = getattr(local, "ds", None)
        if ds is None:
            ds = local.ds = rasterio.open(path)
            with lock:
                handles.append(ds)
        return int(ds.read(window=t.window).shape[-1])

    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb(info, tile, 0)):
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(read, grid):
                pass
        seconds = time.perf_counter() - start
    for ds in handles:
        ds.close()
    return seconds


def pipeline_seconds(
    path: str, out: str, tile: int, overlap: int, workers: int, batch: int, device: str, blend: str = "crop"
) -> float:
    """Seconds of one ``segment`` run of the zero-cost model (output written and committed)."""
    from rsinfer.pipeline import SegmentOptions, run_segment

    loaded = zero_cost_loaded(tile, overlap)
    opts = SegmentOptions(
        input=path,
        output=out,
        batch_size=batch,
        device=device,
        read_workers=workers,
        blend=blend,  # type: ignore[arg-type]
        overwrite=True,
        keep_partial=False,
    )
    start = time.perf_counter()
    run_segment(opts, loaded=loaded)
    return time.perf_counter() - start


@dataclass
class CeilingResult:
    size: int
    tile: int
    overlap: int
    read_workers: int
    batch: int
    device: str
    output_format: str
    pipeline_s: float
    decode_s: float

    @property
    def megapixels(self) -> float:
        return self.size * self.size / 1e6

    def row(self) -> dict:
        pipe, dec = self.megapixels / self.pipeline_s, self.megapixels / self.decode_s
        return dict(
            size=self.size,
            tile=self.tile,
            overlap=self.overlap,
            read_workers=self.read_workers,
            batch=self.batch,
            device=self.device,
            output=self.output_format,
            pipeline_s=round(self.pipeline_s, 4),
            decode_s=round(self.decode_s, 4),
            pipeline_mpx_s=round(pipe, 2),
            decode_mpx_s=round(dec, 2),
            ratio=round(pipe / dec, 3),
        )


def host_ceiling(
    size: int = 8000,
    tile: int = 512,
    overlap: int = 64,
    read_workers: int = 2,
    batch: int = 4,
    device: str = "cpu",
    workdir: str = "bench-data",
    output_format: str = "tif",
    repeats: int = 1,
) -> CeilingResult:
    """Decode and pipeline of the same scene in one run; the best of ``repeats`` of each."""
    scene = make_scene(Path(workdir) / f"ceiling-{size}.tif", size)
    out_dir = tempfile.mkdtemp(prefix="rsinfer-ceiling-", dir=workdir)
    try:
        out = os.path.join(out_dir, f"labels.{'zarr' if output_format == 'zarr' else 'tif'}")
        # Warm the file into the page cache so neither side pays the first read from disk.
        decode_seconds(str(scene), tile, overlap, read_workers)
        dec, pipe = [], []
        for _ in range(repeats):
            # Decoding brackets the pipeline, and the two decodes are averaged: load from other
            # processes that comes or goes during the run weighs on both sides alike.
            before = decode_seconds(str(scene), tile, overlap, read_workers)
            pipe.append(pipeline_seconds(str(scene), out, tile, overlap, read_workers, batch, device))
            dec.append((before + decode_seconds(str(scene), tile, overlap, read_workers)) / 2)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return CeilingResult(size, tile, overlap, read_workers, batch, device, output_format, min(pipe), min(dec))
