"""ONNX Runtime backend: TensorRT → CUDA → CPU, whichever loads first.

On CUDA, batches are normalized by torch on the GPU and bound to the session with IO
binding (inputs and outputs stay in device memory); on CPU, plain ``session.run``.
Normalization, padding and the softmax are the same code as the torch backend's, so the
two backends see identical inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rsinfer.models import ModelConfig

from ..errors import ModelError
from .base import Backend

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(device: torch.device) -> list[str]:
    """Providers to try, best first: the GPU ones only when a CUDA device was asked for."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    wanted = PREFERRED_PROVIDERS if device.type == "cuda" else ("CPUExecutionProvider",)
    return [p for p in wanted if p in available]


def _session(path: Path, providers: list[str], device: torch.device):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    provider_options = []
    for p in providers:
        if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            provider_options.append({"device_id": str(device.index or 0)})
        else:
            provider_options.append({})
    try:
        return ort.InferenceSession(str(path), opts, providers=providers, provider_options=provider_options)
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

        def open_graph(p):
            return (reuse or {}).get(str(p)) or _session(Path(p), providers, device)

        self.session = open_graph(path)
        self.provider = self.session.get_providers()[0]
        self.global_session = open_graph(global_path) if global_path else None
        self.on_gpu = self.provider != "CPUExecutionProvider" and device.type == "cuda"
        self.input_names = [i.name for i in self.session.get_inputs()]

    def _run(self, session, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Run ``session``; on CUDA with IO binding so nothing round-trips through the host."""
        if not self.on_gpu:
            outs = session.run(None, {k: v.detach().cpu().numpy() for k, v in feeds.items()})
            return [torch.from_numpy(o) for o in outs]
        binding = session.io_binding()
        for name, t in feeds.items():
            t = t.contiguous()
            binding.bind_input(name, "cuda", self.device.index or 0, np.float32, tuple(t.shape), t.data_ptr())
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda", self.device.index or 0)
        session.run_with_iobinding(binding)
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

    def logits(self, x: torch.Tensor, contexts: list | None, boxes: np.ndarray | None) -> torch.Tensor:
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
