"""Benchmark tables: rich on screen, JSON, CSV, Markdown, and a PNG chart; papers' figures beside ours."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..io.outputs import atomic_outputs
from .paper import MEMORY_TABLE_SOURCE, PAPER_GLOBAL_LOCAL, PAPER_MEMORY, PAPER_SPEED


def _mb(row: dict) -> float:
    """The memory figure of a row: device-level used memory on CUDA (as gpustat), else peak RSS."""
    return row.get("device_used_mb") or row["peak_rss_mb"]


def memory_table(rows: list[dict]) -> list[dict]:
    """One line per model: ours (patch, global or global-local) with the paper's beside."""
    out: dict[str, dict] = {}
    for r in rows:
        line = out.setdefault(r["model"], {"model": r["model"]})
        line[f"{r['setting']}_mb"] = round(_mb(r), 1)
        line[f"{r['setting']}_s"] = round(r["seconds"], 2)
        if "cuda_peak_allocated_mb" in r:
            line[f"{r['setting']}_allocated_mb"] = round(r["cuda_peak_allocated_mb"], 1)
        line["device"] = r["device"]
        line["idle_rss_mb"] = round(r["idle_rss_mb"], 1)
    for name, line in out.items():
        if name in PAPER_MEMORY:
            _, patch_mb, _, global_mb = PAPER_MEMORY[name]
            line.update(paper_patch_mb=patch_mb, paper_global_mb=global_mb)
        if name in PAPER_GLOBAL_LOCAL:
            line.update(paper_global_local_mb=PAPER_GLOBAL_LOCAL[name][1])
    return list(out.values())


MEMORY_COLUMNS = (
    "model",
    "patch_mb",
    "global_mb",
    "global-local_mb",
    "paper_patch_mb",
    "paper_global_mb",
    "paper_global_local_mb",
    "patch_s",
    "global_s",
    "global-local_s",
    "device",
)


def speed_table(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        out.append(
            {
                k: (round(v, 3) if isinstance(v, float) else v)
                for k, v in r.items()
                if k
                in (
                    "model",
                    "size",
                    "backend",
                    "precision",
                    "batch",
                    "params_m",
                    "gflops",
                    "p50_ms",
                    "p95_ms",
                    "fps",
                    "mpx_per_s",
                    "agree_pct",
                    "device",
                )
            }
        )
    for name in dict.fromkeys(r["model"] for r in rows):
        for size, params, gflops, fps, gpu, source in PAPER_SPEED.get(name, []):
            out.append(
                {
                    "model": f"{name} (paper: {source})",
                    "size": size,
                    "backend": "-",
                    "precision": "-",
                    "batch": 1,
                    "params_m": params,
                    "gflops": gflops,
                    "fps": fps,
                    "device": gpu,
                }
            )
    return out


SPEED_COLUMNS = (
    "model",
    "size",
    "backend",
    "precision",
    "batch",
    "params_m",
    "gflops",
    "p50_ms",
    "p95_ms",
    "fps",
    "mpx_per_s",
    "agree_pct",  # labels equal to torch fp32's on the same device and input, % (rows other than torch fp32)
    "device",
)


def _write(path: str, text: str) -> None:
    with atomic_outputs([path], overwrite=True, check=False) as (partial,):
        Path(partial).write_text(text)


def to_markdown(lines: list[dict], columns: tuple[str, ...]) -> str:
    cols = [c for c in columns if any(c in line for line in lines)]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(str(line.get(c, "-")) for c in cols) + " |\n" for line in lines)
    return head + body


def write_outputs(
    lines: list[dict], columns: tuple[str, ...], json_path=None, csv_path=None, md_path=None, meta: dict | None = None
) -> None:
    if json_path:
        _write(json_path, json.dumps({"meta": meta or {}, "rows": lines}, indent=2) + "\n")
    if csv_path:
        cols = [c for c in columns if any(c in line for line in lines)]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(lines)
        _write(csv_path, buf.getvalue())
    if md_path:
        note = f"Paper figures: {MEMORY_TABLE_SOURCE}.\n\n" if "paper_patch_mb" in columns else ""
        _write(md_path, note + to_markdown(lines, columns))


def memory_chart(lines: list[dict], path: str, title: str) -> None:
    """Grouped bars: our patch and global (or global-local) memory per model, paper's as outlines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [line["model"] for line in lines]
    x = np.arange(len(names))
    ours_patch = [line.get("patch_mb", 0) for line in lines]
    ours_global = [line.get("global_mb", line.get("global-local_mb", 0)) for line in lines]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4.5))
    ax.bar(x - 0.2, ours_patch, 0.4, label="patch (ours)", color="#4C72B0")
    ax.bar(x + 0.2, ours_global, 0.4, label="global / global-local (ours)", color="#DD8452")
    paper_patch = [line.get("paper_patch_mb") for line in lines]
    paper_global = [line.get("paper_global_mb", line.get("paper_global_local_mb")) for line in lines]
    for xs, vals in ((x - 0.2, paper_patch), (x + 0.2, paper_global)):
        pts = [(xi, v) for xi, v in zip(xs, vals) if v]
        if pts:
            px, py = zip(*pts)
            ax.scatter(px, py, marker="_", s=400, color="black", label=None)
    ax.scatter([], [], marker="_", s=200, color="black", label="paper (GLCANet Table 1, 1080Ti)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("peak memory (MB)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    with atomic_outputs([path], overwrite=True, check=False) as (partial,):
        fig.savefig(partial, dpi=110, format="png")
    plt.close(fig)
