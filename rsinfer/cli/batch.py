"""``rsinfer batch``: many rasters segmented on Ray workers (a local Ray, or a cluster)."""

from __future__ import annotations

import logging
import os
import signal
import time
import warnings

import click

from rsinfer.cli import options
from rsinfer.cli.progress import RateWindow, stderr_progress


class BatchProgress:
    """The batch on stderr: a bar of scenes done with Mpx/s and ETA, and a line per worker
    (its scene and tiles done). When stderr is not a terminal, a plain line every
    ``log_every`` seconds instead; nothing when quiet."""

    def __init__(self, total: int, disable: bool, log_every: float = 30.0):
        self._progress, self.enabled, self.logging = stderr_progress(disable)
        self.total = total
        self.log_every = log_every
        self._task = self._progress.add_task("[bold]batch", total=total, unit="scenes", rate="")
        self._workers: dict[str, int] = {}  # worker -> its progress row
        self._done = 0
        self._megapixels_done = 0.0  # of finished scenes
        self._finished: set[str] = set()  # their inputs
        self._running_megapixels = 0.0  # of the scenes the workers are on
        self._start = time.monotonic()
        self._rate = RateWindow()
        self._last_log = self._start

    def __enter__(self) -> BatchProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def scene_done(self, megapixels: float = 0.0, scene: str | None = None) -> None:
        self._done += 1
        self._megapixels_done += megapixels
        if scene is not None:
            self._finished.add(scene)
        self._progress.advance(self._task)
        self._tick()

    def workers(self, states) -> None:
        """Each worker's state, from the progress board (a worker that died is no longer on it)."""
        # A finished scene counts once: its worker's last report may still show its pixels.
        self._running_megapixels = sum(s.pixels_done for s in states if s.scene not in self._finished) / 1e6
        for gone in set(self._workers) - {s.worker for s in states}:
            self._progress.remove_task(self._workers.pop(gone))
        for state in states:
            row = self._workers.get(state.worker)
            if row is None:
                row = self._progress.add_task("", total=None, unit="", rate="")
                self._workers[state.worker] = row
            scene = os.path.basename(state.scene) if state.scene else "idle"
            self._progress.update(
                row,
                description=f"  {state.worker} {state.device} {scene}",
                completed=state.tiles_done,
                total=state.tiles_total or None,
                unit="tiles" if state.scene else "",
            )
        self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        rate = self._rate.add(now, self._megapixels_done + self._running_megapixels)
        self._progress.update(self._task, rate=f"{rate:.2f} Mpx/s" if rate is not None else "")
        if self.logging and now - self._last_log >= self.log_every:
            self._last_log = now
            left = self.total - self._done
            eta = (now - self._start) / self._done * left if self._done else None
            logging.getLogger("rsinfer").info(
                "batch: %d/%d scenes, %.2f Mpx/s, ETA %s",
                self._done,
                self.total,
                rate or 0,
                "?" if eta is None else f"{eta:.0f} s",
            )

    def echo(self, line: str) -> None:
        if self.enabled:  # above the bars, not through them
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(line, err=True)


def _absolute_if_file(path: str | None) -> str | None:
    """A file argument as an absolute path: the actors may not share our working directory."""
    return os.path.abspath(path) if path and os.path.exists(path) else path


