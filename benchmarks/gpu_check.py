"""The GPU path, proven in one run: tests, speed, memory, host ceiling, CUDA-vs-CPU labels, OOM recovery.

    python benchmarks/gpu_check.py --out gpu_check_out [--device cuda] [--budget 450] [--short]

Run by ``benchmarks/gpu_check.sh`` after it has installed the project. Every step runs in a
process of its own under a time limit and a global deadline: a step that would start with
too little time left is skipped with a note, one that overruns is killed and recorded as
such, and the results written so far stay. After each step the one JSON file
(``gpu_check.json``) and the Markdown summary (``gpu_check.md``) are rewritten.

``--device cpu`` rehearses the same steps on a CPU with smaller sizes and the demo models,
without the rows that need a GPU (CUDA-vs-CPU labels, out-of-memory recovery, TensorRT).
``--short`` runs every step with the smallest settings that still exercise it (one model per
step, small tiles and scenes, two timed runs): the form CI runs on a CPU, so the script
cannot rot between GPU runs.

The exit status is 1 when a step failed, overran its limit or was left out for lack of time;
rows left out because they need a GPU (on ``--device cpu``) do not count. ``--device cuda``
on a machine where torch sees no CUDA device is a failure too: nothing was checked.
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
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# What each device runs: the GPU check at the papers' settings, the CPU rehearsal smaller.
PLANS: dict[str, dict[str, Any]] = {
    "cuda": dict(
        speed_models=["lanet", "ammunet", "hiresnet", "glcanet"],
        speed_size=512,
        precisions=["fp32", "fp16", "bf16"],
        speed_runs=10,
        speed_warmup=3,
        auto_largest=64,
        onnx_models=["lanet"],
        memory_models=["glcanet", "glnet", "unet", "deeplabv3plus"],
        memory=dict(size=2448, patch=500, overlap=50),
        ceiling=dict(size=8000, batch=8),
        labels=dict(size=1536, model="lanet-lite"),
        oom=dict(size=2048, model="lanet", tile=512, batch=256, leave_gib=3.0),
    ),
    "cpu": dict(
        speed_models=["lanet-lite", "glcanet-lite"],
        speed_size=256,
        precisions=["fp32"],  # bf16 autocast is emulated (slow) on CPUs without bf16 instructions
        speed_runs=2,
        speed_warmup=1,
        auto_largest=4,
        onnx_models=["lanet-lite"],
        memory_models=["glcanet-lite"],
        memory=dict(size=768, patch=256, overlap=32),
        ceiling=dict(size=2048, batch=4),
        labels=None,
        oom=None,
    ),
}

# --short: one model per step at the smallest sizes that still run every code path (batch 1 and
# an automatic batch, a ceiling scene of several tiles, patch and global-local memory). On CUDA
# the label and out-of-memory checks keep their settings: smaller, the batch asked for would fit
# and nothing would be recovered. (On a CPU the automatic batch is 4 whatever auto_largest is.)
SHORT_PLANS: dict[str, dict[str, Any]] = {
    "cuda": dict(
        PLANS["cuda"],
        speed_models=["lanet-lite"],
        speed_size=256,
        precisions=["fp32", "fp16"],
        speed_runs=2,
        speed_warmup=1,
        auto_largest=8,
        onnx_models=["lanet-lite"],
        memory_models=["glcanet-lite"],
        memory=dict(size=512, patch=256, overlap=32),
        ceiling=dict(size=1024, batch=4, tile=256),
    ),
    "cpu": dict(
        PLANS["cpu"],
        speed_models=["lanet-lite"],
        speed_size=256,  # not 128: these models run several times slower at 128² on a CPU than at 256²
        speed_runs=2,
        speed_warmup=1,
        onnx_models=["lanet-lite"],
        memory_models=["glcanet-lite"],
        memory=dict(size=512, patch=256, overlap=32),
        ceiling=dict(size=512, batch=2, tile=256),
    ),
}

# Seconds each step may take at most (the global deadline may cut it shorter); the CPU
# rehearsal's model steps get more, a CPU being slower at them than the sizes shrink.
CPU_BUDGETS = {"speed": 100, "onnx": 100, "memory": 90}
BUDGETS = {
    "environment": 30,
    "gpu-tests": 120,
    "labels": 60,
    "oom": 60,
    "speed": 45,  # per model
    "ceiling": 130,
    "memory": 40,  # per model
    "onnx": 75,
}
MIN_START = 15  # a step is not started with less than this many seconds left
OUT_OF_TIME = "out of time"  # the note of a step left out by the deadline (it counts as a failure)


def is_failure(entry: dict) -> bool:
    """A step that failed, overran, or was not run for lack of time (not one that needs a GPU)."""
    if entry["status"] in ("failed", "timeout"):
        return True
    return entry["status"] == "skipped" and str(entry.get("note", "")).startswith(OUT_OF_TIME)


# ---------------------------------------------------------------------------------------------
# Steps (each runs in a child process: ``gpu_check.py --step NAME --params JSON``)
# ---------------------------------------------------------------------------------------------
def step_environment(p: dict) -> dict:
    import torch

    out: dict = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        cuda_available=torch.cuda.is_available(),
        cpu_count=os.cpu_count(),
    )
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            out["nvidia_smi"] = smi.stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as err:
            out["nvidia_smi"] = f"unavailable ({type(err).__name__})"
    try:
        import onnxruntime as ort

        out.update(onnxruntime=ort.__version__, ort_providers=ort.get_available_providers())
    except ImportError:
        out["onnxruntime"] = None
    import rasterio

    out["rasterio"] = rasterio.__version__
    out["gdal"] = rasterio.__gdal_version__
    return out


def step_gpu_tests(p: dict) -> dict:
    """The tests marked ``gpu`` (skipped by pytest where no CUDA device is present)."""
    files = sorted(str(f.relative_to(REPO)) for f in (REPO / "tests").rglob("test_*.py") if "mark.gpu" in f.read_text())
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-rA", *files],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(("PASSED", "FAILED", "SKIPPED", "ERROR"))]
    summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr.strip()[-300:]
    return dict(ok=res.returncode == 0, exit=res.returncode, files=files, summary=summary, tests=lines)


def _scene(work: Path, size: int) -> Path:
    from rsinfer.synth import write_synthetic_scene

    path = work / f"scene-{size}.tif"
    if not path.exists():
        write_synthetic_scene(str(path), str(work / f"scene-{size}_labels.tif"), size, size, seed=3)
    return path


def step_labels(p: dict) -> dict:
    """CUDA and CPU labels of one synthetic scene in fp32 (the default crop path, then linear blending)."""
    import rasterio
    import torch

    from rsinfer.pipeline import SegmentOptions, run_segment

    work = Path(p["work"])
    scene = _scene(work, p["size"])
    out: dict = {"model": p["model"], "size": p["size"]}
    for blend in ("crop", "linear"):
        maps = {}
        for device in ("cpu", "cuda"):
            torch.manual_seed(0)
            path = work / f"labels-{blend}-{device}.tif"
            report = run_segment(
                SegmentOptions(
                    input=str(scene), output=str(path), model=p["model"], device=device, blend=blend, overwrite=True
                )
            )
            out[f"{blend}_{device}_s"] = round(report.seconds, 2)
            with rasterio.open(path) as ds:
                maps[device] = ds.read(1)
        agree = float((maps["cpu"] == maps["cuda"]).mean())
        out[f"{blend}_agreement"] = agree
    out["ok"] = out["crop_agreement"] >= 0.999 and out["linear_agreement"] >= 0.999
    return out


def step_oom(p: dict) -> dict:
    """A real out-of-memory: most of the GPU taken by a ballast allocation, then a batch that cannot fit.

    The pipeline must halve the batch until it fits, predict every tile, and give the labels
    a run with a small batch gives.
    """
    import rasterio
    import torch

    from rsinfer.pipeline import SegmentOptions, run_segment

    work = Path(p["work"])
    scene = _scene(work, p["size"])
    device = torch.device("cuda")
    free, total = torch.cuda.mem_get_info(device)
    ballast_bytes = max(0, free - int(p["leave_gib"] * 2**30))
    ballast = torch.empty(ballast_bytes, dtype=torch.uint8, device=device)
    free_after, _ = torch.cuda.mem_get_info(device)
    common = dict(input=str(scene), model=p["model"], tile=p["tile"], device="cuda", weights="random", overwrite=True)
    torch.manual_seed(0)
    big = run_segment(SegmentOptions(output=str(work / "oom-big.tif"), batch_size=p["batch"], **common))
    del ballast
    torch.cuda.empty_cache()
    torch.manual_seed(0)
    run_segment(SegmentOptions(output=str(work / "oom-small.tif"), batch_size=2, **common))
    with rasterio.open(work / "oom-big.tif") as a, rasterio.open(work / "oom-small.tif") as b:
        agree = float((a.read(1) == b.read(1)).mean())
    one_call = -(-big.tiles // p["batch"])  # the calls a batch that fits would take
    return dict(
        # halved: the asked batch did not fit (a real out-of-memory) and the run recovered
        ok=big.model_calls > one_call and big.tiles_predicted == big.tiles and agree >= 0.999,
        halved=big.model_calls > one_call,
        asked_batch=p["batch"],
        model_calls=big.model_calls,
        tiles=big.tiles,
        tiles_predicted=big.tiles_predicted,
        free_gib_during=round(free_after / 2**30, 2),
        agreement_with_batch_2=agree,
    )


def _worker(spec: dict) -> list | dict:
    res = subprocess.run(
        [sys.executable, "-m", "rsinfer.benchmark.worker", json.dumps(spec)], capture_output=True, text=True, cwd=REPO
    )
    if res.returncode:
        raise RuntimeError((res.stderr.strip().splitlines() or ["(no output)"])[-1])
    return json.loads(res.stdout.strip().splitlines()[-1])


def step_speed(p: dict) -> dict:
    """``bench speed`` rows of one model (one process): every backend, precision and batch asked for."""
    from rsinfer.models.complexity import model_complexity

    specs = [
        dict(
            kind="speed",
            model=p["model"],
            size=p["size"],
            backend=backend,
            precision=precision,
            batch=batch,
            largest=p["largest"],
            device=p["device"],
            runs=p["runs"],
            warmup=p["warmup"],
            workdir=p["work"],
        )
        for backend in p["backends"]
        for precision in (p["precisions"] if backend == "torch" else ["fp32"])
        for batch in (1, "auto")
    ]
    rows = _worker(dict(kind="many", specs=specs))
    assert isinstance(rows, list)
    cx = model_complexity(p["model"], tile=p["size"])
    for r in rows:
        r.update(params_m=round(cx.params / 1e6, 2), gflops=round(cx.flops / 1e9, 1))
    measured = [r for r in rows if "p50_ms" in r]
    return dict(ok=all("error" not in r for r in rows) and bool(measured), rows=rows)


def step_memory(p: dict) -> dict:
    """``bench memory`` rows of one model at the given setting (the GLCANet paper's: 2448², 500² patches)."""
    from rsinfer.benchmark.runner import memory_rows

    rows = memory_rows([p["model"]], p["size"], p["patch"], p["overlap"], p["device"])
    return dict(ok=True, rows=rows)


def step_ceiling(p: dict) -> dict:
    """``bench pipeline``: the segment pipeline with a zero-cost model against raw decoding, one run."""
    from rsinfer.benchmark.pipeline import host_ceiling

    workers = max(2, min(8, (os.cpu_count() or 2) // 2))
    tile = p.get("tile", 512)
    # GeoTIFF: the job, then the COG's assembly after the last row; zarr: the job alone.
    rows = [
        host_ceiling(p["size"], tile, 64, workers, p["batch"], p["device"], p["work"], fmt, repeats=1).row()
        for fmt in ("tif", "zarr")
    ]
    return dict(ok=True, rows=rows)


STEPS = {
    "environment": step_environment,
    "gpu-tests": step_gpu_tests,
    "labels": step_labels,
    "oom": step_oom,
    "speed": step_speed,
    "memory": step_memory,
    "ceiling": step_ceiling,
}


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------
class Check:
    def __init__(self, out: Path, device: str, deadline: float, short: bool = False):
        self.out, self.device, self.deadline, self.short = out, device, deadline, short
        self.started = time.time()
        self.results: list[dict] = []
        self.work = out / "work"
        self.work.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - time.time()

    def run(self, name: str, label: str, budget: float, params: dict) -> dict:
        entry: dict = dict(step=name, label=label)
        left = self.left()
        if left < MIN_START:
            entry.update(status="skipped", note=f"{OUT_OF_TIME} ({left:.0f} s left of the global budget)")
            return self._record(entry)
        limit = min(budget, left - 5)
        params = dict(params, work=str(self.work), device=self.device)
        t0 = time.time()
        env = dict(os.environ, PYTHONUNBUFFERED="1", RSINFER_CACHE=str(self.work / "cache"))
        cmd = [sys.executable, __file__, "--step", name, "--params", json.dumps(params)]
        print(f"[{time.time() - self.started:5.0f} s] {label} (limit {limit:.0f} s)", flush=True)
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env, cwd=REPO)
        except subprocess.TimeoutExpired:
            entry.update(status="timeout", seconds=round(time.time() - t0, 1), note=f"killed after {limit:.0f} s")
            return self._record(entry)
        entry["seconds"] = round(time.time() - t0, 1)
        last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
        try:
            data = json.loads(last)
        except json.JSONDecodeError:
            tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
            entry.update(status="failed", note=tail[:400])
            return self._record(entry)
        entry.update(status="ok" if data.pop("ok", True) else "failed", data=data)
        return self._record(entry)

    def note(self, name: str, label: str, why: str) -> None:
        self._record(dict(step=name, label=label, status="skipped", note=why))

    def _record(self, entry: dict) -> dict:
        self.results.append(entry)
        print(f"        → {entry['status']}" + (f": {entry['note']}" if entry.get("note") else ""), flush=True)
        self.write()
        return entry

    def write(self) -> None:
        doc = dict(
            device=self.device,
            short=self.short,
            started=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.started)),
            wall_s=round(time.time() - self.started, 1),
            steps=self.results,
        )
        (self.out / "gpu_check.json").write_text(json.dumps(doc, indent=2, default=str))
        (self.out / "gpu_check.md").write_text(markdown(doc))


