"""The ``rsinfer`` command group and its error handling."""

from __future__ import annotations

import sys
import warnings

import click

from rsinfer import __version__
from rsinfer.errors import RsinferError


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"rsinfer: warning: {message}", err=True)


class RsinferGroup(click.Group):
    """Reports RsinferError as one line on stderr with exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RsinferError as err:
            code = getattr(err, "exit_code", 1)  # 128 + signal for a run a signal stopped
            click.echo(f"rsinfer: {'error: ' if code == 1 else ''}{err}", err=True)
            ctx.exit(code)
        except KeyboardInterrupt:
            click.echo("rsinfer: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=RsinferGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rsinfer")
@click.option("--verbose", "-v", count=True, help="More log lines (-vv: debug).")
@click.option("--quiet", "-q", is_flag=True, help="No progress, warnings or summaries (as each command's -q).")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also append every log line, with timestamps, to this file.",
)
@click.option(
    "--log-interval",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds between progress lines when stderr is not a terminal (batch jobs, CI).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="RSINFER_CONFIG",
    help='TOML file of option defaults, one table per command ([segment] model = "lanet") [RSINFER_CONFIG].',
)
@click.pass_context
def main(ctx, verbose, quiet, log_file, log_interval, config_file) -> None:
    """Semantic segmentation of huge georeferenced rasters, streamed tile by tile."""
    from rsinfer.cli.logs import setup_logging
    from rsinfer.cli.settings import load_defaults

    warnings.showwarning = _show_warning
    setup_logging(verbose, quiet, log_file)
    ctx.obj = {"quiet": quiet, "log_interval": log_interval}
    if config_file:
        ctx.default_map = load_defaults(config_file, ctx.command)


def _register() -> None:
    from . import batch, bench, convert_weights, evaluate, export, list_models, segment, synth, vectorize

    main.add_command(segment.segment)
    main.add_command(batch.batch)
    main.add_command(convert_weights.convert_weights)
    main.add_command(export.export)
    main.add_command(bench.bench)
    main.add_command(evaluate.evaluate)
    main.add_command(synth.synth)
    main.add_command(list_models.models)
    main.add_command(vectorize.vectorize)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