@click.command(short_help="Segment many rasters on Ray workers (a local Ray, or a cluster).")
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option(
    "--output", "-o", "outdir", required=True, type=click.Path(file_okay=False), help="Output folder (created)."
)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False),
    default=None,
    help="Text or CSV file: one input per line, optionally ',output name'; relative to its folder.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tif", "zarr"]),
    default="tif",
    show_default=True,
    help="Outputs OUTDIR/<stem>.tif or OUTDIR/<stem>.zarr.",
)
@options.segment_job_opts
@options.address_opt
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Ray actors [as many as the CPUs/GPUs allow, at most one per scene].",
)
@click.option(
    "--cpus-per-worker",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="CPUs each actor reserves; also its tile-decoding threads [1; on GPUs, its share of the node's CPUs].",
)
@click.option(
    "--gpus-per-worker",
    type=click.FloatRange(min=0),
    default=None,
    help="GPUs each actor reserves, e.g. 0.5 [1 where Ray has GPUs, else 0].",
)
@click.option(
    "--split",
    type=click.IntRange(min=1),
    default=None,
    help="Scenes one at a time, each cut into N strips of chunk rows run across the workers (huge scenes).",
)
@click.option(
    "--assemble-behind/--no-assemble-behind",
    default=True,
    show_default=True,
    help="A worker assembles one scene's GeoTIFF while its next scene runs on the model, "
    "so the GPU does not wait for GDAL's COG copy.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Further attempts at a scene that failed other than on bad input (a worker that died, ...).",
)
@click.option(
    "--retry-delay",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds before the first retry, doubled for each next one.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a JSON report (one row per scene and a summary) and the rows as CSV beside it.",
)
@options.overwrite_opt
@options.resume_opt
@options.quiet_opt
@click.pass_context
def batch(
    ctx,
    inputs,
    outdir,
    manifest,
    fmt,
    job,
    address,
    workers,
    cpus_per_worker,
    gpus_per_worker,
    split,
    assemble_behind,
    retries,
    retry_delay,
    report_path,
    overwrite,
    resume,
    quiet,
):
    """Segment every INPUT (files, globs, folders of .tif/.tiff, .txt/.csv manifests) into OUTDIR.

    Each scene is one `rsinfer segment` run on a Ray actor: a local Ray started for the
    run, or the cluster at --address. A scene that fails on bad input fails alone; other
    failures (a worker that died) are retried. With --resume, finished scenes are skipped and
    interrupted ones continued. Exit 0 only when every scene succeeded.
    """
    from rsinfer.ray_runtime import import_ray

    import_ray()  # before any work: without Ray, one line naming the extra
    from rsinfer import batch as engine
    from rsinfer.errors import RsinferError
    from rsinfer.io.outputs import check_outputs, describe_os_error
    from rsinfer.pipeline import JobInterrupted
    from rsinfer.ray_runtime import ray_session
    from rsinfer.signals import StopSignal, stop_on_signals

    if not inputs and not manifest:
        raise click.UsageError("give INPUT... or --manifest FILE")
    scenes = engine.resolve_inputs(inputs, outdir, fmt, manifest, job["probs"])
    segment = options.segment_fields(job)
    device = segment.pop("device")  # each actor's own: a GPU where Ray gave it one
    segment.update(
        weights=_absolute_if_file(segment["weights"]), onnx=_absolute_if_file(segment["onnx"]), overwrite=overwrite
    )
    opts = engine.BatchOptions(
        segment=segment,
        device=device,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        retries=retries,
        retry_delay=retry_delay,
        resume=resume,
        split=split or 0,
        assemble_behind=assemble_behind,
    )
    plan = engine.plan_batch(scenes, job["probs"], overwrite, resume)
    shown: set[str] = set()

    def warn_once(message: str, echo=lambda line: click.echo(line, err=True)) -> None:
        if not quiet and message not in shown:  # every actor warns alike: say it once
            shown.add(message)
            echo(f"rsinfer: warning: {message}")

    if plan.run:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            engine.check_options(opts)
        for w in caught:
            warn_once(str(w.message))
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as err:
        raise RsinferError(f"{outdir}: cannot create the output folder ({describe_os_error(err)})") from None
    if report_path:  # a rerun with --resume rewrites the report of the run it continues
        check_outputs(engine.report_paths(report_path), overwrite or resume)

    start = time.perf_counter()
    with BatchProgress(len(scenes), disable=quiet, log_every=options.log_interval(ctx)) as progress:

        def on_result(result) -> None:
            for message in result.warnings:
                warn_once(message, progress.echo)
            if result.status == "failed":
                progress.echo(f"rsinfer batch: failed: {result.error}")
            progress.scene_done(result.megapixels if result.status == "ok" else 0.0, result.input)

        for _ in plan.skip:
            progress.scene_done()
        results, count = [], 0
        if plan.run:
            # SIGTERM/SIGHUP unwind like Ctrl-C: running scenes stop between batches, keeping their rows.
            try:
                # Ctrl-C stays Python's KeyboardInterrupt; SIGTERM/SIGHUP set a request the scheduler polls.
                with stop_on_signals((signal.SIGTERM, signal.SIGHUP)) as stop, ray_session(address) as ray:
                    results, count = engine.run_batch(
                        ray, plan.run, opts, on_result, on_progress=None if quiet else progress.workers, stop=stop
                    )
            except StopSignal as stop:
                raise JobInterrupted(
                    f"stopped by {stop}: running scenes kept their finished rows; rerun with --resume",
                    stop.exit_code,
                ) from None
    seconds = time.perf_counter() - start

    by_scene = {r.input: r for r in [*results, *(engine.skipped_result(s) for s in plan.skip)]}
    rows = [by_scene[s.input] for s in scenes]
    summary = engine.summarize(rows, seconds, count)
    if report_path:
        engine.write_report(report_path, rows, summary)
    if not quiet:
        click.echo(engine.summary_line(summary), err=True)
    if summary["failed"]:
        ctx.exit(1)
