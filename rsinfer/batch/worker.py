"""The Ray actor that segments one scene at a time, and the cleanup after one that died."""

from __future__ import annotations

import os
import signal
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import RsinferError
from ..io.outputs import OutputLock, remove
from ..pipeline import output_paths
from .inputs import Scene
from .report import SceneResult


@dataclass(frozen=True)
class SceneTask:
    scene: Scene
    attempt: int = 1
    resume: bool = False
    dead_worker: tuple[str, int] | None = None  # (host, pid) of an actor that died on this scene


class SceneWorker:
    """A Ray actor: runs one scene at a time through ``run_segment``.

    Every scene of a batch runs with the same model options, so the model is loaded by the
    first scene and kept for the others (on the actor's device, warm).
    """

    def __init__(self, segment: dict[str, Any], device: str, read_workers: int, board: Any = None):
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
        self._loaded: Any = None  # the LoadedModel, once the first scene has loaded it

    def identity(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    def run(self, task: SceneTask) -> SceneResult:
        from ..pipeline import SegmentOptions, run_segment
        from ..signals import StopRequest

        scene = task.scene
        if task.dead_worker:
            clean_after_dead_worker(scene.output, bool(self.segment.get("probs")), *task.dead_worker)
        result = SceneResult(scene.input, scene.output, "failed", worker=self.name, device=self.device, gpus=self.gpus)
        stop = StopRequest()
        caught: list[warnings.WarningMessage] = []
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
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
                report = run_segment(opts, progress=self._progress_hook(scene, stop), stop=stop, loaded=self._loaded)
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
            result.mpx_per_s = report.mpx_per_s
            result.megapixels = report.megapixels
        result.seconds = time.perf_counter() - start
        result.warnings = [str(w.message) for w in caught]
        self.reporter.report("", 0, 0, 0, force=True)  # idle
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
    scene reruns at once, on any machine) and the half-written files under its partial names.

    (:class:`OutputLock` takes over a stale lock itself only on the machine that wrote it.)
    The chunk store stays: the rerun continues it.
    """
    lock = OutputLock(output)
    holder = lock.holder()
    if holder and holder.get("host") == host and holder.get("pid") == pid:
        remove(lock.path)
    for final in output_paths(output, probs):
        remove(f"{final}.partial-{pid}")  # see rsinfer.io.outputs.partial_path


# --- the driver ------------------------------------------------------------------------
