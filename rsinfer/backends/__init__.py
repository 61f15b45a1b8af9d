"""Inference backends: a batch of raw tiles in, class probabilities out, on the backend's device."""
from .base import Backend, resolve_device
from .torch_backend import TorchBackend
from .onnx_backend import OnnxBackend

__all__ = ["Backend", "OnnxBackend", "TorchBackend", "resolve_device"]
