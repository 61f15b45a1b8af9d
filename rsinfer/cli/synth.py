"""``rsinfer synth``: a synthetic georeferenced orthophoto and its label raster."""

from __future__ import annotations

from pathlib import Path

import click

from rsinfer.cli import options
from rsinfer.io.outputs import check_outputs


@click.command(short_help="Write a synthetic orthophoto and its labels.")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option(
    "--size", callback=options.parse_size, default="2048x2048", show_default=True, help="WIDTHxHEIGHT in pixels."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--pixel-size", type=click.FloatRange(0.01, 10), default=0.2, show_default=True, help="Metres per pixel.")
@click.option("--epsg", type=int, default=32632, show_default=True, help="UTM zone EPSG code of the scene.")
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Label raster path [OUTPUT with _labels before the suffix].",
)
@options.overwrite_opt
@options.quiet_opt
def synth(output, size, seed, pixel_size, epsg, labels_path, overwrite, quiet):
    """Stream a synthetic scene (ISPRS classes: roads, roofs with shadows, trees, cars, fields)
    to OUTPUT and its label raster beside it, in bounded memory; deterministic for a seed."""
    from rsinfer.cli.progress import TileProgress
    from rsinfer.synth import write_synthetic_scene

    out = Path(output)
    labels = Path(labels_path) if labels_path else out.with_name(out.stem + "_labels" + (out.suffix or ".tif"))
    check_outputs([out, labels], overwrite)  # before any work; the writer itself replaces what exists
    width, height = size
    with TileProgress(disable=quiet, label="synth") as progress:
        write_synthetic_scene(
            str(out),
            str(labels),
            width,
            height,
            seed=seed,
            pixel_size=pixel_size,
            epsg=epsg,
            progress=lambda done, total: progress.update(done, total, done * width),
        )
    if not quiet:
        click.echo(
            f"rsinfer: wrote {out} and {labels} ({width}x{height} px, {pixel_size} m, EPSG:{epsg}, seed {seed})",
            err=True,
        )
