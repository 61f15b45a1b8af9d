"""One benchmark measurement, run in a process of its own so its peak memory is its alone.

    python -m rsinfer.benchmark.worker '{"kind": "memory", "model": "pspnet", ...}'

prints one JSON object on its last line.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rsinfer.memory import peak_rss_mb, rss_mb


class _DeviceMemorySampler:
    """Device-level used memory (CUDA context included), as gpustat shows it: NVML for this
    process when pynvml is installed, else the device's total minus free, sampled every 5 ms."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(device.index or 0))
        except Exception:
            self._nvml = None

    def _used(self) -> int:
        if self._nvml:
            import os

            nv, handle = self._nvml
            for p in nv.nvmlDeviceGetComputeRunningProcesses(handle):
                if p.pid == os.getpid() and p.usedGpuMemory:
                    return int(p.usedGpuMemory)
        free, total = torch.cuda.mem_get_info(self.device)
        return total - free

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._used())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._used())


def _build(name: str, device: torch.device, tile: int | None = None, mode: str | None = None):
    from rsinfer.models import create_model, get_config

    config = get_config(name)
    if tile:
        config = config.replace(tile=tile, overlap=min(config.overlap, tile // 4))
    torch.manual_seed(0)
    model = create_model(name, config).to(device)
    if mode and config.is_global_local:
        model.set_mode(mode)
    return config, model


def memory(spec: dict) -> dict:
    """Peak memory of one inference setting on one ``size``² image (random data, batch 1).

    ``patch``: the image cut into ``patch``² tiles (``overlap`` px), one forward per tile.
    ``global``: the whole image in one forward. ``global-local``: a global-local model's
    global view of the image, then its patches with their crops.
    """
    from rsinfer.models.global_local import global_view_size
    from rsinfer.tiling import TileGrid

    device = torch.device(spec["device"])
    setting, size = spec["setting"], spec["size"]
    mode = {"patch": "patch", "global-local": "global-local"}.get(setting) if spec.get("global_local") else None
    config, model = _build(spec["model"], device, mode=mode)
    image = torch.randn(1, config.num_bands, size, size, generator=torch.Generator().manual_seed(0))
    grid = TileGrid(size, size, spec["patch"], spec["overlap"])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    idle_rss = rss_mb()
    sampler = _DeviceMemorySampler(device) if device.type == "cuda" else None
    start = time.perf_counter()

    def pad(x):
        h, w = x.shape[-2:]
        return torch.nn.functional.pad(
            x, (0, config.padded_size(w) - w, 0, config.padded_size(h) - h), mode="replicate"
        )

    with sampler or _Null(), torch.inference_mode():
        if setting == "global":
            model(pad(image).to(device))
        elif setting == "patch" or setting == "global-local":
            context = None
            if setting == "global-local":
                gh, gw = global_view_size(size, size, model.global_size)
                view = torch.nn.functional.interpolate(image, size=(gh, gw), mode="bilinear", antialias=True)
                context = model.forward_global(view.to(device))
            for t in grid:
                x = pad(image[..., t.rows.start : t.rows.stop, t.cols.start : t.cols.stop]).to(device)
                if context is None and not spec.get("global_local"):
                    model(x)
                else:
                    ph, pw = x.shape[-2:]
                    box = torch.tensor(
                        [
                            [
                                t.rows.start / size,
                                t.cols.start / size,
                                (t.rows.start + ph) / size,
                                (t.cols.start + pw) / size,
                            ]
                        ],
                        device=device,
                    )
                    model.predict_patches(x, context, box)
        else:
            raise ValueError(f"unknown setting {setting!r}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    out = dict(
        spec,
        seconds=time.perf_counter() - start,
        patches=len(grid) if setting != "global" else 1,
        peak_rss_mb=peak_rss_mb(),
        idle_rss_mb=idle_rss,
    )
    if device.type == "cuda":
        assert sampler is not None
        out.update(
            cuda_peak_allocated_mb=torch.cuda.max_memory_allocated(device) / 2**20, device_used_mb=sampler.peak / 2**20
        )
    return out


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


ONNX_PROVIDERS = {"onnx": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


class ProviderUnavailable(RuntimeError):
    """The ONNX Runtime provider a row asks for does not load here."""


def _onnx_session(spec: dict, model, config, size: int, side: int, device: torch.device):
    """An ONNX Runtime session of the exported model on the row's provider (CPU on a CPU device)."""
    import onnxruntime as ort

    from rsinfer.backends.onnx_backend import provider_options
    from rsinfer.export import export_onnx

    path = Path(spec["workdir"]) / f"{spec['model']}-{size}.onnx"
    if not path.exists():
        export_onnx(model.cpu(), config, size, str(path))
    if device.type == "cpu" and spec["backend"] == "tensorrt":
        raise ProviderUnavailable("TensorRT needs a CUDA device")
    wanted = "CPUExecutionProvider" if device.type == "cpu" else ONNX_PROVIDERS[spec["backend"]]
    if wanted not in ort.get_available_providers():
        raise ProviderUnavailable(f"{wanted} is not available in this ONNX Runtime build")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        str(path), opts, providers=[wanted], provider_options=[provider_options(path, wanted, device, side)]
    )
    if session.get_providers()[0] != wanted:
        raise ProviderUnavailable(f"{wanted} did not load")
    return session


def _auto_batch(step_for: Callable[[int], Callable[[], None]], device: torch.device, largest: int) -> int:
    """``--batch-size auto`` on this device: the largest power of two whose forward fits (see batching)."""
    from rsinfer.batching import auto_batch_size

    return auto_batch_size(lambda b: step_for(b)(), device, None, largest=largest)


def agreement_input(config, side: int) -> torch.Tensor:
    """The (1, bands, side, side) input labels are compared on: a window of a synthetic scene
    (seed 0, 0.2 m pixels) normalized as the backends normalize a uint8 raster, when the model
    takes 3 bands (RGB); otherwise the speed rows' random input."""
    if config.num_bands != 3:
        return torch.randn(1, config.num_bands, side, side, generator=torch.Generator().manual_seed(0))
    from rsinfer.backends.base import input_affine
    from rsinfer.io.source import default_value_scale
    from rsinfer.synth.layout import City
    from rsinfer.synth.render import render_window

    rgb, _ = render_window(City(0, 0.2), 0, 0, side, side)
    a, b = input_affine(config, default_value_scale("uint8", config.input_range))
    return torch.from_numpy(rgb)[None].to(torch.float32).mul_(a).add_(b)


def _torch_labels(model, x: torch.Tensor, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        return model(x.to(device)).float().argmax(1).cpu()


def agree_pct(model, session, x: torch.Tensor, device: torch.device, dtype: torch.dtype | None) -> float:
    """Percentage of pixels of ``x`` whose label (argmax) is torch fp32's on ``device``: for the
    ONNX ``session`` when given, else for ``model`` under autocast to ``dtype``."""
    model = model.to(device)  # the export moved it to the CPU
    reference = _torch_labels(model, x, device, None)
    if session is not None:
        logits = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        labels = torch.from_numpy(logits).argmax(1)
    else:
        labels = _torch_labels(model, x, device, dtype)
    return float((labels == reference).double().mean() * 100)


def speed(spec: dict) -> dict:
    """Latency of batches of ``size``² inputs: warm-up excluded, CUDA timed with events.

    ``batch`` may be ``auto``: the batch ``--batch-size auto`` picks on this device (the
    largest power of two up to ``largest`` whose forward pass fits in memory). Rows other
    than torch fp32 carry ``agree_pct``: how many labels match torch fp32's on the same
    device and input (:func:`agreement_input`), so a faster row shows what it costs.
    """
    device = torch.device(spec["device"])
    size, runs = spec["size"], spec["runs"]
    config, model = _build(spec["model"], device, tile=size)
    side = config.padded_size(size)
    precision = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[spec["precision"]]
    onnx = spec["backend"] in ONNX_PROVIDERS
    session = _onnx_session(spec, model, config, size, side, device) if onnx else None
    if not onnx and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    def step_for(batch: int) -> Callable[[], None]:
        x = torch.randn(batch, config.num_bands, side, side, generator=torch.Generator().manual_seed(0))
        if session is not None:
            if device.type == "cuda":
                binding = session.io_binding()
                xd = x.to(device).contiguous()
                binding.bind_input(
                    session.get_inputs()[0].name, "cuda", device.index or 0, np.float32, tuple(xd.shape), xd.data_ptr()
                )
                binding.bind_output(session.get_outputs()[0].name, "cuda", device.index or 0)

                def step() -> None:
                    session.run_with_iobinding(binding)
                    _ = xd  # the bound input stays alive

                return step
            feed = {session.get_inputs()[0].name: x.numpy()}
            return lambda: session.run(None, feed)
        x = x.to(device)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)

        def run_model() -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype=precision, enabled=precision is not None):
                model(x)

        return run_model

    batch = spec["batch"]
    if batch == "auto":
        batch = _auto_batch(step_for, device, int(spec.get("largest", 64)))
    step = step_for(int(batch))
    for _ in range(spec["warmup"]):
        step()
    times = []
    for _ in range(runs):
        if device.type == "cuda" and not onnx:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            step()
            b.record()
            torch.cuda.synchronize(device)
            times.append(a.elapsed_time(b) / 1000)
        else:
            t0 = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
    t = np.array(times)
    out = dict(
        spec,
        batch=int(batch),
        p50_ms=float(np.percentile(t, 50) * 1000),
        p95_ms=float(np.percentile(t, 95) * 1000),
        fps=float(batch / np.median(t)),
        mpx_per_s=float(batch * size * size / np.median(t) / 1e6),
    )
    if spec["batch"] == "auto":
        out["batch_auto"] = True
    if device.type == "cuda":
        out["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if spec["backend"] != "torch" or precision is not None:
        out["agree_pct"] = agree_pct(model, session, agreement_input(config, side), device, precision)
    return out


def many(spec: dict) -> list[dict]:
    """Several speed rows in one process (one CUDA start-up); a row that fails becomes an error row."""
    rows = []
    for one in spec["specs"]:
        try:
            rows.append(speed(one))
        except ProviderUnavailable as err:
            rows.append(dict(one, skipped=str(err)))
        except Exception as err:  # recorded, the next row still runs
            rows.append(
                dict(
                    one,
                    error=f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}",
                )
            )
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec["kind"] == "speed":
        try:
            result: dict | list = speed(spec)
        except ProviderUnavailable as err:
            result = dict(spec, skipped=str(err))
    else:
        result = memory(spec) if spec["kind"] == "memory" else many(spec)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
