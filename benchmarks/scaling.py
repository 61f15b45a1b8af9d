"""Scaling of the job layer on this machine, as ratios measured in one run.

    python benchmarks/scaling.py --size 3072 --scenes 4 --workers 1 2

- ``segment`` of one big scene in one process (the reference), then ``segment
  --distributed N`` of the same scene for each N in --workers;
- ``batch`` of --scenes smaller scenes with N workers for each N (when ``rsinfer batch``
  is installed), with and without ``--assemble-behind``, against ``segment`` run on them
  one after another.
Each run is a separate ``rsinfer`` process timed end to end (Ray start-up included, since a
user pays it), so the ratios are what a user sees; absolute times hold only on the machine
named in the output.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming import machine  # noqa: E402


def rsinfer(*args: str) -> float:
    """Run ``rsinfer ARGS`` and return its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rsinfer.cli.main", *args], check=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=3072, help="side of the big scene")
    ap.add_argument("--scenes", type=int, default=4, help="scenes in the batch")
    ap.add_argument("--scene-size", type=int, default=1536, help="side of each batch scene")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", default="lanet-lite")
    ap.add_argument("--workdir", default="bench-data/scaling")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    common = ["--model", args.model, "--device", "cpu", "-q", "--overwrite"]

    big = work / f"big_{args.size}.tif"
    if not big.exists():
        rsinfer("synth", str(big), "--size", f"{args.size}x{args.size}", "--seed", "21", "-q")
    mpx = args.size**2 / 1e6
    rows = [("segment, 1 process", rsinfer("segment", str(big), "-o", str(work / "one.tif"), *common))]
    for n in args.workers:
        t = rsinfer("segment", str(big), "-o", str(work / f"dist{n}.tif"), *common, "--distributed", str(n))
        rows.append((f"segment --distributed {n}", t))
    print(f"\n{machine()}\n\none {args.size}² scene ({mpx:.1f} Mpx), model {args.model}\n")
    print("| run | seconds | Mpx/s | vs 1 process |\n|---|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t:.1f} | {mpx / t:.2f} | {rows[0][1] / t:.2f}× |")

    has_batch = subprocess.run([sys.executable, "-m", "rsinfer.cli.main", "batch", "--help"], capture_output=True)
    if has_batch.returncode:
        return
    scenes = []
    for i in range(args.scenes):
        scene = work / f"scene{i}.tif"
        if not scene.exists():
            rsinfer("synth", str(scene), "--size", f"{args.scene_size}x{args.scene_size}", "--seed", str(30 + i), "-q")
        scenes.append(str(scene))
    serial = sum(rsinfer("segment", s, "-o", str(work / f"serial{i}.tif"), *common) for i, s in enumerate(scenes))
    batch_rows = [("segment, one scene after another", serial)]
    for n in args.workers:
        # A worker assembles one scene's GeoTIFF while the next runs on the model (the default),
        # or takes one scene at a time, start to end.
        for flag in ("--no-assemble-behind", "--assemble-behind"):
            t = rsinfer("batch", *scenes, "-o", str(work / f"batch{n}{flag}"), *common, "--workers", str(n), flag)
            batch_rows.append((f"batch --workers {n} {flag}", t))
    total = args.scenes * args.scene_size**2 / 1e6
    print(f"\n{args.scenes} scenes of {args.scene_size}² ({total:.1f} Mpx)\n")
    print("| run | seconds | Mpx/s | vs serial segment |\n|---|---|---|---|")
    for name, t in batch_rows:
        print(f"| {name} | {t:.1f} | {total / t:.2f} | {serial / t:.2f}× |")


if __name__ == "__main__":
    main()
