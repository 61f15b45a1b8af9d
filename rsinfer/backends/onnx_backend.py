"""ONNX Runtime backend: TensorRT → CUDA → CPU, whichever loads first.

On CUDA, batches are normalized by torch on the GPU and bound to the session with IO
binding (inputs and outputs stay in device memory); on CPU, plain ``session.run``.
Normalization, padding and the softmax are the same code as the torch backend's, so the
two backends see identical inputs.

Streams: ONNX Runtime runs on a CUDA stream of its own, not torch's. Before a bound run
reads memory torch wrote (normalized on torch's stream, copied in on a side stream) torch's
stream is synchronized, and the outputs are synchronized before torch reads them.

TensorRT builds an engine per input shape range: the session gets an optimization profile
for the dynamic batch axis (1 to :data:`TRT_MAX_BATCH` tiles, larger batches run in parts)
and an engine cache beside the graph (``NAME.trt/``, or ``RSINFER_TRT_CACHE``), so the
minutes of building are paid once per graph and GPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from rsinfer.models import ModelConfig

from ..errors import ModelError
from .base import Backend

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
# Largest batch in TensorRT's optimization profile; larger batches run in parts of this size.
TRT_MAX_BATCH = int(os.environ.get("RSINFER_TRT_MAX_BATCH", "32"))
TRT_OPT_BATCH = 4


def trt_profile_shapes(
    path: Path, max_batch: int = TRT_MAX_BATCH, opt_batch: int = TRT_OPT_BATCH, spatial: int | None = None
) -> dict[str, str]:
    """TensorRT provider options for a profile over the batch axis of every input.

    Symbolic height and width of an image input (B, C, H, W) are pinned to ``spatial`` (the
    padded tile the backend feeds); when any other axis is symbolic, no profile is given and
    TensorRT builds (and caches) an engine per shape it meets instead.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    shapes: dict[str, list[str]] = {"min": [], "opt": [], "max": []}
    for inp in graph.input:
        if inp.name in initializers:
            continue
        dims = inp.type.tensor_type.shape.dim
        if not dims:
            continue
        fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        if spatial and len(fixed) == 4:
            fixed[2:] = [spatial if v is None else v for v in fixed[2:]]
        if any(v is None for v in fixed[1:]):
            return {}
        rest = "x".join(str(v) for v in fixed[1:])
        for key, batch in (("min", 1), ("opt", min(opt_batch, max_batch)), ("max", max_batch)):
            first = batch if fixed[0] is None else fixed[0]
            shapes[key].append(f"{inp.name}:{first}" + (f"x{rest}" if rest else ""))
    if not shapes["min"]:
        return {}
    return {f"trt_profile_{k}_shapes": ",".join(v) for k, v in shapes.items()}


def trt_cache_dir(path: Path) -> Path:
    """Where TensorRT engines built for ``path`` are kept."""
    env = os.environ.get("RSINFER_TRT_CACHE")
    return Path(env) if env else path.with_name(path.stem + ".trt")


def provider_options(path: Path, provider: str, device: torch.device, spatial: int | None = None) -> dict[str, str]:
    """Options for one provider: the device; for TensorRT, the engine cache and the batch profile."""
    if provider == "CUDAExecutionProvider":
        return {"device_id": str(device.index or 0)}
    if provider != "TensorrtExecutionProvider":
        return {}
    cache = trt_cache_dir(path)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return {
        "device_id": str(device.index or 0),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
        **trt_profile_shapes(path, spatial=spatial),
    }


