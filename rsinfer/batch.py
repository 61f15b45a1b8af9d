"""``rsinfer batch``: many scenes, each one :func:`~rsinfer.pipeline.run_segment`, on Ray actors.

The driver resolves the inputs to scenes and their outputs (:func:`resolve_inputs`) and
decides what each scene needs (:func:`plan_batch`) before any work, so a name clash or an
output in the way stops the batch before it starts. :func:`run_batch` hands the scenes one
at a time to :class:`SceneWorker` actors, retries failures with exponential backoff,
replaces actors that die, and returns one :class:`SceneResult` per scene, which
:func:`write_report` writes as JSON and CSV.

Ray is passed in by the caller (see :mod:`rsinfer.ray_runtime`), so this module imports
without it.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import signal
import socket
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import InputError, RsinferError
from .io.outputs import OutputLock, atomic_outputs, describe_os_error, remove
from .partial import store_path
from .pipeline import output_paths

RASTER_SUFFIXES = (".tif", ".tiff")
MANIFEST_SUFFIXES = (".txt", ".csv")
OUTPUT_SUFFIXES = (".tif", ".tiff", ".zarr")
FORMATS = ("tif", "zarr")
DEVICES = ("auto", "cpu", "cuda")
MANIFEST_HEADERS = ("input", "path", "file", "scene")
# Tests only: a file naming one input (its file name); the actor running that scene exits
# mid-scene once (the file is removed as it does), as a crashed or killed worker would.
CRASH_HOOK = "RSINFER_BATCH_TEST_CRASH"

Status = Literal["ok", "failed", "skipped"]
REPORT_FIELDS = ("input", "output", "status", "error", "seconds", "mpx_per_s", "tiles", "worker", "device", "attempts")


@dataclass(frozen=True)
class Scene:
    """One input raster and its label map (absolute paths: actors may run elsewhere)."""

    input: str
    output: str


# --- inputs ----------------------------------------------------------------------------


def resolve_inputs(
    inputs: Sequence[str], outdir: str, fmt: str = "tif", manifest: str | None = None, probs: bool = False
) -> list[Scene]:
    """Files, globs (sorted), folders (their *.tif/*.tiff, sorted) and manifests, in the order
    given (``manifest`` last), as scenes writing ``outdir/<stem>.<fmt>`` or the manifest's names.

    Every input must exist, and no two scenes may write one file: both are checked here,
    before any work.
    """
    if fmt not in FORMATS:
        raise RsinferError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    entries: list[tuple[str, str | None]] = []
    for item in inputs:
        entries += _expand(item)
    if manifest:
        entries += read_manifest(manifest)
    if not entries:
        raise InputError("no scenes: give files, globs, folders or a manifest")
    outdir = os.path.abspath(os.path.expanduser(outdir))
    scenes = [Scene(os.path.abspath(inp), os.path.join(outdir, output_name(inp, name, fmt))) for inp, name in entries]
    check_clashes(scenes, probs)
    return scenes


def _expand(item: str) -> list[tuple[str, str | None]]:
    path = os.path.expanduser(item)
    if path.lower().endswith(MANIFEST_SUFFIXES) and os.path.isfile(path):
        return read_manifest(path)
    if os.path.isdir(path):
        return [(p, None) for p in folder_rasters(path)]
    if os.path.isfile(path):  # before globbing: a file may have [ ] in its name
        return [(path, None)]
    if any(c in path for c in "*?["):
        matches = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not matches:
            raise InputError(f"{item}: matches no file")
        return [(p, None) for p in matches]
    raise InputError(f"{item}: no such file or folder")


def folder_rasters(folder: str) -> list[str]:
    """The folder's *.tif/*.tiff files (not its subfolders'), sorted by name."""
    names = sorted(
        n for n in os.listdir(folder) if n.lower().endswith(RASTER_SUFFIXES) and os.path.isfile(os.path.join(folder, n))
    )
    if not names:
        raise InputError(f"{folder}: no .tif or .tiff files in this folder")
    return [os.path.join(folder, n) for n in names]


def read_manifest(path: str) -> list[tuple[str, str | None]]:
    """A manifest's scenes: one input per line, optionally a CSV second column with the output name.

    Relative inputs are relative to the manifest's folder; blank lines, ``#`` comments and a
    header row (``input,output``) are skipped.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a BOM from spreadsheet exports
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the manifest ({describe_os_error(err)})") from None
    base = os.path.dirname(os.path.abspath(path))
    entries: list[tuple[str, str | None]] = []
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        cells = [c.strip() for c in row]
        while cells and not cells[-1]:
            cells.pop()
        if not cells or cells[0].startswith("#"):
            continue
        where = f"{path}, line {reader.line_num}"
        inp = os.path.join(base, os.path.expanduser(cells[0]))  # an absolute path stays as it is
        if not entries and cells[0].lower() in MANIFEST_HEADERS and not os.path.exists(inp):
            continue
        if len(cells) > 2:
            raise InputError(f"{where}: expected 'input' or 'input,output name', found {len(cells)} columns")
        if not os.path.isfile(inp):
            raise InputError(f"{where}: {cells[0]}: no such file")
        entries.append((inp, cells[1] if len(cells) == 2 else None))
    if not entries:
        raise InputError(f"{path}: the manifest lists no scene")
    return entries


def output_name(input: str, name: str | None, fmt: str) -> str:
    """``<stem>.<fmt>``, or a manifest's name (``.<fmt>`` added unless it ends .tif/.tiff/.zarr)."""
    if name is None:
        return f"{Path(input).stem}.{fmt}"
    if os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise InputError(f"output name {name!r} for {input}: give a file name, not a path (outputs go in -o)")
    return name if name.lower().endswith(OUTPUT_SUFFIXES) else f"{name}.{fmt}"


def check_clashes(scenes: Sequence[Scene], probs: bool) -> None:
    """Refuse an input given twice, two scenes writing one file, and an output that is an input."""
    inputs = {os.path.realpath(s.input): s.input for s in scenes}
    writer: dict[str, str] = {}
    seen: set[str] = set()
    for s in scenes:
        if s.input in seen:
            raise RsinferError(f"{s.input}: given twice")
        seen.add(s.input)
        for out in [*output_paths(s.output, probs), store_path(s.output)]:
            if os.path.realpath(out) in inputs:
                raise RsinferError(
                    f"{out}: this output is the input {inputs[os.path.realpath(out)]}; choose another -o"
                )
            other = writer.setdefault(out, s.input)
            if other != s.input:
                raise RsinferError(
                    f"{out}: written by two inputs, {other} and {s.input}; rename one, or name the outputs "
                    "in a manifest (second column)"
                )


# --- the plan --------------------------------------------------------------------------


@dataclass
class Plan:
    run: list[Scene]
    skip: list[Scene]  # finished by an earlier run (--resume)


def plan_batch(scenes: Sequence[Scene], probs: bool, overwrite: bool, resume: bool) -> Plan:
    """What each scene needs, under the output policy of ``segment``, decided before any work.

    With ``resume`` a scene whose outputs all exist is skipped and one with a partial store
    is continued; otherwise existing outputs or stores are refused unless ``overwrite``.
    """
    plan = Plan([], [])
    refused: list[str] = []
    for s in scenes:
        finals = output_paths(s.output, probs)
        existing = [p for p in finals if os.path.lexists(p)]
        partial = os.path.lexists(store_path(s.output))
        if resume and len(existing) == len(finals) and not partial:
            plan.skip.append(s)
        elif existing and not overwrite:
            refused.append(f"{existing[0]}: output exists")
        elif partial and not (resume or overwrite):
            refused.append(f"{store_path(s.output)}: partial output of an interrupted run")
        else:
            plan.run.append(s)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise RsinferError(
            f"{refused[0]}{more}; pass --resume to skip finished scenes and continue interrupted ones, "
            "or --overwrite to start them over"
        )
    return plan


# --- the worker ------------------------------------------------------------------------


@dataclass
class SceneResult:
    """One row of the report; ``retry``, ``megapixels`` and ``warnings`` stay out of it."""

    input: str
    output: str
    status: Status
    error: str | None = None
    seconds: float = 0.0
    mpx_per_s: float | None = None
    tiles: int | None = None
    worker: str = ""
    device: str = ""
    attempts: int = 0
    retry: bool = False  # a failure another attempt may fix (not bad input)
    megapixels: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        row = {k: v for k, v in asdict(self).items() if k in REPORT_FIELDS}
        row["seconds"] = round(self.seconds, 3)
        row["mpx_per_s"] = None if self.mpx_per_s is None else round(self.mpx_per_s, 3)
        return row


@dataclass(frozen=True)
class SceneTask:
    scene: Scene
    attempt: int = 1
    resume: bool = False
    dead_worker: tuple[str, int] | None = None  # (host, pid) of an actor that died on this scene


class SceneWorker:
    """A Ray actor: runs one scene at a time through ``run_segment``.

    Nothing is kept between scenes but the process: the model is loaded for each scene.
    """

    def __init__(self, segment: dict[str, Any], device: str, read_workers: int):
        import ray

        self.segment = segment
        self.read_workers = read_workers
        has_gpu = bool(ray.get_gpu_ids())  # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPUs
        self.device = "cpu" if device == "cpu" or (device == "auto" and not has_gpu) else "cuda"
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def identity(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    def run(self, task: SceneTask) -> SceneResult:
        from .pipeline import SegmentOptions, run_segment
        from .signals import StopRequest

        scene = task.scene
        if task.dead_worker:
            clean_after_dead_worker(scene.output, bool(self.segment.get("probs")), *task.dead_worker)
        result = SceneResult(scene.input, scene.output, "failed", worker=self.name, device=self.device)
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
                report = run_segment(opts, progress=_progress_hook(scene, stop), stop=stop)
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
        return result


def _naming(input: str, message: str) -> str:
    """The message, prefixed with the input unless it names it already."""
    return message if os.path.basename(input) in message else f"{input}: {message}"


def _progress_hook(scene: Scene, stop: Any) -> Callable[[int, int, int], None]:
    """Between batches: stop cleanly when the driver cancels (the partial store is kept for --resume)."""
    import ray

    context = ray.get_runtime_context()
    crash = _crash_marker(scene)

    def progress(done: int, total: int, pixels: int) -> None:
        if context.is_canceled():
            stop.set(signal.SIGINT)
        if crash and done >= 1:
            try:
                os.remove(crash)  # the one crash this marker asks for
            except FileNotFoundError:
                return
            os._exit(1)

    return progress


def _crash_marker(scene: Scene) -> str | None:
    marker = os.environ.get(CRASH_HOOK)
    if not marker:
        return None
    try:
        target = Path(marker).read_text().strip()
    except OSError:
        return None
    return marker if target == os.path.basename(scene.input) else None


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


@dataclass
class BatchOptions:
    segment: dict[str, Any]  # SegmentOptions fields every scene shares (model, tile, overwrite, ...)
    device: str = "auto"  # auto: CUDA on actors with a GPU; cpu; cuda
    workers: int | None = None  # None: as many as the resources allow
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs (and device is not cpu)
    retries: int = 2
    retry_delay: float = 1.0  # seconds before the first retry, doubled for each next one
    resume: bool = False


def check_options(opts: BatchOptions) -> None:
    """Refuse options that would fail every scene, once, before any work (loads the model once)."""
    from .loading import load_model
    from .pipeline import SegmentOptions

    if opts.device not in DEVICES:
        raise RsinferError(f"--device {opts.device}: Ray gives each worker its GPU; choose one of {', '.join(DEVICES)}")
    seg = opts.segment
    SegmentOptions(input="", output="", **seg)  # checks the choices
    loaded = load_model(seg.get("model"), seg.get("weights"), tile=seg.get("tile"), overlap=seg.get("overlap"))
    loaded.set_mode(seg.get("mode"))


def worker_resources(ray: Any, opts: BatchOptions) -> tuple[float, float]:
    """(CPUs, GPUs) each actor asks Ray for."""
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    gpus = opts.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if cluster_gpus > 0 and opts.device != "cpu" else 0.0
    if opts.device == "cuda" and gpus == 0:
        raise RsinferError("--device cuda: the Ray cluster has no GPU (or --gpus-per-worker is 0)")
    return opts.cpus_per_worker, gpus


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


@dataclass
class _Worker:
    actor: Any
    identity: Any  # ObjectRef of (host, pid), asked at creation


class _Scheduler:
    """Scenes to actors one at a time; failures retried with backoff; dead actors replaced."""

    def __init__(self, ray: Any, scenes: Sequence[Scene], opts: BatchOptions, on_result):
        self.ray = ray
        self.scenes = scenes
        self.opts = opts
        self.on_result = on_result
        cpus, gpus = worker_resources(ray, opts)
        self.count = worker_count(ray, opts.workers, len(scenes), cpus, gpus)
        # No Ray restarts or task retries: the driver retries, with backoff and a fresh actor.
        self.actor_class = ray.remote(SceneWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0)
        self.actor_args = (opts.segment, opts.device, max(1, int(cpus)))
        self.queue: deque[tuple[float, SceneTask]] = deque((0.0, SceneTask(s, resume=opts.resume)) for s in scenes)
        self.idle: list[_Worker] = []
        self.running: dict[Any, tuple[_Worker, SceneTask]] = {}
        self.results: dict[Scene, SceneResult] = {}

    def run(self) -> list[SceneResult]:
        try:
            self.idle = [self._new_worker() for _ in range(self.count)]
            while self.queue or self.running:
                self._dispatch()
                timeout = self._next_retry_in() if self.idle else None
                if not self.running:
                    time.sleep(timeout or 0.0)
                    continue
                done, _ = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
                for ref in done:
                    self._collect(ref)
        except BaseException:
            self._cancel_running()
            raise
        finally:
            for w in [*self.idle, *(w for w, _ in self.running.values())]:
                self.ray.kill(w.actor, no_restart=True)
        return [self.results[s] for s in self.scenes]

    def _new_worker(self) -> _Worker:
        actor = self.actor_class.remote(*self.actor_args)
        return _Worker(actor, actor.identity.remote())

    def _dispatch(self) -> None:
        now = time.monotonic()
        if self.queue and not self.idle and not self.running:  # every actor gone: one more
            self.idle.append(self._new_worker())
        while self.idle and self.queue and self.queue[0][0] <= now:
            _, task = self.queue.popleft()
            worker = self.idle.pop()
            self.running[worker.actor.run.remote(task)] = (worker, task)
        if not self.queue:  # nothing more to hand out: free what idle actors hold
            for w in self.idle:
                self.ray.kill(w.actor, no_restart=True)
            self.idle.clear()

    def _next_retry_in(self) -> float | None:
        if not self.queue:
            return None
        return max(0.0, min(ready for ready, _ in self.queue) - time.monotonic())

    def _collect(self, ref: Any) -> None:
        ray = self.ray
        worker, task = self.running.pop(ref)
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
            if self.queue or task.attempt <= self.opts.retries:
                self.idle.append(self._new_worker())
        except ray.exceptions.RayError as err:  # Ray could not run the method (the actor may live on)
            result = SceneResult(task.scene.input, task.scene.output, "failed", error=_first_line(err), retry=True)
            self.idle.append(worker)
        else:
            self.idle.append(worker)
        result.attempts = task.attempt
        if result.status == "failed" and result.retry and task.attempt <= self.opts.retries:
            delay = self.opts.retry_delay * 2 ** (task.attempt - 1)
            # A dead actor leaves its partial store: the retry continues it, which gives the bytes
            # of one uninterrupted run (after other failures run_segment has removed the store).
            retry = SceneTask(task.scene, task.attempt + 1, True, task.dead_worker)
            self.queue.append((time.monotonic() + delay, retry))
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
    ray: Any, scenes: Sequence[Scene], opts: BatchOptions, on_result: Callable[[SceneResult], None] | None = None
) -> tuple[list[SceneResult], int]:
    """Run ``scenes`` on Ray actors; their results in the order of ``scenes``, and the actor count.

    ``on_result`` is called as each scene ends (retries included in it).
    """
    if not scenes:
        return [], 0
    scheduler = _Scheduler(ray, scenes, opts, on_result)
    return scheduler.run(), scheduler.count


def skipped_result(scene: Scene) -> SceneResult:
    return SceneResult(scene.input, scene.output, "skipped")


# --- the report ------------------------------------------------------------------------


def summarize(results: Sequence[SceneResult], seconds: float, workers: int) -> dict[str, Any]:
    """Counts, wall time and throughput of the scenes this run segmented."""
    megapixels = sum(r.megapixels for r in results if r.status == "ok")
    return {
        "scenes": len(results),
        "ok": sum(r.status == "ok" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
        "retries": sum(max(0, r.attempts - 1) for r in results),
        "workers": workers,
        "seconds": round(seconds, 3),
        "megapixels": round(megapixels, 3),
        "mpx_per_s": round(megapixels / seconds, 3) if seconds > 0 else None,
    }


def summary_line(summary: dict[str, Any]) -> str:
    rate = summary["mpx_per_s"]
    return (
        f"rsinfer batch: {summary['scenes']} scenes, ok {summary['ok']}, failed {summary['failed']}, "
        f"skipped {summary['skipped']}, {summary['seconds']:.1f} s, {rate or 0:.2f} Mpx/s"
    )


def report_paths(path: str) -> tuple[str, str]:
    """(JSON, CSV): ``report.json`` and ``report.csv`` beside it."""
    p = Path(path)
    csv_path = p.with_suffix(".csv")
    json_path = p.with_suffix(".json") if csv_path == p else p
    return str(json_path), str(csv_path)


def write_report(path: str, results: Sequence[SceneResult], summary: dict[str, Any]) -> tuple[str, str]:
    """The report as JSON (rows and summary) and CSV (rows), both committed together."""
    json_path, csv_path = report_paths(path)
    rows = [r.row() for r in results]
    with atomic_outputs([json_path, csv_path], overwrite=True, check=False) as (json_partial, csv_partial):
        with open(json_partial, "w") as f:
            json.dump({"scenes": rows, "summary": summary}, f, indent=2)
            f.write("\n")
        with open(csv_partial, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=REPORT_FIELDS)
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return json_path, csv_path
