"""One raster across several workers: strips of whole chunk rows, filled by Ray tasks into one store.

The driver claims the output and creates its chunk store (as ``segment`` does), cuts the
rows still to do into strips of whole output-chunk rows, and hands each strip to a Ray task.
A task loads the model, runs the job for its strip (reading the halo of tile rows its
strip needs) and writes its chunks straight into the store; the driver alone records each
finished strip in the store's completion record. When every strip is in, the driver makes
the final output from the store. Every pixel is computed by the same tiles, in the same
order, as in one process, so the output is byte-identical to ``segment``'s; global-local
models see the same regions and global views whatever the split.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, replace

import rasterio

from .backends import resolve_device
from .backends.factory import backend_label, make_backend
from .batching import BatchSize
from .io.writers import open_writer
from .io.zarr_writer import record_completed
from .job import JobStats, ProgressFn, StopFlag, run_job
from .memory import peak_rss_mb
from .pipeline import (
    JobInterrupted,
    SegmentOptions,
    SegmentReport,
    choose_batch_size,
    claimed_output,
    finish_from_store,
    prepare_segment,
)
from .predictors import make_predictor
from .ray_runtime import ray_session
from .tiling import Span


def stop_name(stop: StopFlag) -> str:
    signum = getattr(stop, "signum", None)
    return signal.Signals(signum).name if signum else "a signal"


def strips(rows: Span, chunk: int, parts: int) -> list[Span]:
    """``rows`` cut into at most ``parts`` strips of whole chunk rows (the last may end on the raster's edge)."""
    first = rows.start // chunk
    chunks = -(-(rows.stop - first * chunk) // chunk)
    parts = max(1, min(parts, chunks))
    bounds = [first + round(i * chunks / parts) for i in range(parts + 1)]
    return [Span(max(rows.start, a * chunk), min(rows.stop, b * chunk)) for a, b in zip(bounds, bounds[1:]) if b > a]


@dataclass
class StripResult:
    rows: Span
    tiles_predicted: int
    tiles_skipped: int
    model_calls: int
    device: str
    backend: str


def fill_strip(opts: SegmentOptions, rows: Span) -> StripResult:
    """Run ``rows`` of the job into its existing chunk store (in a Ray task, or any process)."""
    setup = prepare_segment(opts, check_outputs_first=False)
    loaded, info, grid = setup.loaded, setup.info, setup.grid
    device = resolve_device(opts.device)
    backend = make_backend(loaded, opts.backend, device, info.value_scale, opts.precision, opts.onnx, setup.mode)
    predictor = make_predictor(loaded, backend, info, grid, setup.mode)
    batch_size = BatchSize(choose_batch_size(opts.batch_size, opts.max_gpu_mem, predictor, grid, info))
    with rasterio.Env(GDAL_CACHEMAX=setup.gdal_cache_mb):
        with open_writer(setup.store_spec, "update", record_progress=False) as writer:
            stats: JobStats = run_job(setup.job(predictor, writer, rows, batch_size=batch_size))
            writer.close()
    return StripResult(rows, backend.tiles, stats.tiles_skipped, backend.calls, str(device), backend_label(backend))


def run_segment_distributed(
    opts: SegmentOptions,
    workers: int,
    address: str | None = None,
    progress: ProgressFn | None = None,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float = 1.0,
    retries: int = 2,
    stop: StopFlag | None = None,
) -> SegmentReport:
    """``segment`` with the rows split into ``workers`` strips, each a Ray task; the same output
    bytes as :func:`run_segment`. Ray reruns a strip whose worker died, ``retries`` times.

    When ``stop`` is set (a signal), the strips still running are cancelled and the run ends
    with :class:`JobInterrupted`: the strips already in stay recorded for ``--resume``.
    """
    start = time.perf_counter()
    setup = prepare_segment(opts)
    info, chunk = setup.info, setup.spec.chunk
    if gpus_per_worker is None:  # segment --distributed: GPUs when this machine has them
        gpus_per_worker = 1.0 if resolve_device(opts.device).type == "cuda" else 0.0
    gpus = gpus_per_worker
    results: list[StripResult] = []
    # Workers take one device each; the driver passes no device index, so each uses its own.
    task_opts = replace(opts, device="cuda" if gpus else "cpu", read_workers=max(1, int(cpus_per_worker)))
    with rasterio.Env(GDAL_CACHEMAX=setup.gdal_cache_mb), claimed_output(setup) as first_row:
        todo = strips(Span(first_row, info.height), chunk, workers) if first_row < info.height else []
        with ray_session(address, num_cpus=None) as ray:
            task = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus, max_retries=retries)(fill_strip)
            pending = {task.remote(task_opts, rows): rows for rows in todo}
            rows_done = 0
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                    if stop is not None and stop.is_set():
                        raise JobInterrupted(
                            f"stopped by {stop_name(stop)}: {rows_done} of {info.height - first_row} rows done, "
                            "kept for --resume",
                            128 + (getattr(stop, "signum", None) or signal.SIGINT),
                        )
                    if not ready:
                        continue
                    result: StripResult = ray.get(ready[0])
                    del pending[ready[0]]
                    record_completed(setup.store_spec.path, result.rows)
                    results.append(result)
                    rows_done += result.rows.size
                    if progress:  # in tiles, as segment counts them: the share of rows done
                        total = len(setup.grid)
                        progress(round(total * rows_done / info.height), total, rows_done * info.width)
            except BaseException:
                # No strip may write into the store once this run gives it up (or removes it).
                for ref in pending:
                    ray.cancel(ref, force=True)
                if pending:
                    ray.wait(list(pending), num_returns=len(pending), timeout=30)
                raise
        finish_from_store(setup)
    return SegmentReport(
        input=info.path,
        outputs=setup.finals,
        model=setup.loaded.name,
        device=results[0].device if results else task_opts.device,
        width=info.width,
        height=info.height,
        tiles=len(setup.grid),
        tiles_predicted=sum(r.tiles_predicted for r in results),
        tiles_skipped=sum(r.tiles_skipped for r in results),
        model_calls=sum(r.model_calls for r in results),
        seconds=time.perf_counter() - start,
        peak_rss_mb=peak_rss_mb(),
        backend=f"{results[0].backend if results else 'torch'} on {len(todo)} Ray workers",
        completed_rows=[(0, info.height)],
        weights=setup.loaded.weights,
        resumed_from_row=first_row,
    )
