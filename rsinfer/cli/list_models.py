"""``rsinfer models``: the registered models and their defaults."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click


class ComplexityCache:
    """Parameter and FLOP counts of earlier runs, in the cache folder: building every network
    and tracing it takes seconds.

    One JSON file per version of the model code and of torch (its name carries a digest of
    both), so a changed network is counted again. A cache that cannot be read or written
    is only slower.
    """

    def __init__(self) -> None:
        import hashlib
        import json

        import torch

        import rsinfer.models
        from rsinfer.cache import cache_root

        digest = hashlib.sha256(torch.__version__.encode())
        for source in sorted(Path(rsinfer.models.__file__).parent.glob("*.py")):
            digest.update(source.name.encode() + source.read_bytes())
        self.path = cache_root() / f"complexity-{digest.hexdigest()[:16]}.json"
        try:
            self.counts: dict[str, dict] = dict(json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            self.counts = {}

    def get(self, name: str) -> tuple[int | None, int | None]:
        """(parameters, FLOPs), None for either not counted yet."""
        entry = self.counts.get(name)
        if not isinstance(entry, dict):
            return None, None
        return entry.get("params"), entry.get("flops")

    def put(self, name: str, params: int, flops: int | None) -> tuple[int, int | None]:
        import json

        flops = flops if flops is not None else self.get(name)[1]
        self.counts[name] = {"params": params, "flops": flops}
        try:  # whole or not at all: written beside, then renamed
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")
            partial.write_text(json.dumps(self.counts))
            os.replace(partial, self.path)
        except OSError:
            pass
        return params, flops


@click.command(short_help="List models and their defaults.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--no-flops", is_flag=True, help="Skip counting GFLOPs (faster).")
@click.argument("patterns", nargs=-1, metavar="[NAME]...")
def models(as_json, no_flops, patterns):
    """List the registered models: parameters, GFLOPs at the default tile, tile, classes, bands,
    and the bundled weights a model runs with by default (none: random weights).

    NAME: only these models; shell-style patterns such as '*-lite' are taken too.
    Parameters and GFLOPs are counted by building and tracing each network once (about 10 s
    for all of them on two cores) and kept in the cache folder (RSINFER_CACHE) for next time.
    """
    from rich.console import Console
    from rich.table import Table

    from rsinfer.errors import RsinferError
    from rsinfer.models import get_config, list_models
    from rsinfer.models.complexity import model_complexity
    from rsinfer.weights import default_weights

    names = list_models()
    if patterns:
        wanted = {p: list_models(p) for p in patterns}
        unknown = [p for p, found in wanted.items() if not found]
        if unknown:
            raise RsinferError(f"no model named {', '.join(unknown)}; see rsinfer models --no-flops")
        names = [n for n in names if any(n in found for found in wanted.values())]
    counted = ComplexityCache()
    rows = []
    for name in names:
        cfg = get_config(name)
        params, flops = counted.get(name)
        if params is None or (flops is None and not no_flops):
            c = model_complexity(name, flops=not no_flops)
            params, flops = counted.put(name, c.params, c.flops)
        rows.append(
            {
                "name": name,
                "params_m": round(params / 1e6, 3),
                "gflops": None if flops is None or no_flops else round(flops / 1e9, 2),
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
