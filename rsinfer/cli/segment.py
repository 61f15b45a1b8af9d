"""``rsinfer segment``: a raster in, a georeferenced label map out."""

from __future__ import annotations

import warnings

import click

from rsinfer.cli import options
from rsinfer.cli.progress import TileProgress


@click.command(short_help="Segment a raster into a label map (GeoTIFF or zarr).")
@click.argument("input", type=click.Path(dir_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(), help="labels.tif or labels.zarr")
@options.segment_job_opts
@options.area_opts
@click.option(
    "--vector",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the labels as polygons (.gpkg, .geojson, .parquet; see `rsinfer vectorize`).",
)
@click.option("--workers", type=click.IntRange(min=0), default=0, help="Reader threads [from the CPU count].")
@options.overwrite_opt
@options.resume_opt
@click.option(
    "--keep-partial/--no-keep-partial",
    default=True,
    show_default=True,
    help="On SIGINT/SIGTERM/SIGHUP, keep the rows done for --resume.",
)
@click.option(
    "--distributed",
    type=click.IntRange(min=1),
    default=None,
    help="Split the raster's rows over N Ray workers (same output bytes) [one process].",
)
@options.address_opt
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the run's summary as JSON ('-': stdout): outputs, size, tiles, device, seconds, Mpx/s, memory.",
)
@options.quiet_opt
@click.pass_context
def segment(
    ctx,
    input,
    output,
    job,
    aoi,
    bbox,
    bbox_crs,
    crop_to_aoi,
    vector,
    workers,
    overwrite,
    resume,
    keep_partial,
    distributed,
    address,
    report_path,
    quiet,
):
    """Segment INPUT window by window with a model and write a label map to --output.

    The raster is streamed: memory stays bounded whatever its size. The output keeps the
    input's CRS, transform and size; invalid input pixels (nodata, alpha, mask) are 255.
    """
    import os

    from rsinfer.errors import InputError

    if not os.path.exists(input):  # before loading anything: one line, at once
        raise InputError(f"{input}: no such file")
    if job["backend"] == "onnx":
        from rsinfer.extras import require_onnx

        require_onnx(export=job["onnx_path"] is None)
    from rsinfer.aoi import parse_bbox
    from rsinfer.pipeline import SegmentOptions, run_segment
    from rsinfer.signals import stop_on_signals

    opts = SegmentOptions(
        input=input,
        output=output,
        **options.segment_fields(job),
        overwrite=overwrite,
        read_workers=workers,
        resume=resume,
        keep_partial=keep_partial,
        aoi=aoi,
        bbox=parse_bbox(bbox) if bbox else None,
        bbox_crs=bbox_crs,
        crop_to_aoi=crop_to_aoi,
    )
    if vector:  # refused before any work: no pyogrio, an unknown format, an existing file
        from rsinfer.io.outputs import check_outputs
        from rsinfer.vector.sink import driver_for, require_pyogrio

        require_pyogrio()
        driver_for(vector)
        check_outputs([vector], overwrite)
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        if report_path and report_path != "-":
            from rsinfer.io.outputs import check_outputs

            check_outputs([report_path], overwrite)
        progress_lines = options.log_interval(ctx)
        with TileProgress(disable=quiet, log_every=progress_lines) as progress, stop_on_signals() as stop:
            if distributed:
                from rsinfer.distributed import run_segment_distributed

                report = run_segment_distributed(opts, distributed, address, progress=progress.update, stop=stop)
            else:
                report = run_segment(opts, progress=progress.update, stop=stop)
    if not quiet:
        click.echo(
            f"rsinfer: {report.input} -> {', '.join(report.outputs)}: {report.width}x{report.height} px, "
            f"{report.tiles} tiles ({report.tiles_predicted} predicted, {report.tiles_skipped} empty), "
            f"{report.model} ({report.weights} weights) on {report.device} ({report.backend}), "
            f"{report.seconds:.1f} s, {report.mpx_per_s:.2f} Mpx/s, "
            f"peak RSS {report.peak_rss_mb:.0f} MB",
            err=True,
        )
    if report_path:
        write_report(report_path, report)
    if vector:
        from rsinfer.vector import vectorize_labels

        polygons = vectorize_labels(report.outputs[0], vector, overwrite=overwrite)
        if not quiet:
            click.echo(f"rsinfer: {report.outputs[0]} -> {vector}: {polygons.features} polygons", err=True)


def write_report(path: str, report) -> None:
    """The run's :class:`~rsinfer.pipeline.SegmentReport` as JSON, to a file (committed whole) or stdout."""
    import dataclasses
    import json

    from rsinfer.io.outputs import atomic_outputs

    data = dataclasses.asdict(report)
    data.update(megapixels=round(report.megapixels, 6), mpx_per_s=round(report.mpx_per_s, 6))
    text = json.dumps(data, indent=2) + "\n"
    if path == "-":
        click.echo(text, nl=False)
        return
    with atomic_outputs([path], overwrite=True, check=False) as (partial,):
        with open(partial, "w") as f:
            f.write(text)
