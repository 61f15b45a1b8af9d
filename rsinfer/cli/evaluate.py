"""``rsinfer eval``: score a label map against reference labels (IoU, F1, OA)."""

from __future__ import annotations

import math
import warnings

import click

from rsinfer.errors import RsinferError
from rsinfer.io.outputs import check_outputs

STDOUT = "-"  # --json -: the report goes to stdout, the table and summary to stderr


def _pct(v: float) -> str:
    return "—" if v is None or math.isnan(v) else f"{100 * v:.2f}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"rsinfer: warning: {message}", err=True)


@click.command("eval", short_help="Score a label map against reference labels (IoU, F1, OA).")
@click.argument("pred", type=click.Path())
@click.argument("labels", type=click.Path())
# 1024: rsinfer.evaluation.MAX_CLASSES (not imported here: main imports every command at start-up)
@click.option(
    "--num-classes",
    "-k",
    type=click.IntRange(1, 1024),
    default=None,
    help="Number of classes K [from PRED's class names, else LABELS', else the largest class id + 1].",
)
@click.option(
    "--ignore-index",
    "ignore",
    type=click.IntRange(min=0),
    multiple=True,
    help="A LABELS class left out of the scores, e.g. clutter (repeatable).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Also write the confusion matrix and metrics to this JSON file ('-': to stdout, and the table "
    "and summary to stderr).",
)
@click.option("--workers", type=click.IntRange(min=0), default=0, help="Reader threads [2, or 1 on one CPU].")
@click.option("--overwrite", is_flag=True, help="Replace the --json file if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or warnings; print only the summary line.")
@click.pass_context
def evaluate(ctx, pred, labels, num_classes, ignore, json_path, workers, overwrite, quiet):
    """Compare the label map PRED with the reference LABELS pixel by pixel.

    Each may be a GeoTIFF or a zarr group with a `labels` array; they must share a size
    (and CRS and pixel grid, where both have one). Both are streamed window by window.
    A pixel counts where LABELS is not nodata (255 unless the file says otherwise), PRED
    is not nodata, and the LABELS class is not an --ignore-index class. Prints per-class
    IoU and F1 (%) with pixel counts, then mIoU, mean F1 and OA. Classes absent from both
    rasters, and ignored classes, have no score (—) and are left out of the means.
    """
    try:
        _evaluate(pred, labels, num_classes, ignore, json_path, workers, overwrite, quiet)
    except RsinferError as err:  # one line, exit 1 (also when the command runs outside the group)
        click.echo(f"rsinfer: error: {err}", err=True)
        ctx.exit(1)


def _evaluate(pred, labels, num_classes, ignore, json_path, workers, overwrite, quiet) -> None:
    from rsinfer.evaluation import evaluate_rasters, write_json

    to_stdout = json_path == STDOUT
    if json_path is not None and not to_stdout:
        check_outputs([json_path], overwrite)  # before the work, not after it
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        else:
            warnings.showwarning = _show_warning
        progress = _LazyProgress(disable=quiet)
        try:
            result = evaluate_rasters(
                pred, labels, num_classes=num_classes, ignore=ignore, workers=workers, progress=progress.update
            )
        finally:
            progress.close()
    if to_stdout:
        click.echo(result.to_json(), nl=False)
    elif json_path is not None:
        write_json(result, json_path)
    summary = (
        f"mIoU {_pct(result.miou)}  mean F1 {_pct(result.mean_f1)}  OA {_pct(result.oa)}  "
        f"({result.pixels:,} px; means over {result.scored_classes} of {result.num_classes} classes)"
    )
    if quiet:
        click.echo(summary, err=to_stdout)
        return
    _print_table(result, err=to_stdout)
    click.echo(summary, err=to_stdout)
    click.echo(
        f"rsinfer: {result.pred} vs {result.labels}: {result.width}x{result.height} px, {result.windows} windows, "
        f"{result.seconds:.1f} s" + (f" -> {'stdout' if to_stdout else json_path}" if json_path else ""),
        err=True,
    )


class _LazyProgress:
    """The progress bar, started at the first window: an error before it leaves stderr one line."""

    def __init__(self, disable: bool):
        self._disable = disable
        self._bar = None

    def update(self, done: int, total: int, pixels: int) -> None:
        if self._bar is None:
            from rsinfer.cli.progress import TileProgress

            self._bar = TileProgress(disable=self._disable, label="eval").__enter__()
        self._bar.update(done, total, pixels)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _print_table(result, err: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.pred} vs {result.labels}", title_justify="left")
    for name, justify in (
        ("id", "right"),
        ("class", "left"),
        ("IoU %", "right"),
        ("F1 %", "right"),
        ("pixels", "right"),
        ("predicted", "right"),
    ):
        table.add_column(name, justify=justify)
    for i, name in enumerate(result.class_names):
        ignored = i in result.ignore
        table.add_row(
            str(i),
            name + (" (ignored)" if ignored else ""),
            _pct(result.iou[i]),
            _pct(result.f1[i]),
            f"{int(result.support[i]):,}",
            f"{int(result.predicted[i]):,}",
        )
    Console(highlight=False, soft_wrap=False, stderr=err).print(table)
