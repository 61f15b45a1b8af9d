"""Accuracy of the bundled demo weights on a held-out synthetic scene, tiled and whole-image.

    python benchmarks/accuracy.py --size 4000 --seed 7 --json docs/accuracy.json
    python benchmarks/accuracy.py --models glnet-lite --json docs/accuracy.json   # one model's rows

For every model with default weights in the manifest: the full tiled pipeline (the model's
own tile and overlap, linear blending) and whole-image inference (one tile covering the
scene) through the same pipeline, each scored with ``rsinfer eval``'s metrics. Global-local
models are also run in each ``--mode`` (patch, global, global-local): the accuracy half of
the patch-vs-global table. The scene's seed is none of the training seeds
(scripts/train_demo_weights.py), so its city layout was never seen in training.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from rsinfer.evaluation import evaluate_rasters
from rsinfer.models import get_config
from rsinfer.pipeline import SegmentOptions, run_segment
from rsinfer.synth import write_synthetic_scene
from rsinfer.weights import load_manifest


def demo_models() -> list[str]:
    return sorted({e.model for e in load_manifest().values() if e.default})


def score(scene: Path, labels: Path, out: Path, **options) -> dict:
    report = run_segment(SegmentOptions(input=str(scene), output=str(out), device="cpu", overwrite=True, **options))
    result = evaluate_rasters(out, labels)
    # No memory column: peak RSS is the process's, so later runs would inherit earlier peaks
    # (`rsinfer bench memory` measures memory, one process per configuration).
    return {
        "miou": result.miou,
        "oa": result.oa,
        "mean_f1": result.mean_f1,
        "seconds": report.seconds,
        "iou": dict(zip(result.class_names, (None if v != v else float(v) for v in result.iou))),
    }


def runs_for(name: str, size: int, tiling: dict) -> list[tuple[str, dict]]:
    """(label, SegmentOptions fields) of every configuration measured for ``name``.

    ``tiling``: tile/overlap for the tiled runs (empty: the model's own).
    """
    whole = dict(tile=size, overlap=0, batch_size=1)
    if get_config(name).is_global_local:
        return [
            ("tiled patch", dict(mode="patch", **tiling)),
            ("tiled global", dict(mode="global", **tiling)),
            ("tiled global-local", dict(mode="global-local", **tiling)),
            ("whole global-local", dict(mode="global-local", **whole)),
        ]
    return [("tiled", tiling), ("whole", whole)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--models", nargs="+", default=None, help="[every model with default weights]")
    parser.add_argument("--tile", type=int, default=None, help="Tile side of the tiled runs [the model's].")
    parser.add_argument("--overlap", type=int, default=None, help="Overlap of the tiled runs [the model's].")
    parser.add_argument("--work", type=Path, default=Path("bench-data/accuracy"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    scene = args.work / f"heldout-{args.seed}-{args.size}.tif"
    labels = args.work / f"heldout-{args.seed}-{args.size}_labels.tif"
    if not labels.exists():
        write_synthetic_scene(str(scene), str(labels), args.size, args.size, seed=args.seed)
    rows = []
    print("| model | run | mIoU % | OA % | mean F1 % | seconds |\n|---|---|---:|---:|---:|---:|", flush=True)
    for name in args.models or demo_models():
        tiling = {k: v for k, v in (("tile", args.tile), ("overlap", args.overlap)) if v is not None}
        for label, options in runs_for(name, args.size, tiling):
            row = {
                "model": name,
                "run": label,
                **score(scene, labels, args.work / f"{name}-{label.replace(' ', '-')}.tif", model=name, **options),
            }
            rows.append(row)
            print(
                f"| {name} | {label} | {100 * row['miou']:.2f} | {100 * row['oa']:.2f} | {100 * row['mean_f1']:.2f} "
                f"| {row['seconds']:.0f} |",
                flush=True,
            )
    if args.json:
        command = " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])])
        machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
        meta = {"command": command, "size": args.size, "seed": args.seed, "machine": machine}
        if args.models and args.json.exists():
            # --models NAME ...: replace those models' rows, keep the others (same scene only)
            old = json.loads(args.json.read_text())
            if (old["meta"]["size"], old["meta"]["seed"]) != (args.size, args.seed):
                raise SystemExit(f"{args.json} holds another scene (size/seed); write to a new file")
            kept = [r for r in old["rows"] if r["model"] not in set(args.models)]
            added = old["meta"].get("added", []) + [{"command": command, "models": args.models, "machine": machine}]
            meta = {**old["meta"], "added": added}
            rows = sorted(kept + rows, key=lambda r: r["model"])
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
