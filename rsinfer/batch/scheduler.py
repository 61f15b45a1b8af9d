"""Handing scenes to worker actors: resources, retries with backoff, replacing dead actors."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import RsinferError
from ..signals import StopSignal
from .board import ProgressBoard, WorkerState
from .inputs import DEVICES, Scene
from .report import SceneResult
from .worker import SceneTask, SceneWorker

POLL_SECONDS = 0.2  # how often the driver reads the progress board and its stop request while scenes run


@dataclass
class BatchOptions:
    segment: dict[str, Any]  # SegmentOptions fields every scene shares (model, tile, overwrite, ...)
    device: str = "auto"  # auto: CUDA on actors with a GPU; cpu; cuda
    workers: int | None = None  # None: as many as the resources allow
    cpus_per_worker: float | None = None  # None: 1, or a GPU worker's share of its node's CPUs
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs (and device is not cpu)
    retries: int = 2
    retry_delay: float = 1.0  # seconds before the first retry, doubled for each next one
    resume: bool = False
    split: int = 0  # > 0: each scene in turn, cut into this many strips run across the workers
    # A worker starts its next scene on the model while it assembles the last one's output
    # (see SceneWorker); off: one scene per worker at a time, start to end.
    assemble_behind: bool = True


def check_options(opts: BatchOptions) -> None:
    """Refuse options that would fail every scene, once, before any work (loads the model once)."""
    from ..loading import load_model
    from ..pipeline import SegmentOptions

    if opts.device not in DEVICES:
        raise RsinferError(f"--device {opts.device}: Ray gives each worker its GPU; choose one of {', '.join(DEVICES)}")
    seg = opts.segment
    SegmentOptions(input="", output="", **seg)  # checks the choices
    if seg.get("backend") == "onnx":
        from ..extras import require_onnx

        require_onnx(export=seg.get("onnx") is None)
    loaded = load_model(
        seg.get("model"),
        seg.get("weights"),
        tile=seg.get("tile"),
        overlap=seg.get("overlap"),
        global_size=seg.get("global_size"),
    )
    loaded.set_mode(seg.get("mode"))


def worker_resources(ray: Any, opts: BatchOptions) -> tuple[float, float]:
    """(CPUs, GPUs) each actor asks Ray for."""
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    gpus = opts.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if cluster_gpus > 0 and opts.device != "cpu" else 0.0
    if opts.device == "cuda" and gpus == 0:
        raise RsinferError("--device cuda: the Ray cluster has no GPU (or --gpus-per-worker is 0)")
    cpus = opts.cpus_per_worker
    if cpus is None:
        cpus = float(gpu_worker_cpu_share(ray.nodes(), gpus)) if gpus > 0 else 1.0
    return cpus, gpus


def gpu_worker_cpu_share(nodes: Sequence[dict[str, Any]], gpus_per_worker: float) -> int:
    """CPUs each GPU worker can reserve on every GPU node: the node's CPUs shared among the
    workers its GPUs hold (at least 1). They become the worker's tile-decoding threads, which
    read ahead of the model so the GPU does not wait for the disk."""
    shares = []
    for node in nodes:
        res = node.get("Resources", {})
        if node.get("Alive", True) and res.get("GPU", 0) >= gpus_per_worker:
            slots = int(res["GPU"] / gpus_per_worker + 1e-9)
            shares.append(int(res.get("CPU", 0)) // slots)
    return max(1, min(shares, default=1))


def worker_count(ray: Any, requested: int | None, scenes: int, cpus: float, gpus: float) -> int:
    """``requested`` actors, or as many as the cluster's resources hold; never more than the scenes."""
    if requested:
        return max(1, min(requested, scenes))
    total = ray.cluster_resources()
    fit = int(total.get("CPU", 0) / cpus + 1e-9) if cpus > 0 else scenes
    if gpus > 0:
        fit = min(fit, int(total.get("GPU", 0) / gpus + 1e-9))
    if fit < 1:
        raise RsinferError(
            f"no worker fits: the Ray cluster has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs, "
            f"a worker asks for {cpus:g} and {gpus:g} (--cpus-per-worker, --gpus-per-worker)"
        )
    return min(fit, scenes)


@dataclass(eq=False)
class _Worker:
    actor: Any
    identity: Any  # ObjectRef of (host, pid), asked at creation
    running: int = 0  # scenes handed to it and not yet collected
    dead: bool = False