def _table(rows: list[dict], cols: list[str]) -> list[str]:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "-")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(doc: dict) -> str:
    steps = doc["steps"]
    form = ", short form" if doc.get("short") else ""
    out = [f"# GPU check ({doc['device']}{form}), {doc['started']} UTC, {doc['wall_s']} s", ""]
    env = next((s.get("data") for s in steps if s["step"] == "environment" and s.get("data")), None)
    if env:
        out += [", ".join(f"{k}: {v}" for k, v in env.items()), ""]
    out += _table(
        [
            dict(step=s["label"], status=s["status"], seconds=s.get("seconds", "-"), note=s.get("note", ""))
            for s in steps
        ],
        ["step", "status", "seconds", "note"],
    )
    speed = [dict(r) for s in steps if s["step"] == "speed" and s.get("data") for r in s["data"]["rows"]]
    if speed:
        out += ["", "## Speed", ""]
        for r in speed:
            r["result"] = r.get("error") or r.get("skipped") or ""
            if r.get("batch_auto"):
                r["batch"] = f"{r['batch']} (auto)"
        out += _table(
            speed,
            ["model", "size", "backend", "precision", "batch", "params_m", "gflops", "p50_ms", "p95_ms", "fps"]
            + ["mpx_per_s", "cuda_peak_allocated_mb", "result"],
        )
    memory = [r for s in steps if s["step"] == "memory" and s.get("data") for r in s["data"]["rows"]]
    if memory:
        out += ["", "## Memory (device used MB on CUDA, CUDA context included; peak RSS on CPU)", ""]
        out += _table(
            memory,
            ["model", "setting", "size", "patch", "device_used_mb", "cuda_peak_allocated_mb", "peak_rss_mb", "seconds"],
        )
    ceiling = [r for s in steps if s["step"] == "ceiling" and s.get("data") for r in s["data"].get("rows", [])]
    if ceiling:
        out += ["", "## Host ceiling (bench pipeline: zero-cost model against raw decoding, one run each)", ""]
        out += _table(
            ceiling,
            ["output", "size", "tile", "read_workers", "batch", "device", "pipeline_mpx_s", "decode_mpx_s", "ratio"],
        )
    for s in steps:
        if s["step"] in ("labels", "oom", "gpu-tests") and s.get("data"):
            data = s["data"].get("row", s["data"])
            out += ["", f"## {s['label']}", ""]
            out += [f"- {k}: {v}" for k, v in data.items() if k not in ("tests",)]
            for t in s["data"].get("tests", []):
                out.append(f"  - {t}")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check_out")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--budget", type=float, default=450, help="Seconds for every step together.")
    ap.add_argument("--deadline", type=float, default=None, help="Epoch seconds (overrides --budget).")
    ap.add_argument("--short", action="store_true", help="Every step at its smallest settings (the CI form).")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:  # a child: run one step, print its result as the last line
        print(json.dumps(STEPS[args.step](json.loads(args.params)), default=str))
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, args.device, args.deadline or time.time() + args.budget, short=args.short)
    plan = (SHORT_PLANS if args.short else PLANS)[args.device]
    if args.device == "cpu":
        BUDGETS.update(CPU_BUDGETS)
    install = out / "install.json"  # written by gpu_check.sh
    if install.exists():
        check.results.append(json.loads(install.read_text()))
    env = check.run("environment", "environment", BUDGETS["environment"], {})
    if args.device == "cuda" and not (env.get("data") or {}).get("cuda_available"):
        check.note("all", "GPU steps", "torch sees no CUDA device: nothing else to check")
        print("torch sees no CUDA device: the GPU check checked nothing (--device cpu rehearses it)")
        sys.exit(1)
    check.run("gpu-tests", "tests marked gpu", BUDGETS["gpu-tests"], {})
    if plan["labels"]:
        check.run("labels", "CUDA vs CPU labels (fp32)", BUDGETS["labels"], plan["labels"])
    else:
        check.note("labels", "CUDA vs CPU labels (fp32)", "needs a CUDA device")
    if plan["oom"]:
        check.run("oom", "out-of-memory recovery", BUDGETS["oom"], plan["oom"])
    else:
        check.note("oom", "out-of-memory recovery", "needs a CUDA device")
    for model in plan["speed_models"]:
        check.run(
            "speed",
            f"speed {model} (torch)",
            BUDGETS["speed"],
            dict(
                model=model,
                size=plan["speed_size"],
                backends=["torch"],
                precisions=plan["precisions"],
                runs=plan["speed_runs"],
                warmup=plan["speed_warmup"],
                largest=plan["auto_largest"],
            ),
        )
    check.run("ceiling", "host ceiling (bench pipeline)", BUDGETS["ceiling"], plan["ceiling"])
    for model in plan["memory_models"]:
        check.run("memory", f"memory {model}", BUDGETS["memory"], dict(model=model, **plan["memory"]))
    backends = ["onnx", "tensorrt"] if args.device == "cuda" else ["onnx", "tensorrt"]
    for model in plan["onnx_models"]:
        check.run(
            "speed",
            f"speed {model} (ONNX Runtime)",
            BUDGETS["onnx"],
            dict(
                model=model,
                size=plan["speed_size"],
                backends=backends,
                precisions=["fp32"],
                runs=plan["speed_runs"],
                warmup=plan["speed_warmup"],
                largest=plan["auto_largest"],
            ),
        )
    check.write()
    failed = [s for s in check.results if is_failure(s)]
    why = "failed, timed out or ran out of time"
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}; {len(failed)} step(s) {why}")
    for s in failed:
        print(f"  {s['label']}: {s['status']}" + (f" ({s['note']})" if s.get("note") else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