def choose_providers(device: torch.device) -> list[str]:
    """Providers to try, best first: the GPU ones only when a CUDA device was asked for."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    wanted = PREFERRED_PROVIDERS if device.type == "cuda" else ("CPUExecutionProvider",)
    return [p for p in wanted if p in available]


def _session(path: Path, providers: list[str], device: torch.device, spatial: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    options = [provider_options(path, p, device, spatial) for p in providers]
    try:
        return ort.InferenceSession(str(path), opts, providers=providers, provider_options=options)
    except Exception as err:  # a provider that fails to initialise (missing TensorRT/CUDA libraries)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: ONNX Runtime cannot load the graph ({first[:300]})") from None


class OnnxBackend(Backend):
    """Runs an exported graph (and, for global-local models, its ``.global`` graph)."""

    def __init__(
        self,
        path: str | Path,
        config: ModelConfig,
        device: torch.device,
        value_scale: float = 1.0,
        global_path: str | Path | None = None,
        activation: str = "softmax",
        sessions: dict | None = None,
    ):
        """``sessions``: CPU sessions already open on these files (from :func:`export_onnx`)."""
        super().__init__(config, device, value_scale, activation)
        providers = choose_providers(device)
        if not providers:
            raise ModelError(f"ONNX Runtime has no provider for {device}; install onnxruntime-gpu for CUDA")
        reuse = sessions if providers == ["CPUExecutionProvider"] else {}

        def open_graph(p, spatial=None):
            return (reuse or {}).get(str(p)) or _session(Path(p), providers, device, spatial)

        # The patch graph's profile pins symbolic tile sides to the padded tile; the global
        # view's graph gets none (TensorRT builds for the view sizes it meets).
        self.session = open_graph(path, config.padded_size(config.tile))
        self.provider = self.session.get_providers()[0]
        self.global_session = open_graph(global_path) if global_path else None
        self.on_gpu = self.provider != "CPUExecutionProvider" and device.type == "cuda"
        self.input_names = [i.name for i in self.session.get_inputs()]
        # A graph exported with fixed spatial axes (see rsinfer.export) takes its own size only.
        from ..export import graph_input_size

        self.graph_size = graph_input_size(self.session)

    def _run(self, session, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Run ``session``; on CUDA with IO binding so nothing round-trips through the host."""
        if not self.on_gpu:
            outs = session.run(None, {k: v.detach().cpu().numpy() for k, v in feeds.items()})
            return [torch.from_numpy(o) for o in outs]
        binding = session.io_binding()
        bound = []  # the bound tensors stay referenced until the run is over
        for name, t in feeds.items():
            t = t.contiguous()
            bound.append(t)
            dtype = {torch.float16: np.float16, torch.int64: np.int64}.get(t.dtype, np.float32)
            binding.bind_input(name, "cuda", self.device.index or 0, dtype, tuple(t.shape), t.data_ptr())
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda", self.device.index or 0)
        # ONNX Runtime reads the inputs on its own stream: what torch queued must be done first.
        torch.cuda.current_stream(self.device).synchronize()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        del bound
        return [
            torch.from_dlpack(o.to_dlpack()) if hasattr(o, "to_dlpack") else torch.from_numpy(o.numpy()).to(self.device)
            for o in binding.get_outputs()
        ]

    # -- Backend -----------------------------------------------------------------------------
    @torch.inference_mode()
    def compute_context(self, view) -> dict[str, torch.Tensor]:
        if self.global_session is None:
            raise ModelError("this ONNX model has no global graph (NAME.global.onnx)")
        outs = self._run(self.global_session, {"view": self.normalize(view.data[None], view.valid[None])})
        return dict(zip((o.name for o in self.global_session.get_outputs()), outs))

    def padded_shape(self, h: int, w: int) -> tuple[int, int]:
        if self.graph_size is not None and h <= self.graph_size[0] and w <= self.graph_size[1]:
            return self.graph_size  # a tile cut short by the raster's edge, padded up to the graph
        return super().padded_shape(h, w)

    def logits(self, x: torch.Tensor, contexts: list | None, boxes: np.ndarray | None) -> torch.Tensor:
        step = TRT_MAX_BATCH if self.provider == "TensorrtExecutionProvider" else len(x)
        if len(x) > step:  # beyond TensorRT's profile: in parts
            parts = [
                self.logits(x[i : i + step], contexts[i : i + step] if contexts else None, boxes[i : i + step])
                if boxes is not None
                else self.logits(x[i : i + step], None, None)
                for i in range(0, len(x), step)
            ]
            return torch.cat(parts)
        if boxes is None:
            return self._run(self.session, {self.input_names[0]: x})[0].to(self.device)
        assert contexts is not None
        boxes_t = torch.from_numpy(boxes).to(self.device)
        outputs = []
        for a, b in self.runs_of_same_context(contexts):
            # Context tensors by name: the exporter drops the ones the graph's mode does not use.
            feeds = {"patches": x[a:b], "boxes": boxes_t[a:b], **(contexts[a] or {})}
            outputs.append(self._run(self.session, {k: v for k, v in feeds.items() if k in self.input_names})[0])
        return torch.cat(outputs).to(self.device)
