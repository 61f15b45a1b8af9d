"""Options and helpers shared by several commands."""

from __future__ import annotations

import functools

import click

from rsinfer.tiling import BLENDS


def parse_bands(ctx, param, value: str | None) -> tuple[int, ...] | None:
    if not value:
        return None
    try:
        bands = tuple(int(v) for v in value.replace(" ", "").split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of band numbers, e.g. 1,2,3") from None
    if any(b < 1 for b in bands):
        raise click.BadParameter("band numbers start at 1")
    return bands


def parse_size(ctx, param, value: str) -> tuple[int, int]:
    """``20000x10000`` (width x height) or ``5000`` (square)."""
    try:
        parts = [int(v) for v in value.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT, e.g. 20000x20000")
    return parts[0], parts[1]


overwrite_opt = click.option("--overwrite", is_flag=True, help="Replace outputs that exist.")


def _quiet(ctx, param, value: bool) -> bool:
    """A command's -q, or the group's (``rsinfer -q segment ...``)."""
    root = ctx.find_root().obj or {}
    quiet = bool(value or root.get("quiet"))
    if quiet:
        from rsinfer.cli.logs import quiet_console

        quiet_console()
    return quiet


def log_interval(ctx) -> float:
    """Seconds between plain progress lines when stderr is not a terminal (``rsinfer --log-interval``)."""
    return float((ctx.find_root().obj or {}).get("log_interval", 30.0))


quiet_opt = click.option("--quiet", "-q", is_flag=True, callback=_quiet, help="No progress bar, warnings or summary.")
model_opt = click.option(
    "--model",
    "-m",
    "model",
    default=None,
    help="Registered model name (see `rsinfer models`) [the weights' model, else lanet-lite, which has demo weights].",
)
device_opt = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
weights_opt = click.option(
    "--weights",
    "-w",
    default=None,
    help="Checkpoint file (.safetensors, .pt, .pth), a name from weights/manifest.json, or 'random' "
    "[the model's bundled demo weights, if it has any].",
)
tile_opt = click.option("--tile", type=click.IntRange(min=1), default=None, help="Tile side in pixels [model default].")
overlap_opt = click.option(
    "--overlap", type=click.IntRange(min=0), default=None, help="Tile overlap in pixels [model default]."
)


def parse_batch_size(ctx, param, value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise click.BadParameter(f"{value!r} is not a positive number or 'auto'")
    return n


batch_opt = click.option(
    "--batch-size",
    default="4",
    show_default=True,
    callback=parse_batch_size,
    help="Tiles per forward pass, or 'auto': the largest that fits --max-gpu-mem (CUDA).",
)
bands_opt = click.option(
    "--bands",
    "-b",
    callback=parse_bands,
    default=None,
    help="Input bands feeding the model, in model order, e.g. 3,2,1 [by colour interpretation].",
)
blend_opt = click.option(
    "--blend",
    type=click.Choice(BLENDS),
    default="crop",
    show_default=True,
    help="How overlapping tiles merge: keep tile centres, or weight the overlap.",
)


# The options below were inline in segment; they live here so that segment and batch share them.
probs_opt = click.option("--probs", is_flag=True, help="Also write class probabilities as uint8 (x255).")
scale_opt = click.option(
    "--scale",
    "value_scale",
    type=float,
    default=None,
    help="Multiply raw values by this before the model's normalization [from the data type].",
)
mode_opt = click.option(
    "--mode",
    type=click.Choice(["global-local", "global", "patch"]),
    default=None,
    help="Global-local models (GLNet, GLCANet): both branches, the global branch alone, or patches alone "
    "[global-local].",
)
backend_opt = click.option(
    "--backend",
    type=click.Choice(["torch", "onnx", "auto"]),
    default="torch",
    show_default=True,
    help="PyTorch (byte-stable outputs), ONNX Runtime (TensorRT → CUDA → CPU providers, as available), or auto: "
    "the faster verified one, i.e. ONNX Runtime for sliding-window models on a CPU in fp32 when it is installed "
    "and the exported graph matches PyTorch, else PyTorch.",
)
onnx_opt = click.option(
    "--onnx",
    "onnx_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Exported graph for --backend onnx [exported and cached on first use].",
)
precision_opt = click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "bf16"]),
    default="fp32",
    show_default=True,
    help="Autocast precision of the torch backend (fp16/bf16 on a CPU without instructions for them is "
    "emulated, likely far slower than fp32; --backend onnx runs fp32 only).",
)
global_size_opt = click.option(
    "--global-size",
    type=click.IntRange(min=1),
    default=None,
    help="Global-local models (GLNet, GLCANet): side of the downsampled global view [the model's, e.g. 508].",
)
max_gpu_mem_opt = click.option(
    "--max-gpu-mem", default=None, help="GPU memory budget for --batch-size auto, e.g. 20GiB or 0.8 [free memory]."
)
resume_opt = click.option(
    "--resume",
    is_flag=True,
    help="Continue what an interrupted run of the same job left (same bytes as one run); "
    "batch also skips scenes already done.",
)
address_opt = click.option(
    "--address", default=None, help="Ray cluster to join: auto or HOST:PORT [a local Ray started for the run]."
)


