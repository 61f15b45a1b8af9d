"""Choosing and building the backend a job runs on.

``--backend auto`` picks the fastest backend this device has that is verified for the model
(:func:`auto_choice`, then the export's check against PyTorch): ONNX Runtime for
sliding-window models on a CPU in fp32, when onnxruntime and onnx are installed and the
model's graph exports and matches PyTorch; PyTorch otherwise. It picks the same way for
every run of a model on a machine, and the resume fingerprint records what it picked
(:func:`resolve_backend`), so a resumed run never mixes backends.
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn

from ..errors import ModelError
from ..loading import LoadedModel
from .base import Backend
from .onnx_backend import OnnxBackend
from .torch_backend import Precision, TorchBackend

BackendName = Literal["torch", "onnx", "auto"]
BACKENDS: tuple[BackendName, ...] = ("torch", "onnx", "auto")
Resolved = Literal["torch", "onnx"]

log = logging.getLogger("rsinfer")

# Export failures of --backend auto, per module and (config, mode): asked again (the resume
# fingerprint asks after make_backend), a model whose graph cannot be traced is not traced twice.
_EXPORT_FAILED: weakref.WeakKeyDictionary[nn.Module, dict[tuple, str]] = weakref.WeakKeyDictionary()


def onnx_importable() -> bool:
    """Whether onnxruntime and onnx (for the export) can be imported here."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def auto_choice(loaded: LoadedModel, device: torch.device, precision: Precision) -> tuple[Resolved, str]:
    """What ``--backend auto`` tries for ``loaded`` on ``device``, and why.

    The rule follows ``rsinfer segment`` runs on a 2048² synthetic scene (``rsinfer synth``),
    demo weights, the ONNX cache filled, torch and ONNX Runtime in turn (2-core AMD EPYC VM
    shared with other work, torch 2.13 CPU, onnxruntime 1.32; seconds from the run report):

    - CPU, fp32, sliding-window models: ONNX Runtime. lanet-lite: torch 3.79 s, ORT 2.92 s
      (1.30x) in the first pair, 1.28-1.55x over three pairs (1.36-1.55x in earlier runs).
    - Global-local models: torch. glcanet-lite: torch 8.50 s, ORT 8.40 s (1.01x), 1.00-1.05x
      over three pairs, for an export of ~20 s (under load) on first use; glnet-lite (its demo
      weights' l2g pass) does not export at all, and trying costs each run about 3 s
      (torch 9.08 s; auto trying the export first, 12.09 s).
    - fp16/bf16: torch (the ONNX backend runs fp32 only). CUDA: torch, until a GPU run
      measures ORT's CUDA and TensorRT providers against it.
    - Without onnxruntime or onnx: torch.

    Choosing ONNX Runtime still needs a graph that exports and matches PyTorch
    (:func:`verified_graph`), or the job runs on torch.
    """
    if device.type != "cpu":
        return "torch", f"{device.type}: ONNX Runtime's GPU providers are not yet measured against torch"
    if precision != "fp32":
        return "torch", f"{precision}: the ONNX backend runs fp32 only"
    if loaded.config.is_global_local:
        return "torch", "a global-local model: ONNX Runtime measured no faster on a CPU"
    if not onnx_importable():
        return "torch", "onnxruntime or onnx is not installed"
    return "onnx", "ONNX Runtime is faster than torch on a CPU in fp32"


def verified_graph(loaded: LoadedModel, mode: str | None) -> tuple[Path, dict | None] | None:
    """The model's graph, exported and verified against PyTorch (or from the cache), with the
    sessions that verified it; None, after one info line saying why, when that fails."""
    from ..export import cached_onnx

    failed = _EXPORT_FAILED.setdefault(loaded.module, {})
    key = (loaded.config, mode)
    if key in failed:
        return None
    try:
        return cached_onnx(loaded.module, loaded.config, mode)
    except ModelError as err:
        failed[key] = str(err)
        log.info("--backend auto: torch, as the ONNX export of %s failed (%s)", loaded.name, err)
        return None


def resolve_backend(
    name: BackendName,
    loaded: LoadedModel,
    device: torch.device,
    precision: Precision = "fp32",
    mode: str | None = None,
) -> Resolved:
    """The backend ``--backend name`` runs on: ``name`` itself, or what ``auto`` picks
    (:func:`auto_choice`, then :func:`verified_graph`). The resume fingerprint records it."""
    return _resolve(name, loaded, device, precision, mode)[0]


def _resolve(
    name: BackendName, loaded: LoadedModel, device: torch.device, precision: Precision, mode: str | None
) -> tuple[Resolved, tuple[Path, dict | None] | None]:
    """The backend, and for ``auto`` choosing ONNX the verified graph and its sessions."""
    if name != "auto":
        return name, None
    choice, why = auto_choice(loaded, device, precision)
    graph = verified_graph(loaded, mode) if choice == "onnx" else None
    if choice == "onnx" and graph is None:
        return "torch", None
    log.debug("--backend auto: %s (%s)", choice, why)
    return choice, graph


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
    made on first use in the model's current ``mode``); ``auto``: see :func:`resolve_backend`."""
    resolved, graph = _resolve(name, loaded, device, precision, mode)
    if resolved == "torch":
        return TorchBackend(loaded.module, loaded.config, device, value_scale=value_scale, precision=precision)
    from ..export import cached_onnx, global_graph_path

    if graph is None:
        graph = (Path(onnx_path), None) if onnx_path else cached_onnx(loaded.module, loaded.config, mode)
    path, sessions = graph
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
