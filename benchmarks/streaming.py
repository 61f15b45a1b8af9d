"""Streaming benchmark: segment synthetic scenes of several sizes, report time, Mpx/s and peak RSS.

    python benchmarks/streaming.py --sizes 5000 30000 --model simple-fcn

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
    return (f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {gpu}; "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def run_one(scene: Path, out: Path, model: str, device: str, batch: int, blend: str, extra: list[str]) -> dict:
    """Segment ``scene`` in a child process and return its report as a dict."""
    code = (
        "import json, sys\n"
        "from rsinfer.pipeline import SegmentOptions, run_segment\n"
        f"r = run_segment(SegmentOptions(input={str(scene)!r}, output={str(out)!r}, model={model!r}, device={device!r},"
        f" batch_size={batch}, blend={blend!r}, overwrite=True))\n"
        "print(json.dumps(dict(seconds=r.seconds, mpx=r.megapixels, mpx_per_s=r.mpx_per_s, peak_rss_mb=r.peak_rss_mb,"
        " tiles=r.tiles, device=r.device)))\n"
    )
    res = subprocess.run([sys.executable, "-c", code, *extra], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 30000])
    ap.add_argument("--model", default="simple-fcn")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--blend", default="linear")
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
            subprocess.run([sys.executable, "-m", "rsinfer.cli.main", "synth", str(scene), "--size", f"{size}x{size}",
                            "--seed", "1", "--quiet"], check=True)
            print(f"synth {size}x{size}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        out = work / f"labels_{size}.tif"
        r = run_one(scene, out, args.model, args.device, args.batch_size, args.blend, [])
        r["size"] = size
        rows.append(r)
        print(f"{size}x{size}: {r['seconds']:.1f} s, {r['mpx_per_s']:.2f} Mpx/s, peak RSS {r['peak_rss_mb']:.0f} MB",
              file=sys.stderr)

    print(f"\nMachine: {machine()}")
    print(f"Model {args.model}, blend {args.blend}, batch {args.batch_size}, device {rows[0]['device']}\n")
    print("| raster | tiles | wall time (s) | Mpx/s | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']}×{r['size']} | {r['tiles']} | {r['seconds']:.1f} | {r['mpx_per_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    if len(rows) > 1:
        base = rows[0]["peak_rss_mb"]
        print(f"\nPeak RSS of the largest run is {rows[-1]['peak_rss_mb'] / base:.2f}× the smallest's.")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": machine(), "args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
