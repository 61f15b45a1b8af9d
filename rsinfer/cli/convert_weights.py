"""``rsinfer convert-weights``: any supported checkpoint layout in, a clean safetensors file out.

A checkpoint trained with other classes or bands than the registered config (the authors'
LANet Potsdam file: 5 bands, 7 classes; GLNet's DeepGlobe files: 7 classes) converts with
``--classes``, ``--bands`` and ``--set KEY=VALUE``; without them, class and band counts that
differ are read from the checkpoint's classifier and stem shapes, and said. Whatever is
set or inferred goes into the manifest entry, so ``--weights NAME`` later builds the same model.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def _value(text: str):
    """A ``--set`` value: JSON, or comma-separated numbers/words, or one number/word."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    items = [_scalar(v.strip()) for v in text.split(",")]
    return items if "," in text else items[0]


def _scalar(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_overrides(bands: str | None, classes: str | None, settings: tuple[str, ...]) -> dict:
    """The manifest config fields (JSON values) that ``--bands``, ``--classes`` and ``--set`` ask for."""
    from rsinfer.errors import RsinferError
    from rsinfer.weights import CONFIG_OVERRIDES, class_palette

    out: dict = {}
    for item in settings:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or key not in CONFIG_OVERRIDES:
            raise RsinferError(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(CONFIG_OVERRIDES)}")
        out[key] = _value(text.strip())
    if bands:
        names = [b.strip() for b in bands.split(",") if b.strip()]
        if len(names) == 1 and names[0].isdigit():
            names = [f"band{i + 1}" for i in range(int(names[0]))]
        out["in_bands"] = names
    if classes:
        out["class_names"] = [c.strip() for c in classes.split(",") if c.strip()]
        out.setdefault("class_colors", class_palette(len(out["class_names"])))
    for key in ("mean", "std", "in_bands", "class_names"):
        if key in out and not isinstance(out[key], list):
            out[key] = [out[key]]
    return out


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
@click.option(
    "--bands",
    default=None,
    help="The checkpoint's input bands, in model order (red,green,blue,nir,dsm), or their count; "
    "give their normalization with --set mean=... --set std=... [the model's, or the count the stem takes].",
)
@click.option(
    "--classes",
    default=None,
    help="The checkpoint's class names, in output order (e.g. invalid,impervious,...) "
    "[the model's, or class0..classN-1 for the count its classifier gives].",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Another config field for the entry (repeatable): mean, std, input_range, class_colors, "
    "tile, overlap, global_size, region, neighbourhood, procedure; lists comma-separated or JSON.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def convert_weights(
    input, output, model, name, manifest, source, license_, description, bands, classes, settings, overwrite
):
    """Read INPUT safely (authors' layouts and full training checkpoints included), check it
    loads strictly into MODEL (with the classes/bands given or read from the checkpoint),
    write OUTPUT as safetensors and record it (sha256, source, license, config) in a manifest."""
    from rsinfer.errors import RsinferError
    from rsinfer.io.outputs import atomic_outputs, check_outputs
    from rsinfer.models import create_model, get_config
    from rsinfer.weights import (
        WeightEntry,
        adapt_state_dict,
        class_palette,
        config_changes,
        infer_shapes,
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
        base = get_config(model)
    except KeyError as err:
        raise RsinferError(str(err.args[0])) from None
    fields = parse_overrides(bands, classes, settings)
    checkpoint = read_checkpoint(input)
    try:
        config = base.replace(**config_changes(fields))
        inferred = infer_shapes(model, config, checkpoint)
    except ValueError as err:
        raise RsinferError(f"{input}: {err}") from None
    said = []
    if "classes" in inferred and "class_names" not in fields:
        n = inferred["classes"]
        fields["class_names"] = [f"class{i}" for i in range(n)]
        fields["class_colors"] = class_palette(n)
        said.append(f"{n} classes (named class0..class{n - 1}; --classes to name them)")
    if "bands" in inferred and "in_bands" not in fields:
        n = inferred["bands"]
        fields["in_bands"] = [f"band{i + 1}" for i in range(n)]
        said.append(f"{n} bands (band1..band{n}; --bands to name them)")
    if said:
        click.echo(f"rsinfer: inferred from the checkpoint's shapes: {', '.join(said)}", err=True)
    try:
        config = base.replace(**config_changes(fields))
    except ValueError as err:
        hint = ""
        if "in_bands" in fields and len(fields["in_bands"]) != base.num_bands:
            hint = f"; the checkpoint takes {len(fields['in_bands'])} bands: give their --set mean=... --set std=..."
        raise RsinferError(f"{input}: {err}{hint}") from None
    net = create_model(model, config)
    state = adapt_state_dict(model, net, checkpoint)
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
        config=fields,
        source=source,
        license=license_,
        description=description,
    )
    save_manifest_entry(manifest_path, entry)
    click.echo(f"rsinfer: wrote {out} ({len(state)} tensors) and entry {entry.name!r} in {manifest_path}", err=True)
