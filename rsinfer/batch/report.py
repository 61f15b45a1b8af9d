"""Batch results: one row per scene, the summary, and the JSON + CSV report."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..io.outputs import atomic_outputs
from .inputs import Scene

Status = Literal["ok", "failed", "skipped"]
REPORT_FIELDS = (
    "input",
    "output",
    "status",
    "error",
    "seconds",
    "mpx_per_s",
    "tiles",
    "worker",
    "device",
    "gpus",
    "attempts",
)


@dataclass
class SceneResult:
    """One row of the report; ``retry``, ``megapixels``, ``warnings`` and the times stay out of it."""

    input: str
    output: str
    status: Status
    error: str | None = None
    seconds: float = 0.0
    mpx_per_s: float | None = None
    tiles: int | None = None
    worker: str = ""
    device: str = ""
    gpus: str = ""  # the Ray GPU ids the worker held ("0", "0,1"); "" on CPU workers
    attempts: int = 0
    retry: bool = False  # a failure another attempt may fix (not bad input)
    megapixels: float = 0.0
    warnings: list[str] = field(default_factory=list)
    # wall-clock (time.time()) when the scene got the model, let it go, and ended
    on_model: tuple[float, float] | None = None
    ended: float | None = None

    def row(self) -> dict[str, Any]:
        row = {k: v for k, v in asdict(self).items() if k in REPORT_FIELDS}
        row["seconds"] = round(self.seconds, 3)
        row["mpx_per_s"] = None if self.mpx_per_s is None else round(self.mpx_per_s, 3)
        return row


def skipped_result(scene: Scene) -> SceneResult:
    return SceneResult(scene.input, scene.output, "skipped")


# --- the report ------------------------------------------------------------------------


def summarize(results: Sequence[SceneResult], seconds: float, workers: int) -> dict[str, Any]:
    """Counts, wall time and throughput of the scenes this run segmented."""
    megapixels = sum(r.megapixels for r in results if r.status == "ok")
    return {
        "scenes": len(results),
        "ok": sum(r.status == "ok" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
        "retries": sum(max(0, r.attempts - 1) for r in results),
        "workers": workers,
        "seconds": round(seconds, 3),
        "megapixels": round(megapixels, 3),
        "mpx_per_s": round(megapixels / seconds, 3) if seconds > 0 else None,
    }


def summary_line(summary: dict[str, Any]) -> str:
    rate = summary["mpx_per_s"]
    return (
        f"rsinfer batch: {summary['scenes']} scenes, ok {summary['ok']}, failed {summary['failed']}, "
        f"skipped {summary['skipped']}, {summary['seconds']:.1f} s, {rate or 0:.2f} Mpx/s"
    )


def report_paths(path: str) -> tuple[str, str]:
    """(JSON, CSV): ``report.json`` and ``report.csv`` beside it."""
    p = Path(path)
    csv_path = p.with_suffix(".csv")
    json_path = p.with_suffix(".json") if csv_path == p else p
    return str(json_path), str(csv_path)


def write_report(path: str, results: Sequence[SceneResult], summary: dict[str, Any]) -> tuple[str, str]:
    """The report as JSON (rows and summary) and CSV (rows), both committed together."""
    json_path, csv_path = report_paths(path)
    rows = [r.row() for r in results]
    with atomic_outputs([json_path, csv_path], overwrite=True, check=False) as (json_partial, csv_partial):
        with open(json_partial, "w") as f:
            json.dump({"scenes": rows, "summary": summary}, f, indent=2)
            f.write("\n")
        with open(csv_partial, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=REPORT_FIELDS)
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return json_path, csv_path
