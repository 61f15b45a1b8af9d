"""``rsinfer batch``: many rasters segmented on Ray workers (a local Ray, or a cluster)."""

from __future__ import annotations

import os
import time
import warnings

import click

from rsinfer.cli import options


class SceneProgress:
    """A rich progress bar of scenes done on stderr (off when quiet or stderr is not a terminal)."""

    def __init__(self, total: int, disable: bool):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self.enabled = not disable and console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("scenes"),
            TimeRemainingColumn(),
            console=console,
            disable=not self.enabled,
        )
        self._task = self._progress.add_task("batch", total=total)

    def __enter__(self) -> SceneProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def advance(self) -> None:
        self._progress.advance(self._task)

    def echo(self, line: str) -> None:
        if self.enabled:  # above the bar, not through it
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
    default=1.0,
    show_default=True,
    help="CPUs each actor reserves; also its reader threads.",
)
@click.option(
    "--gpus-per-worker",
    type=click.FloatRange(min=0),
    default=None,
    help="GPUs each actor reserves, e.g. 0.5 [1 where Ray has GPUs, else 0].",
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
    model,
    weights,
    tile,
    overlap,
    batch_size,
    device,
    bands,
    blend,
    probs,
    value_scale,
    mode,
    backend,
    onnx_path,
    precision,
    max_gpu_mem,
    address,
    workers,
    cpus_per_worker,
    gpus_per_worker,
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
    from rsinfer.ray_runtime import ray_session

    if not inputs and not manifest:
        raise click.UsageError("give INPUT... or --manifest FILE")
    scenes = engine.resolve_inputs(inputs, outdir, fmt, manifest, probs)
    segment = dict(
        model=model,
        weights=_absolute_if_file(weights),
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        max_gpu_mem=max_gpu_mem,
        precision=precision,
        bands=bands,
        blend=blend,
        probs=probs,
        overwrite=overwrite,
        value_scale=value_scale,
        mode=mode,
        backend=backend,
        onnx=_absolute_if_file(onnx_path),
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
    )
    plan = engine.plan_batch(scenes, probs, overwrite, resume)
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
    with SceneProgress(len(scenes), disable=quiet) as progress:

        def on_result(result) -> None:
            for message in result.warnings:
                warn_once(message, progress.echo)
            if result.status == "failed":
                progress.echo(f"rsinfer batch: failed: {result.error}")
            progress.advance()

        for _ in plan.skip:
            progress.advance()
        results, count = [], 0
        if plan.run:
            with ray_session(address) as ray:
                results, count = engine.run_batch(ray, plan.run, opts, on_result)
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
