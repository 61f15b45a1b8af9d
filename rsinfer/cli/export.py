"""``rsinfer export``: a model (and its weights) as a verified ONNX graph."""
from __future__ import annotations

import click

from rsinfer.cli import options


@click.command(short_help="Export a model to ONNX (checked and verified against PyTorch).")
@options.model_opt
@options.weights_opt
@options.tile_opt
@click.option("--mode", type=click.Choice(["global-local", "global", "patch"]), default=None,
              help="Global-local models: which branches the graph runs [global-local].")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="model.onnx")
@options.overwrite_opt
def export(model, weights, tile, mode, output, overwrite):
    """Export a model with a dynamic batch axis for tiles of --tile px. The graph passes onnx's
    checker and matches PyTorch (max |logit difference| <= 1e-3) on a random batch before it is
    written; global-local models also write OUTPUT's .global.onnx (the global branch)."""
    from pathlib import Path

    from rsinfer.errors import RsinferError
    from rsinfer.export import export_onnx, global_graph_path
    from rsinfer.pipeline import SegmentOptions, build_model, set_model_mode

    for p in (Path(output), global_graph_path(output)):
        if p.exists() and not overwrite:
            raise RsinferError(f"{p}: output exists; pass --overwrite to replace it")
    config, net = build_model(SegmentOptions(input="", output="", model=model, weights=weights, tile=tile))
    set_model_mode(net, mode, config)
    result = export_onnx(net, config, config.tile, output)
    click.echo(f"rsinfer: exported {config.name} (tile {config.tile}) to {', '.join(result.paths)}; "
               f"max |logit difference| vs PyTorch {result.max_abs_diff:.1e}", err=True)
