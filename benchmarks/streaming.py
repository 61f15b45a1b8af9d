"""Segment benchmark: synthetic scenes of several sizes (and modes), time, Mpx/s and peak RSS.

    python benchmarks/streaming.py --sizes 5000 30000 --model simple-fcn
    python benchmarks/streaming.py --sizes 2448 --model glcanet --modes patch global global-local

Each scene is made with ``rsinfer synth`` (once; reused when present in --workdir) and
segmented by ``rsinfer segment`` in its own process, so each peak RSS is that run's
alone. The point: peak memory must not grow with the raster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def machine() -> str:
    import psutil
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {gpu}; "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def run_one(scene: Path, out: Path, model: str, device: str, batch: int, blend: str, mode: str | None) -> dict:
    """Segment ``scene`` in a child process (so peaks do not mix) and return its report as a dict."""
    code = (
        "import json, torch\n"
        "from rsinfer.pipeline import SegmentOptions, run_segment\n"
        f"r = run_segment(SegmentOptions(input={str(scene)!r}, output={str(out)!r}, model={model!r}, device={device!r},"
        f" batch_size={batch}, blend={blend!r}, mode={mode!r}, overwrite=True))\n"
        "cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None\n"
        "print(json.dumps(dict(seconds=r.seconds, mpx=r.megapixels, mpx_per_s=r.mpx_per_s, peak_rss_mb=r.peak_rss_mb,"
        " cuda_peak_mb=cuda, tiles=r.tiles, device=r.device)))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"segment {scene} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 30000])
    ap.add_argument("--model", default="simple-fcn")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--blend", default="crop")
    ap.add_argument("--modes", nargs="+", default=[None], help="global-local models: patch, global, global-local")
    ap.add_argument("--workdir", default="bench-data")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    args = ap.parse_args()

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        scene = work / f"scene_{size}.tif"
        if not scene.exists():
            t0 = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "rsinfer.cli.main",
                    "synth",
                    str(scene),
                    "--size",
                    f"{size}x{size}",
                    "--seed",
                    "1",
                    "--quiet",
                ],
                check=True,
            )
            print(f"synth {size}x{size}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for mode in args.modes:
            out = work / f"labels_{size}_{args.model}_{mode or 'default'}.tif"
            r = run_one(scene, out, args.model, args.device, args.batch_size, args.blend, mode)
            r.update(size=size, mode=mode or "-")
            rows.append(r)
            print(
                f"{size}x{size} {mode or ''}: {r['seconds']:.1f} s, {r['mpx_per_s']:.2f} Mpx/s, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB",
                file=sys.stderr,
            )

    print(f"\nMachine: {machine()}")
    print(f"Model {args.model}, blend {args.blend}, batch {args.batch_size}, device {rows[0]['device']}\n")
    print("| raster | mode | tiles | wall time (s) | Mpx/s | peak RSS (MB) | CUDA peak allocated (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cuda = "-" if r["cuda_peak_mb"] is None else f"{r['cuda_peak_mb']:.0f}"
        print(
            f"| {r['size']}×{r['size']} | {r['mode']} | {r['tiles']} | {r['seconds']:.1f} | {r['mpx_per_s']:.3f} | "
            f"{r['peak_rss_mb']:.0f} | {cuda} |"
        )
    if len(args.sizes) > 1:
        base = rows[0]["peak_rss_mb"]
        print(f"\nPeak RSS of the largest run is {rows[-1]['peak_rss_mb'] / base:.2f}× the smallest's.")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": machine(), "args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
