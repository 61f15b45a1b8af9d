"""``rsinfer bench memory`` and ``rsinfer bench speed``: the papers' efficiency tables, on your hardware."""

from __future__ import annotations

import platform

import click

from rsinfer.cli import options


def _machine(device: str) -> str:
    import os

    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def _models(value: str, default: tuple[str, ...]) -> list[str]:
    return [m.strip() for m in value.split(",") if m.strip()] if value else list(default)


def _device(value: str) -> str:
    from rsinfer.backends import resolve_device

    return str(resolve_device(value))


output_opts = [
    click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the rows as JSON."),
    click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Write the rows as CSV."),
    click.option(
        "--markdown", "md_path", type=click.Path(dir_okay=False), default=None, help="Write a Markdown table."
    ),
]


def with_outputs(f):
    for opt in reversed(output_opts):
        f = opt(f)
    return options.overwrite_opt(f)


def _check_outputs(overwrite: bool, *paths: str | None) -> None:
    """Refuse existing report files before minutes of measuring, not after."""
    from rsinfer.io.outputs import check_outputs

    check_outputs([p for p in paths if p], overwrite)


@click.group(short_help="Benchmark memory (patch vs global) and speed.")
def bench():
    """Reproduce the papers' efficiency tables on this machine, the papers' figures beside ours."""


@bench.command(short_help="Peak memory of patch, global and global-local inference.")
@click.option(
    "--models", default="", help="Comma-separated models [the GLCANet table's plus ammunet, lanet, hiresnet]."
)
@click.option(
    "--size", type=click.IntRange(min=32), default=2448, show_default=True, help="Image side (DeepGlobe: 2448)."
)
@click.option("--patch", type=click.IntRange(min=16), default=500, show_default=True, help="Patch side.")
@click.option("--overlap", type=click.IntRange(min=0), default=50, show_default=True, help="Patch overlap.")
@click.option("--device", default="auto", show_default=True)
@click.option("--png", "png_path", type=click.Path(dir_okay=False), default=None, help="Write a bar chart.")
@with_outputs
def memory(models, size, patch, overlap, device, png_path, json_path, csv_path, md_path, overwrite):
    """Peak memory of each model with batch 1 and no gradients, each configuration in its own
    process: patch inference (the image cut into patches) and global inference (the whole image
    at once); GLNet/GLCANet in patch and global-local mode. On CUDA: device-level used memory
    (as gpustat shows it, CUDA context included) and torch's peak allocated; on CPU: peak RSS."""
    from rich.console import Console
    from rich.table import Table

    from rsinfer.benchmark import report, runner

    _check_outputs(overwrite, png_path, json_path, csv_path, md_path)
    if png_path:  # before measuring: one line naming the extra
        from rsinfer.extras import require

        require(("matplotlib",), "--png", "pip install 'rsinfer[bench]'")
    device = _device(device)
    names = _models(models, runner.TABLE_MODELS + runner.OUR_MODELS)
    console = Console(stderr=True)
    rows = runner.memory_rows(
        names,
        size,
        patch,
        overlap,
        device,
        on_row=lambda r: console.print(f"  {r['model']} {r['setting']}: {report._mb(r):.0f} MB"),
    )
    lines = report.memory_table(rows)
    unit = "device used MB" if device.startswith("cuda") else "peak RSS MB"
    table = Table(title=f"Peak memory, {size}² image, {patch}² patches ({unit}); paper: {report.MEMORY_TABLE_SOURCE}")
    for col in report.MEMORY_COLUMNS:
        if any(col in line for line in lines):
            table.add_column(col.replace("_", " "), justify="left" if col in ("model", "device") else "right")
    for line in lines:
        table.add_row(*[str(line.get(c, "-")) for c in report.MEMORY_COLUMNS if any(c in ln for ln in lines)])
    Console().print(table)
    meta = {"machine": _machine(device), "size": size, "patch": patch, "overlap": overlap, "unit": unit}
    report.write_outputs(lines, report.MEMORY_COLUMNS, json_path, csv_path, md_path, meta)
    if png_path:
        report.memory_chart(lines, png_path, f"{size}² image, {patch}² patches: {unit}\n{meta['machine']}")


