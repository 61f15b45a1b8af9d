"""The interface every backend implements, the steps they share, and device selection."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F

from rsinfer.models import ModelConfig

from ..errors import RsinferError


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks the first CUDA device when there is one, else the CPU."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise RsinferError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RsinferError(f"device {spec} asked for, but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RsinferError(f"device {spec} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type != "cpu":
        raise RsinferError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return device


def input_affine(config: ModelConfig, value_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's normalization folded into ``x * a + b`` (each (1, bands, 1, 1), float32).

    ``(x * value_scale - mean) / std == x * a + b``; training code uses the same, so that
    weights see at inference exactly the inputs they were trained on.
    """
    mean = torch.tensor(config.mean, dtype=torch.float32)
    std = torch.tensor(config.std, dtype=torch.float32)
    return (value_scale / std).view(1, -1, 1, 1), (-mean / std).view(1, -1, 1, 1)


class Backend(ABC):
    """Runs a model on batches of raw tiles.

    :meth:`predict` takes ``data`` (B, bands, h, w) in the raster's own dtype and ``valid``
    (B, h, w) bool and returns class probabilities (B, K, h, w) as a torch tensor on
    :attr:`device`. Normalization, padding to the model's size rule, cropping back and the
    softmax are shared here, on the device; subclasses only turn a normalized, padded batch
    into logits. Global-local models also get, per tile, the context of its region
    (:meth:`compute_context` of a global view) and its footprint box.
    """

    def __init__(
        self, config: ModelConfig, device: torch.device, value_scale: float = 1.0, activation: str = "softmax"
    ):
        self.config = config
        self.device = device
        self.activation = activation
        self.calls = 0  # forward passes run
        self.tiles = 0  # tiles sent through the model
        a, b = input_affine(config, value_scale)
        self._a, self._b = a.to(device), b.to(device)

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def normalize(self, data: np.ndarray, valid: np.ndarray) -> torch.Tensor:
        x = self._to_device(data).float() * self._a + self._b
        # Invalid pixels become the band mean (zero after normalization), so nodata
        # collars do not look like black objects to the model.
        return x * self._to_device(valid).unsqueeze(1)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad bottom/right (replicating edges) to the model's size rule."""
        h, w = x.shape[-2:]
        ph, pw = self.config.padded_size(h) - h, self.config.padded_size(w) - w
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    @staticmethod
    def runs_of_same_context(contexts: list):
        """(start, stop) of consecutive tiles sharing one region's context."""
        start = 0
        for i in range(1, len(contexts) + 1):
            if i == len(contexts) or contexts[i] is not contexts[start]:
                yield start, i
                start = i

    @torch.inference_mode()
    def predict(
        self, data: np.ndarray, valid: np.ndarray, contexts: list | None = None, boxes: np.ndarray | None = None
    ) -> torch.Tensor:
        x = self.normalize(data, valid)
        h, w = x.shape[-2:]
        logits = self.logits(self.pad(x), contexts, boxes)[..., :h, :w].float()
        self.calls += 1
        self.tiles += data.shape[0]
        return logits.softmax(1) if self.activation == "softmax" else logits

    @abstractmethod
    def logits(self, x: torch.Tensor, contexts: list | None, boxes: np.ndarray | None) -> torch.Tensor:
        """Logits (B, K, H, W) of a normalized, padded batch on :attr:`device`."""

    def compute_context(self, view):
        """Global context of a global view (global-local models)."""
        raise NotImplementedError(f"{type(self).__name__} has no global branch")
