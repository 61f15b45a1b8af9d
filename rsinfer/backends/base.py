"""The interface every backend implements, and device selection."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

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


class Backend(ABC):
    """Runs the model on batches of raw tiles.

    ``predict`` takes ``data`` (B, bands, h, w) in the raster's own dtype and ``valid``
    (B, h, w) bool, and returns class probabilities (B, K, h, w) as a torch tensor on
    :attr:`device`. Normalization, padding to the model's size rule and the softmax all
    happen inside, on the device. Global-local models also get, per tile, the context of
    its region (``compute_context`` of a global view) and its footprint box.
    """

    device: torch.device
    calls: int = 0  # forward passes run
    tiles: int = 0  # tiles sent through the model

    @abstractmethod
    def predict(self, data: np.ndarray, valid: np.ndarray, contexts: list | None = None,
                boxes: np.ndarray | None = None) -> torch.Tensor:
        """Probabilities for a batch; global-local models also take each tile's context and box."""
