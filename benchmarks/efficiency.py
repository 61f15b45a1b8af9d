"""Pipeline efficiency: end-to-end ``segment`` Mpx/s divided by model-only Mpx/s, in one run.

    python benchmarks/efficiency.py --model lanet --size 2048 --tile 512 --batch-size 4

Model-only pushes the same number of tiles, same batch, precision and backend, through the
backend with the data already in memory (on the device for CUDA): no reading, stitching or
writing. End-to-end segments a synthetic scene of ``--size``² with crop blending and zero
overlap, so both process the same pixels. 1.0 means the pipeline adds nothing around the model.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def model_only(backend, tiles: int, batch: int, bands: int, tile: int) -> float:
    """Seconds to run ``tiles`` tiles through the backend, inputs prepared beforehand."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (batch, bands, tile, tile), dtype=np.uint8)
    valid = np.ones((batch, tile, tile), dtype=bool)
    backend.predict(data, valid)  # warm-up
    if backend.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    done = 0
    while done < tiles:
        probs = backend.predict(data, valid)
        # the pipeline's stitcher takes the argmax on the device; do the same here
        probs.argmax(1).to(torch.uint8)
        done += batch
    if backend.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lanet")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--workdir", default="bench-data")
    args = ap.parse_args()

    from rsinfer.backends import TorchBackend, resolve_device
    from rsinfer.loading import load_model
    from rsinfer.pipeline import SegmentOptions, run_segment

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    scene = work / f"scene_{args.size}.tif"
    if not scene.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "rsinfer.cli.main",
                "synth",
                str(scene),
                "--size",
                f"{args.size}x{args.size}",
                "--seed",
                "1",
                "-q",
            ],
            check=True,
        )
    opts = SegmentOptions(
        input=str(scene),
        output=str(work / f"eff_{args.model}.tif"),
        model=args.model,
        tile=args.tile,
        overlap=0,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
        overwrite=True,
    )
    torch.manual_seed(0)
    report = run_segment(opts)
    end_to_end = report.megapixels / report.seconds

    loaded = load_model(opts.model, opts.weights, tile=opts.tile, overlap=opts.overlap)
    config, model = loaded.config, loaded.module
    device = resolve_device(args.device)
    if args.backend != "torch":
        raise SystemExit("model-only timing is implemented for the torch backend")
    backend = TorchBackend(model, config, device, precision=args.precision)
    seconds = model_only(backend, report.tiles, args.batch_size, config.num_bands, args.tile)
    model_mpx = report.tiles * args.tile * args.tile / 1e6 / seconds

    print(
        f"model {args.model}, {args.size}² scene, tile {args.tile}, batch {args.batch_size}, {args.precision}, "
        f"{device}, {os.cpu_count()} CPU cores"
    )
    print("| measurement | Mpx/s |")
    print("|---|---|")
    print(f"| end-to-end `segment` (read, batch, model, stitch, write) | {end_to_end:.3f} |")
    print(f"| model only (same tiles, data in memory) | {model_mpx:.3f} |")
    print(f"| **efficiency** | **{end_to_end / model_mpx:.2f}** |")


if __name__ == "__main__":
    main()
