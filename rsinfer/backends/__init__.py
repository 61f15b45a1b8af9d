"""Inference backends: a batch of raw tiles in, class probabilities out, on the backend's device."""

from .base import Backend, resolve_device
from .onnx_backend import OnnxBackend
from .torch_backend import TorchBackend

__all__ = ["Backend", "OnnxBackend", "TorchBackend", "resolve_device"]
