"""Print a sha256 of every output a fixed set of ``rsinfer segment`` runs writes.

Run it before and after a change to the pipeline: identical digests mean the change left
every output byte-identical (demo scene, each raster in the shared real-data folder,
GeoTIFF and zarr, every blend mode, probabilities, a global-local model).

    python scripts/output_digests.py WORKDIR [--real DIR] > digests.txt
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path


def tree_digest(path: Path) -> str:
    """sha256 over a file, or over every file of a directory store (names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        digest.update(str(f.relative_to(path.parent)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def run(args: list[str]) -> int:
    cmd = [sys.executable, "-m", "rsinfer.cli.main", *args, "--overwrite", "--quiet"]
    return subprocess.run(cmd, capture_output=True).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    default_real = os.environ.get("RSINFER_REAL_DATA", str(Path(__file__).resolve().parents[2] / "shared/data/real"))
    parser.add_argument("--real", type=Path, default=Path(default_real))
    parser.add_argument("--size", default="2048x1536", help="demo scene size")
    ns = parser.parse_args()
    work = ns.workdir
    work.mkdir(parents=True, exist_ok=True)
    scene = work / "scene.tif"
    run(["synth", str(scene), "--size", ns.size, "--seed", "1"])
    print(f"input {scene.name} {tree_digest(scene)}")
    cases: list[tuple[str, Path, list[str]]] = [
        ("demo-crop", scene, []),
        ("demo-linear-probs", scene, ["--blend", "linear", "--probs"]),
        ("demo-gaussian", scene, ["--blend", "gaussian", "--tile", "256", "--overlap", "32"]),
        ("demo-zarr", scene, ["--probs"]),
        ("demo-glcanet", scene, ["--model", "glcanet-lite"]),
        ("demo-glcanet-global", scene, ["--model", "glcanet-lite", "--mode", "global"]),
        ("demo-ammunet", scene, ["--model", "ammunet-lite", "--tile", "256", "--overlap", "32"]),
    ]
    for real in sorted(ns.real.glob("*.tif")):
        cases.append((f"real-{real.stem}", real, []))
        cases.append((f"real-{real.stem}-glcanet", real, ["--model", "glcanet-lite"]))
    for name, src, extra in cases:
        out = work / (f"{name}.zarr" if "zarr" in name else f"{name}.tif")
        rc = run(["segment", str(src), "-o", str(out), *extra])
        digest = tree_digest(out) if out.exists() else "-"
        print(f"{name} exit={rc} {digest}", flush=True)


if __name__ == "__main__":
    main()