co_opt = click.option(
    "--co",
    "creation_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="GDAL COG creation option for GeoTIFF outputs, repeatable (e.g. --co COMPRESS=ZSTD), as in rio.",
)


# The parameters segment_job_opts adds, in its options' order: one ``job`` dict in the command.
JOB_PARAMS = (
    "model",
    "weights",
    "tile",
    "overlap",
    "batch_size",
    "device",
    "bands",
    "blend",
    "probs",
    "value_scale",
    "mode",
    "global_size",
    "backend",
    "onnx_path",
    "precision",
    "max_gpu_mem",
    "creation_options",
)


def segment_job_opts(f):
    """Every option that says how one scene is segmented, as ``segment`` and ``batch`` both take
    them, handed to the command as one ``job`` dict (see :func:`segment_fields`)."""

    @functools.wraps(f)
    def command(*args, **kwargs):
        job = {name: kwargs.pop(name) for name in JOB_PARAMS}
        return f(*args, job=job, **kwargs)

    for opt in reversed(
        (
            model_opt,
            weights_opt,
            tile_opt,
            overlap_opt,
            batch_opt,
            device_opt,
            bands_opt,
            blend_opt,
            probs_opt,
            scale_opt,
            mode_opt,
            global_size_opt,
            backend_opt,
            onnx_opt,
            precision_opt,
            max_gpu_mem_opt,
            co_opt,
        )
    ):
        command = opt(command)
    return command


def segment_fields(job: dict) -> dict:
    """A ``job`` of :func:`segment_job_opts` as SegmentOptions fields: ``--onnx`` is ``onnx``,
    and the ``--co`` pairs are checked against GDAL's COG driver (one error line if bad)."""
    from rsinfer.io.cog import parse_creation_options

    fields = dict(job)
    fields["onnx"] = fields.pop("onnx_path")
    fields["creation_options"] = parse_creation_options(fields["creation_options"])
    return fields


def area_opts(f):
    """--aoi FILE, or --bbox with --bbox-crs: the part of the raster to segment."""
    for opt in reversed(
        (
            click.option(
                "--aoi",
                type=click.Path(dir_okay=False),
                default=None,
                help="Vector file of polygons (any CRS): only tiles touching them run, pixels outside are nodata.",
            ),
            click.option(
                "--bbox",
                default=None,
                help="minx,miny,maxx,maxy: as --aoi, for a box.",
            ),
            click.option("--bbox-crs", default=None, help="CRS of --bbox, e.g. EPSG:4326 [the raster's]."),
            click.option(
                "--crop-to-aoi",
                is_flag=True,
                help="Write only the area's bounding window (georeferenced) instead of the full grid.",
            ),
        )
    ):
        f = opt(f)
    return f
