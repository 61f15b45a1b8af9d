"""PyTorch backend (CPU or CUDA)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rsinfer.models import ModelConfig

from .base import Backend


class TorchBackend(Backend):
    def __init__(self, model: nn.Module, config: ModelConfig, device: torch.device, value_scale: float = 1.0,
                 activation: str = "softmax"):
        self.model = model.to(device).eval()
        self.config = config
        self.device = device
        self.activation = activation
        # Folded normalization: (x * value_scale - mean) / std  ==  x * a + b
        mean = torch.tensor(config.mean, dtype=torch.float32)
        std = torch.tensor(config.std, dtype=torch.float32)
        self._a = (value_scale / std).view(1, -1, 1, 1).to(device)
        self._b = (-mean / std).view(1, -1, 1, 1).to(device)
        self.calls = 0
        self.tiles = 0

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

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a normalized batch, padded to the model's size rule and cropped back."""
        h, w = x.shape[-2:]
        ph, pw = self.config.padded_size(h) - h, self.config.padded_size(w) - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        logits = self.model(x)
        return logits[..., :h, :w]

    @torch.inference_mode()
    def compute_context(self, view) -> dict:
        """Global context of a global view (global-local models), kept on the device."""
        return self.model.forward_global(self.normalize(view.data[None], view.valid[None]))

    @torch.inference_mode()
    def forward_with_context(self, x: torch.Tensor, contexts: list, boxes: np.ndarray) -> torch.Tensor:
        """Global-local logits: runs of tiles sharing a context go through the model together."""
        h, w = x.shape[-2:]
        ph, pw = self.config.padded_size(h) - h, self.config.padded_size(w) - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        boxes_t = torch.from_numpy(boxes).to(self.device)
        outputs, start = [], 0
        for i in range(1, len(contexts) + 1):
            if i == len(contexts) or contexts[i] is not contexts[start]:
                outputs.append(self.model.predict_patches(x[start:i], contexts[start], boxes_t[start:i]))
                start = i
        return torch.cat(outputs)[..., :h, :w]

    @torch.inference_mode()
    def predict(self, data: np.ndarray, valid: np.ndarray, contexts: list | None = None,
                boxes: np.ndarray | None = None) -> torch.Tensor:
        x = self.normalize(data, valid)
        logits = self.forward(x) if boxes is None else self.forward_with_context(x, contexts, boxes)
        self.calls += 1
        self.tiles += data.shape[0]
        if self.activation == "softmax":
            return logits.float().softmax(1)
        return logits.float()
