"""Choosing and building the backend a job runs on."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from ..loading import LoadedModel
from .base import Backend
from .onnx_backend import OnnxBackend
from .torch_backend import Precision, TorchBackend

BackendName = Literal["torch", "onnx"]
BACKENDS: tuple[BackendName, ...] = ("torch", "onnx")


def make_backend(
    loaded: LoadedModel,
    name: BackendName,
    device: torch.device,
    value_scale: float,
    precision: Precision = "fp32",
    onnx_path: str | None = None,
    mode: str | None = None,
) -> Backend:
    """The torch backend, or ONNX Runtime on ``onnx_path`` (or the cached export of the model,
    made on first use in the model's current ``mode``)."""
    if name == "torch":
        return TorchBackend(loaded.module, loaded.config, device, value_scale=value_scale, precision=precision)
    from ..export import cached_onnx, global_graph_path

    path, sessions = (Path(onnx_path), None) if onnx_path else cached_onnx(loaded.module, loaded.config, mode)
    global_path = global_graph_path(path)
    return OnnxBackend(
        path,
        loaded.config,
        device,
        value_scale=value_scale,
        global_path=global_path if global_path.exists() else None,
        sessions=sessions,
    )


def backend_label(backend: Backend) -> str:
    """How a run report names the backend: ``torch`` or ``onnx <provider>``."""
    provider = getattr(backend, "provider", None)
    return f"onnx {provider}" if provider else "torch"
