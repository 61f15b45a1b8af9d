"""``rsinfer vectorize``: a label map to polygons (GeoPackage, GeoJSON, GeoParquet)."""

from __future__ import annotations

import click

from .options import overwrite_opt, quiet_opt


def parse_classes(ctx, param, value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    classes = tuple(v.strip() for v in value.split(",") if v.strip())
    if not classes:
        raise click.BadParameter(f"{value!r} names no class; e.g. building,tree or 1,5")
    return classes


@click.command("vectorize", short_help="Turn a label map into polygons (GeoPackage, GeoJSON, GeoParquet).")
@click.argument("labels", type=click.Path())
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="OUT.gpkg, OUT.geojson, or OUT.parquet (where pyogrio's GDAL has the Parquet driver).",
)
@click.option(
    "--min-area",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Drop polygons smaller than this, in the raster's CRS units² (m² for UTM) [keep all].",
)
@click.option(
    "--simplify",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Simplify with this tolerance, in the raster's CRS units; each polygon stays valid, but borders "
    "shared by neighbours are simplified separately (small gaps or overlaps) [pixel edges kept].",
)
@click.option(
    "--classes", callback=parse_classes, default=None, help="Only these classes, by name or id, e.g. building,tree."
)
@click.option(
    "--dst-crs", default=None, help="Reproject the polygons' vertices to this CRS, e.g. EPSG:4326 [the raster's]."
)
@click.option(
    "--block-rows",
    type=click.IntRange(min=1),
    default=None,
    help="Rows read and polygonized at once [1024, fewer for rasters wider than 16k px].",
)
@overwrite_opt
@quiet_opt
def vectorize(labels, output, min_area, simplify, classes, dst_crs, block_rows, overwrite, quiet):
    """Write one polygon per connected region (4-connected pixels) of each class of LABELS.

    LABELS is a label map as `rsinfer segment` writes it (GeoTIFF, or zarr with a `labels`
    array); it is read in strips of rows, and polygons crossing strips are merged, so memory
    holds a strip and the polygons still growing across its lower border. Nodata (255) is
    never a polygon. Attributes: class_id, class_name (from the raster's class names) and
    area: the region's pixel count × pixel area, in the raster's CRS units² (degrees² for a
    geographic CRS), before --simplify and --dst-crs. The output appears under its name only
    once complete.
    """
    from rsinfer.vector import require_pyogrio, vectorize_labels

    require_pyogrio()  # one line naming the extra, before any work
    report = vectorize_labels(
        labels,
        output,
        min_area=min_area,
        simplify=simplify,
        classes=classes,
        dst_crs=dst_crs,
        overwrite=overwrite,
        block_rows=block_rows,
    )
    if not quiet:
        click.echo(
            f"rsinfer: {report.labels} -> {report.output}: {report.features:,} polygons "
            f"({len(report.per_class)} classes), {report.blocks} strip{'s' if report.blocks != 1 else ''} "
            f"of {report.block_rows} rows, "
            f"{report.seconds:.1f} s",
            err=True,
        )