class _Scheduler:
    """Scenes to actors; failures retried with backoff; dead actors replaced.

    Each actor has ``slots`` places for scenes (two with ``assemble_behind``: one on the
    model, one assembling; see :class:`SceneWorker`). Scenes go to the actor with the fewest
    first, so a second place is used only when every actor already has a scene.
    """

    def __init__(self, ray: Any, scenes: Sequence[Scene], opts: BatchOptions, on_result, on_progress=None, stop=None):
        self.ray = ray
        self.stop = stop
        self.scenes = scenes
        self.opts = opts
        self.on_result = on_result
        self.on_progress = on_progress
        cpus, gpus = worker_resources(ray, opts)
        self.count = worker_count(ray, opts.workers, len(scenes), cpus, gpus)
        self.board = ray.remote(ProgressBoard).options(num_cpus=0).remote() if on_progress else None
        # No Ray restarts or task retries: the driver retries, with backoff and a fresh actor.
        self.slots = SceneWorker.SLOTS if opts.assemble_behind else 1
        self.actor_class = ray.remote(SceneWorker).options(
            num_cpus=cpus, num_gpus=gpus, max_restarts=0, max_concurrency=self.slots
        )
        self.actor_args = (opts.segment, opts.device, max(1, int(cpus)), self.board, opts.assemble_behind)
        # (ready at, order, task): a heap, so a short retry delay is not stuck behind a long one.
        self._order = itertools.count()
        self.queue: list[tuple[float, int, SceneTask]] = [
            (0.0, next(self._order), SceneTask(s, resume=opts.resume)) for s in scenes
        ]
        self.workers: list[_Worker] = []  # alive, with or without scenes
        self.running: dict[Any, tuple[_Worker, SceneTask]] = {}
        self.results: dict[Scene, SceneResult] = {}

    def run(self) -> list[SceneResult]:
        try:
            self.workers = [self._new_worker() for _ in range(self.count)]
            while self.queue or self.running:
                self._check_stop()
                self._dispatch()
                timeout = self._next_retry_in() if self._free() else None
                if not self.running:
                    time.sleep(min(timeout or 0.0, POLL_SECONDS))
                    continue
                if self.board is not None or self.stop is not None:
                    timeout = POLL_SECONDS if timeout is None else min(timeout, POLL_SECONDS)
                done, _ = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
                for ref in done:
                    self._collect(ref)
                self._show_progress()
                self._check_stop()
        except BaseException:
            self._cancel_running()
            raise
        finally:
            for w in self.workers:
                self.ray.kill(w.actor, no_restart=True)
            if self.board is not None:
                self.ray.kill(self.board, no_restart=True)
        return [self.results[s] for s in self.scenes]

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise StopSignal(self.stop.signum)

    def _show_progress(self) -> None:
        if self.board is None or self.on_progress is None:
            return
        try:
            states: list[WorkerState] = self.ray.get(self.board.snapshot.remote(), timeout=2)
        except self.ray.exceptions.RayError:  # a slow or lost board costs the display, not the batch
            return
        self.on_progress(states)

    def _new_worker(self) -> _Worker:
        actor = self.actor_class.remote(*self.actor_args)
        return _Worker(actor, actor.identity.remote())

    def _free(self) -> list[_Worker]:
        """Actors with a free place, those with fewest scenes first."""
        return sorted((w for w in self.workers if w.running < self.slots), key=lambda w: w.running)

    def _dispatch(self) -> None:
        now = time.monotonic()
        if self.queue and not self.workers:  # every actor gone: one more
            self.workers.append(self._new_worker())
        while self.queue and self.queue[0][0] <= now and (free := self._free()):
            _, _, task = heapq.heappop(self.queue)
            worker = free[0]
            worker.running += 1
            self.running[worker.actor.run.remote(task)] = (worker, task)
        if not self.queue:  # nothing more to hand out: free what idle actors hold
            for w in [w for w in self.workers if w.running == 0]:
                self.ray.kill(w.actor, no_restart=True)
                self.workers.remove(w)

    def _next_retry_in(self) -> float | None:
        if not self.queue:
            return None
        return max(0.0, self.queue[0][0] - time.monotonic())

    def _collect(self, ref: Any) -> None:
        ray = self.ray
        worker, task = self.running.pop(ref)
        worker.running -= 1
        try:
            result: SceneResult = ray.get(ref)
        except ray.exceptions.RayActorError as err:  # the process died: the scene gets a new actor
            dead = self._identity(worker)
            result = SceneResult(
                task.scene.input,
                task.scene.output,
                "failed",
                error=f"{task.scene.input}: worker {_name(dead)} died ({_first_line(err)})",
                worker=_name(dead),
                retry=True,
            )
            task = SceneTask(task.scene, task.attempt, task.resume, dead)
            if not worker.dead:  # its other scene, if any, fails alike: one replacement
                worker.dead = True
                self.workers.remove(worker)
                if self.board is not None and dead is not None:
                    self.board.forget.remote(_name(dead))
                if self.queue or task.attempt <= self.opts.retries:
                    self.workers.append(self._new_worker())
        except ray.exceptions.RayError as err:  # Ray could not run the method (the actor may live on)
            result = SceneResult(task.scene.input, task.scene.output, "failed", error=_first_line(err), retry=True)
        result.attempts = task.attempt
        if result.status == "failed" and result.retry and task.attempt <= self.opts.retries:
            delay = self.opts.retry_delay * 2 ** (task.attempt - 1)
            # A dead actor leaves its partial store: the retry continues it, which gives the bytes
            # of one uninterrupted run (after other failures run_segment has removed the store).
            retry = SceneTask(task.scene, task.attempt + 1, True, task.dead_worker)
            heapq.heappush(self.queue, (time.monotonic() + delay, next(self._order), retry))
            return
        self.results[task.scene] = result
        if self.on_result:
            self.on_result(result)

    def _identity(self, worker: _Worker) -> tuple[str, int] | None:
        try:
            host, pid = self.ray.get(worker.identity, timeout=5)
            return str(host), int(pid)
        except Exception:  # it died before answering
            return None

    def _cancel_running(self, grace: float = 10.0) -> None:
        """Ask running scenes to stop between batches (their partial stores are kept for --resume)."""
        refs = list(self.running)
        try:
            for ref in refs:
                self.ray.cancel(ref)
            if refs:
                self.ray.wait(refs, num_returns=len(refs), timeout=grace)
        except BaseException:  # a second Ctrl-C, or Ray already gone: the actors are killed next
            pass


