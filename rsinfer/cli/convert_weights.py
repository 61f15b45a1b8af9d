"""``rsinfer convert-weights``: any supported checkpoint layout in, a clean safetensors file out."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("convert-weights", short_help="Convert a checkpoint to safetensors plus a manifest entry.")
@click.argument("input", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--model", "-m", required=True, help="Registered model the checkpoint belongs to.")
@click.option("--name", default=None, help="Manifest entry name [OUTPUT's stem].")
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False),
    default=None,
    help="Manifest to add the entry to [manifest.json beside OUTPUT].",
)
@click.option("--source", default="", help="Where the weights come from (paper, repository, training run).")
@click.option("--license", "license_", default="", help="The weights' license.")
@click.option("--description", default="", help="What the weights are for.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def convert_weights(input, output, model, name, manifest, source, license_, description, overwrite):
    """Read INPUT safely (authors' layouts included), check it loads strictly into MODEL,
    write OUTPUT as safetensors and record it (sha256, source, license) in a manifest."""
    from rsinfer.errors import RsinferError
    from rsinfer.io.outputs import atomic_outputs, check_outputs
    from rsinfer.models import create_model, get_config
    from rsinfer.weights import (
        WeightEntry,
        adapt_state_dict,
        load_into,
        read_checkpoint,
        save_manifest_entry,
        save_safetensors,
        sha256_of,
    )

    out = Path(output)
    if out.suffix != ".safetensors":
        raise RsinferError(f"{out}: the output must be a .safetensors file")
    check_outputs([out], overwrite)
    try:
        config = get_config(model)
    except KeyError as err:
        raise RsinferError(str(err.args[0])) from None
    net = create_model(model, config)
    state = adapt_state_dict(model, net, read_checkpoint(input))
    load_into(net, state, input)  # refuses anything that does not fit, before writing
    with atomic_outputs([out], overwrite, check=False) as (partial,):
        save_safetensors(net.state_dict(), partial, metadata={"model": model, "source": source})
    manifest_path = Path(manifest) if manifest else out.parent / "manifest.json"
    try:
        file = str(out.resolve().relative_to(manifest_path.resolve().parent))
    except ValueError:
        file = str(out.resolve())
    entry = WeightEntry(
        name=name or out.stem,
        file=file,
        model=model,
        sha256=sha256_of(out),
        source=source,
        license=license_,
        description=description,
    )
    save_manifest_entry(manifest_path, entry)
    click.echo(f"rsinfer: wrote {out} ({len(state)} tensors) and entry {entry.name!r} in {manifest_path}", err=True)
