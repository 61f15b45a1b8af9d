"""``rsinfer export``: a model (and its weights) as a verified ONNX graph."""

from __future__ import annotations

import click

from rsinfer.cli import options


@click.command(short_help="Export a model to ONNX (checked and verified against PyTorch).")
@options.model_opt
@options.weights_opt
@options.tile_opt
@click.option(
    "--mode",
    type=click.Choice(["global-local", "global", "patch"]),
    default=None,
    help="Global-local models: which branches the graph runs [global-local].",
)
@options.global_size_opt
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="model.onnx")
@options.overwrite_opt
def export(model, weights, tile, mode, global_size, output, overwrite):
    """Export a model for tiles of --tile px, with a dynamic batch axis (and dynamic spatial axes
    where the graph is verified to compute at another size). The graph passes onnx's
    checker and matches PyTorch (max |logit difference| <= 1e-3) on a random batch before it is
    written; global-local models also write OUTPUT's .global.onnx (the global branch)."""
    from rsinfer.export import export_onnx, global_graph_path
    from rsinfer.io.outputs import check_outputs
    from rsinfer.loading import load_model

    check_outputs([output, global_graph_path(output)], overwrite)
    loaded = load_model(model, weights, tile=tile, global_size=global_size)
    loaded.set_mode(mode)
    config = loaded.config
    result = export_onnx(loaded.module, config, config.tile, output)
    click.echo(
        f"rsinfer: exported {config.name} (tile {config.tile}) to {', '.join(result.paths)}; "
        f"max |logit difference| vs PyTorch {result.max_abs_diff:.1e}",
        err=True,
    )