def _name(identity: tuple[str, int] | None) -> str:
    return f"{identity[0]}:{identity[1]}" if identity else "?"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def run_batch(
    ray: Any,
    scenes: Sequence[Scene],
    opts: BatchOptions,
    on_result: Callable[[SceneResult], None] | None = None,
    on_progress: Callable[[list[WorkerState]], None] | None = None,
    stop: Any = None,
) -> tuple[list[SceneResult], int]:
    """Run ``scenes`` on Ray actors; their results in the order of ``scenes``, and the actor count.

    ``on_result`` is called as each scene ends (retries included in it); ``on_progress``
    with every worker's state, a few times a second while scenes run. With ``opts.split``
    each scene in turn is cut into strips across the workers (:func:`run_split`). When
    ``stop`` (a :class:`~rsinfer.signals.StopRequest`) is set, running scenes are cancelled
    (they keep their finished rows) and :class:`~rsinfer.signals.StopSignal` is raised.
    """
    if not scenes:
        return [], 0
    if opts.split:
        return run_split(ray, scenes, opts, on_result, stop), opts.split
    scheduler = _Scheduler(ray, scenes, opts, on_result, on_progress, stop)
    return scheduler.run(), scheduler.count


def run_split(
    ray: Any,
    scenes: Sequence[Scene],
    opts: BatchOptions,
    on_result: Callable[[SceneResult], None] | None = None,
    stop: Any = None,
) -> list[SceneResult]:
    """``batch --split``: scenes one after another, each one's rows cut into ``opts.split``
    strips run as Ray tasks (:func:`rsinfer.distributed.run_segment_distributed`), for a few
    scenes too big for one worker. Ray reruns a strip whose worker died (``opts.retries`` times)."""
    from ..distributed import run_segment_distributed
    from ..pipeline import JobInterrupted, SegmentOptions

    cpus, gpus = worker_resources(ray, opts)
    results = []
    for scene in scenes:
        result = SceneResult(scene.input, scene.output, "failed", worker=f"{opts.split} strips", attempts=1)
        start = time.perf_counter()
        try:
            seg = SegmentOptions(
                input=scene.input,
                output=scene.output,
                device="cpu" if opts.device == "cpu" or not gpus else "cuda",
                resume=opts.resume,
                **opts.segment,
            )
            report = run_segment_distributed(
                seg, opts.split, cpus_per_worker=cpus, gpus_per_worker=gpus, retries=opts.retries, stop=stop
            )
        except JobInterrupted:  # a stop signal: the batch ends here, this scene keeps its rows
            assert stop is not None and stop.signum is not None
            raise StopSignal(stop.signum) from None
        except RsinferError as err:
            result.error = err.args[0] if err.args else str(err)
        except ray.exceptions.RayError as err:
            result.error = f"{scene.input}: {_first_line(err)}"
        else:
            result.status = "ok"
            result.device, result.tiles = report.device, report.tiles
            result.mpx_per_s, result.megapixels = report.mpx_per_s, report.megapixels
        result.seconds = time.perf_counter() - start
        results.append(result)
        if on_result:
            on_result(result)
    return results
