"""``rsinfer models``: the registered models and their defaults."""

from __future__ import annotations

import json
import sys

import click


@click.command(short_help="List models and their defaults.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--no-flops", is_flag=True, help="Skip counting GFLOPs (faster).")
@click.argument("patterns", nargs=-1, metavar="[NAME]...")
def models(as_json, no_flops, patterns):
    """List the registered models: parameters, GFLOPs at the default tile, tile, classes, bands,
    and the bundled weights a model runs with by default (none: random weights).

    NAME: only these models; shell-style patterns such as '*-lite' are taken too.
    Counting GFLOPs traces each network once (about 10 s for all of them on two cores).
    """
    from rich.console import Console
    from rich.table import Table

    from rsinfer.errors import RsinferError
    from rsinfer.models import list_models
    from rsinfer.models.complexity import model_complexity
    from rsinfer.weights import default_weights

    names = list_models()
    if patterns:
        wanted = {p: list_models(p) for p in patterns}
        unknown = [p for p, found in wanted.items() if not found]
        if unknown:
            raise RsinferError(f"no model named {', '.join(unknown)}; see rsinfer models --no-flops")
        names = [n for n in names if any(n in found for found in wanted.values())]
    rows = []
    for name in names:
        c = model_complexity(name, flops=not no_flops)
        cfg = c.config
        rows.append(
            {
                "name": name,
                "params_m": round(c.params / 1e6, 3),
                "gflops": None if c.flops is None else round(c.flops / 1e9, 2),
                "tile": cfg.tile,
                "overlap": cfg.overlap,
                "classes": cfg.num_classes,
                "bands": list(cfg.in_bands),
                "size_multiple": cfg.size_multiple,
                "paper": cfg.paper,
                "description": cfg.description,
                "weights": default_weights(name),
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not sys.stdout.isatty():  # piped: one tab-separated line per model, no wrapping
        columns = ("name", "params_m", "gflops", "tile", "overlap", "classes", "bands", "weights", "paper")
        click.echo("\t".join(columns))
        for r in rows:
            cells = [",".join(r[c]) if c == "bands" else r[c] for c in columns]
            click.echo("\t".join("" if v is None else str(v) for v in cells))
        return
    table = Table(title="rsinfer models (GFLOPs: 2 x multiply-adds, one tile, batch 1)")
    table.add_column("model", no_wrap=True)
    for col in ("params (M)", "GFLOPs", "tile", "overlap", "classes"):
        table.add_column(col, justify="right")
    table.add_column("bands", overflow="fold")
    table.add_column("weights", overflow="fold")
    table.add_column("paper", overflow="fold")
    for r in rows:
        table.add_row(
            r["name"],
            f"{r['params_m']:.2f}",
            "-" if r["gflops"] is None else f"{r['gflops']:.1f}",
            str(r["tile"]),
            str(r["overlap"]),
            str(r["classes"]),
            ",".join(r["bands"]),
            r["weights"] or "random",
            r["paper"] or "-",
        )
    Console().print(table)
