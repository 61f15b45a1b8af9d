"""The Ray actor that segments one scene at a time, and the cleanup after one that died."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import RsinferError
from ..io.outputs import OutputLock, remove
from ..io.writers import dead_writer_files
from ..pipeline import output_paths
from .inputs import Scene
from .report import SceneResult


@dataclass(frozen=True)
class SceneTask:
    scene: Scene
    attempt: int = 1
    resume: bool = False
    dead_worker: tuple[str, int] | None = None  # (host, pid) of an actor that died on this scene


class ThreadWarnings:
    """Warnings recorded per thread: ``warnings.catch_warnings`` is process-wide, and an actor
    runs two scenes at once (one on the model, one being assembled). Outside a
    :meth:`recording` block a warning is shown as usual."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._show = warnings.showwarning
        warnings.simplefilter("always")  # each scene records its own; repeats are dropped below
        warnings.showwarning = self._record

    def _record(self, message, category, filename, lineno, file=None, line=None) -> None:
        caught = getattr(self._local, "caught", None)
        if caught is None:
            self._show(message, category, filename, lineno, file, line)
        elif str(message) not in caught:
            caught.append(str(message))

    @contextlib.contextmanager
    def recording(self, caught: list[str]) -> Iterator[list[str]]:
        self._local.caught = caught
        try:
            yield caught
        finally:
            self._local.caught = None


class SceneWorker:
    """A Ray actor: runs scenes through ``run_segment``, one at a time on the model.

    Every scene of a batch runs with the same model options, so the model is loaded by the
    first scene and kept for the others (on the actor's device, warm).

    With ``assemble_behind`` the actor takes two scenes at once (Ray's ``max_concurrency``
    is :data:`SLOTS`): a scene's GeoTIFF is assembled from its finished chunk store (GDAL's
    COG copy with overviews, single-threaded, seconds per 100 Mpx) on one thread while the
    next scene already runs on the model on the other, so the device does not wait for it.
    """

    SLOTS = 2  # scenes an actor holds with assemble_behind: one on the model, one assembling

    def __init__(
        self, segment: dict[str, Any], device: str, read_workers: int, board: Any = None, assemble_behind: bool = False
    ):
        import ray

        from .board import Reporter

        self.segment = segment
        # Reader threads decode the next tiles ahead of the model (a bounded queue), one per
        # CPU this actor reserved: that is what keeps its GPU fed.
        self.read_workers = read_workers
        # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPUs (two actors may share one).
        self.gpus = ",".join(str(g) for g in ray.get_gpu_ids())
        self.device = "cpu" if device == "cpu" or (device == "auto" and not self.gpus) else "cuda"
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.reporter = Reporter(board, self.name, self.device)
        self.assemble_behind = assemble_behind
        self._model = threading.Lock()  # held by the scene on the model
        self._warnings = ThreadWarnings()
        self._loaded: Any = None  # the LoadedModel, once the first scene has loaded it

    def identity(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    def run(self, task: SceneTask) -> SceneResult:
        from ..pipeline import SegmentOptions, assemble_output, run_segment
        from ..signals import StopRequest

        scene = task.scene
        result = SceneResult(scene.input, scene.output, "failed", worker=self.name, device=self.device, gpus=self.gpus)
        stop = StopRequest()
        start = time.perf_counter()
        try:
            with self._warnings.recording(result.warnings):
                with self._model:  # a second scene waits here while the first is on the model
                    start = time.perf_counter()  # the scene's time: on the model, then assembling
                    got_model = time.time()
                    if task.dead_worker:
                        clean_after_dead_worker(scene.output, bool(self.segment.get("probs")), *task.dead_worker)
                    opts = SegmentOptions(
                        input=scene.input,
                        output=scene.output,
                        device=self.device,
                        read_workers=self.read_workers,
                        resume=task.resume,
                        **self.segment,
                    )
                    _check_cuda(self.device, self.gpus)
                    if self._loaded is None:
                        from ..loading import load_model

                        self._loaded = load_model(
                            opts.model, opts.weights, tile=opts.tile, overlap=opts.overlap, global_size=opts.global_size
                        )
                    progress = self._progress_hook(scene, stop)
                    report = run_segment(
                        opts, progress=progress, stop=stop, loaded=self._loaded, assemble=not self.assemble_behind
                    )
                    self.reporter.report("", 0, 0, 0, force=True)  # the model is free
                    result.on_model = (got_model, time.time())
                if self.assemble_behind:  # beside the next scene's inference
                    assemble_output(opts, self._loaded)
        except RsinferError as err:  # bad input, an unwritable output: another attempt would fail alike
            result.error = _naming(scene.input, str(err))
        except Exception as err:  # anything else may pass (a CUDA error, a network file system)
            text = str(err).strip()
            result.error = _naming(scene.input, f"{type(err).__name__}: {text.splitlines()[0] if text else ''}")
            result.retry = True
        else:
            result.status = "ok"
            result.device = report.device
            result.tiles = report.tiles
            result.megapixels = report.megapixels
        result.seconds = time.perf_counter() - start
        result.ended = time.time()
        if result.status == "ok":
            result.mpx_per_s = result.megapixels / result.seconds if result.seconds > 0 else None
        return result

    def _progress_hook(self, scene: Scene, stop: Any) -> Callable[[int, int, int], None]:
        """Between batches: report progress, and stop cleanly when the driver cancels
        (the partial store is kept for --resume)."""
        import ray

        context = ray.get_runtime_context()

        def progress(done: int, total: int, pixels: int) -> None:
            self.reporter.report(scene.input, done, total, pixels)
            if context.is_canceled():
                stop.set(signal.SIGINT)

        return progress


def _check_cuda(device: str, gpus: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RsinferError(
                f"Ray gave this worker GPU {gpus or '?'} but torch sees no CUDA device "
                "(a CPU build of torch, or a driver problem); run with --device cpu to use the CPUs"
            )


def _naming(input: str, message: str) -> str:
    """The message, prefixed with the input unless it names it already."""
    return message if os.path.basename(input) in message else f"{input}: {message}"


def clean_after_dead_worker(output: str, probs: bool, host: str, pid: int) -> None:
    """Remove what a worker that died on this scene left beside its outputs: its lock (so the
    scene reruns at once, on any machine) and its half-written files (:func:`dead_writer_files`).

    (:class:`OutputLock` takes over a stale lock itself only on the machine that wrote it.)
    The chunk store stays: the rerun continues it.
    """
    lock = OutputLock(output)
    holder = lock.holder()
    if holder and holder.get("host") == host and holder.get("pid") == pid:
        remove(lock.path)
    for leftover in dead_writer_files(output_paths(output, probs), pid):
        remove(leftover)


# --- the driver ------------------------------------------------------------------------
