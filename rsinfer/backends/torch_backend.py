"""PyTorch backend (CPU or CUDA)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from rsinfer.models import ModelConfig

from .base import Backend


class TorchBackend(Backend):
    def __init__(self, model: nn.Module, config: ModelConfig, device: torch.device, value_scale: float = 1.0,
                 activation: str = "softmax"):
        super().__init__(config, device, value_scale, activation)
        self.model = model.to(device).eval()

    @torch.inference_mode()
    def compute_context(self, view) -> dict:
        return self.model.forward_global(self.normalize(view.data[None], view.valid[None]))

    @torch.inference_mode()
    def logits(self, x: torch.Tensor, contexts: list | None, boxes: np.ndarray | None) -> torch.Tensor:
        if boxes is None:
            return self.model(x)
        # Global-local: runs of tiles sharing a region's context go through the model together.
        boxes_t = torch.from_numpy(boxes).to(self.device)
        return torch.cat([self.model.predict_patches(x[a:b], contexts[a], boxes_t[a:b])
                          for a, b in self.runs_of_same_context(contexts)])
