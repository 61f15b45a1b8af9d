"""Runs benchmark measurements, each in its own process, and collects the rows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from ..errors import RsinferError

TABLE_MODELS = ("unet", "icnet", "pspnet", "segnet", "deeplabv3plus", "fcn8s", "glnet", "glcanet")
OUR_MODELS = ("ammunet", "lanet", "hiresnet")
SPEED_BACKENDS = ("torch", "onnx", "tensorrt")


def check_models(models: list[str]) -> None:
    """Unknown names fail before any work is done."""
    from rsinfer.models import get_config

    for name in models:
        try:
            get_config(name)
        except KeyError as err:
            raise RsinferError(str(err.args[0])) from None


def run_worker(spec: dict) -> dict:
    res = subprocess.run(
        [sys.executable, "-m", "rsinfer.benchmark.worker", json.dumps(spec)], capture_output=True, text=True
    )
    if res.returncode:
        tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RsinferError(f"benchmark of {spec['model']} ({spec.get('setting', spec.get('backend'))}) failed: {tail}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def memory_rows(
    models: list[str], size: int, patch: int, overlap: int, device: str, on_row: Callable[[dict], None] | None = None
) -> list[dict]:
    """Patch and global inference of every model; global-local models in patch and global-local mode."""
    from rsinfer.models import get_config

    check_models(models)
    rows = []
    for name in models:
        global_local = get_config(name).is_global_local
        settings = ("patch", "global-local") if global_local else ("patch", "global")
        for setting in settings:
            row = run_worker(
                dict(
                    kind="memory",
                    model=name,
                    setting=setting,
                    size=size,
                    patch=patch,
                    overlap=overlap,
                    device=device,
                    global_local=global_local,
                )
            )
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


def speed_rows(
    models: list[str],
    sizes: list[int],
    backends: list[str],
    precisions: list[str],
    batches: list[int | str],
    device: str,
    runs: int,
    warmup: int,
    workdir: str,
    on_row: Callable[[dict], None] | None = None,
    on_skip: Callable[[dict], None] | None = None,
) -> list[dict]:
    from rsinfer.models.complexity import model_complexity

    check_models(models)
    unknown = [b for b in backends if b not in SPEED_BACKENDS]
    if unknown:
        raise RsinferError(f"unknown backend {unknown[0]!r}; choose from {', '.join(SPEED_BACKENDS)}")
    rows = []
    for name in models:
        for size in sizes:
            cx = model_complexity(name, tile=size)
            for backend in backends:
                for precision in precisions:
                    if backend != "torch" and precision != "fp32":
                        continue  # ONNX fp16 needs a converted graph; not measured here
                    if device == "cpu" and precision == "fp16":
                        continue  # no fast fp16 kernels on CPU
                    for batch in batches:
                        row = run_worker(
                            dict(
                                kind="speed",
                                model=name,
                                size=size,
                                backend=backend,
                                precision=precision,
                                batch=batch,
                                device=device,
                                runs=runs,
                                warmup=warmup,
                                workdir=workdir,
                            )
                        )
                        if "skipped" in row:  # the provider does not load here: a note, not a row
                            if on_skip:
                                on_skip(row)
                            continue
                        row.update(params_m=cx.params / 1e6, gflops=cx.flops / 1e9)
                        rows.append(row)
                        if on_row:
                            on_row(row)
    return rows