@bench.command(short_help="Params, GFLOPs, latency and FPS per model, backend and precision.")
@click.option("--models", default="", help="Comma-separated models [ammunet, lanet, hiresnet].")
@click.option("--sizes", default="512", show_default=True, help="Comma-separated input sides.")
@click.option(
    "--backends",
    default="torch",
    show_default=True,
    help="torch,onnx,tensorrt (onnx: ONNX Runtime's CUDA provider on a GPU, its CPU provider on a CPU).",
)
@click.option("--precisions", default="fp32", show_default=True, help="fp32,fp16,bf16")
@click.option(
    "--batches",
    default="1",
    show_default=True,
    help="Comma-separated batch sizes (FPS at each); auto: what --batch-size auto picks on this device.",
)
@click.option("--runs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--device", default="auto", show_default=True)
@with_outputs
def speed(models, sizes, backends, precisions, batches, runs, warmup, device, json_path, csv_path, md_path, overwrite):
    """Latency p50/p95, FPS and Mpx/s with warm-up runs excluded (CUDA timed with events), with
    parameters and GFLOPs (torch's FLOP counter, 2 per multiply-add) and the papers' rows beside.
    Rows other than torch fp32 add agree_pct: the share of labels equal to torch fp32's on the
    same device and input (a synthetic scene's tile for RGB models, else random values)."""
    import tempfile

    from rich.console import Console
    from rich.table import Table

    from rsinfer.benchmark import report, runner

    _check_outputs(overwrite, json_path, csv_path, md_path)
    if {"onnx", "tensorrt"} & set(backends.split(",")):  # before measuring: one line naming the extra
        from rsinfer.extras import require_onnx

        require_onnx(export=True)
    device = _device(device)
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory() as work:
        rows = runner.speed_rows(
            _models(models, runner.OUR_MODELS),
            [int(s) for s in sizes.split(",")],
            backends.split(","),
            precisions.split(","),
            [b.strip() if b.strip() == "auto" else int(b) for b in batches.split(",")],
            device,
            runs,
            warmup,
            work,
            on_row=lambda r: console.print(
                f"  {r['model']} {r['size']} {r['backend']} {r['precision']} b{r['batch']}: {r['fps']:.2f} FPS"
                + (f", {r['agree_pct']:.2f}% of torch fp32's labels" if "agree_pct" in r else "")
            ),
            on_skip=lambda r: console.print(f"  {r['model']} {r['backend']}: skipped ({r['skipped']})"),
        )
    lines = report.speed_table(rows)
    table = Table(title=f"Speed on {_machine(device)} (papers' rows marked)")
    for col in report.SPEED_COLUMNS:
        table.add_column(
            col, justify="left" if col in ("model", "backend", "precision", "device") else "right", overflow="fold"
        )
    for line in lines:
        table.add_row(*[str(line.get(c, "-")) for c in report.SPEED_COLUMNS])
    Console().print(table)
    report.write_outputs(lines, report.SPEED_COLUMNS, json_path, csv_path, md_path, {"machine": _machine(device)})


@bench.command(short_help="Host ceiling: the segment pipeline with a zero-cost model against raw decoding.")
@click.option("--size", type=click.IntRange(min=256), default=8000, show_default=True, help="Scene side in pixels.")
@click.option("--tile", type=click.IntRange(min=16), default=512, show_default=True)
@click.option("--overlap", type=click.IntRange(min=0), default=64, show_default=True)
@click.option("--read-workers", type=click.IntRange(min=1), default=2, show_default=True, help="Reader threads.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--format", "output_format", type=click.Choice(["tif", "zarr"]), default="tif", show_default=True, help="Output."
)
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True, help="Best of N of each side.")
@click.option(
    "--workdir", default="bench-data", show_default=True, help="Where the scene is made (once) and outputs go."
)
@with_outputs
def pipeline(
    size,
    tile,
    overlap,
    read_workers,
    batch_size,
    device,
    output_format,
    repeats,
    workdir,
    json_path,
    csv_path,
    md_path,
    overwrite,
):
    """The whole `segment` pipeline (read, batch, normalize, pad, activation, stitch, write) with a
    model that does no arithmetic, against threaded decoding of the same windows with the same
    threads, measured in one run on a synthetic tiled deflate GeoTIFF. The ratio of the two is
    the share of the decoder's speed the pipeline keeps: the most any model can get through it."""
    from rich.console import Console
    from rich.table import Table

    from rsinfer.benchmark import report
    from rsinfer.benchmark.pipeline import host_ceiling

    _check_outputs(overwrite, json_path, csv_path, md_path)
    device = _device(device)
    result = host_ceiling(size, tile, overlap, read_workers, batch_size, device, workdir, output_format, repeats)
    row = result.row()
    table = Table(title=f"Host ceiling on {_machine(device)}, {size}² scene (one run)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in row.items():
        table.add_row(key, str(value))
    Console().print(table)
    report.write_outputs([row], tuple(row), json_path, csv_path, md_path, {"machine": _machine(device)})
