"""PyTorch backend (CPU or CUDA): autocast precision, channels_last on CUDA, inference mode."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn as nn

from rsinfer.models import ModelConfig

from .base import Backend

if TYPE_CHECKING:
    from rsinfer.models.global_local import GlobalLocalModel

Precision = Literal["fp32", "fp16", "bf16"]
# Autocast dtypes; fp32 runs without autocast.
PRECISIONS: dict[Precision, torch.dtype | None] = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchBackend(Backend):
    def __init__(
        self,
        model: nn.Module,
        config: ModelConfig,
        device: torch.device,
        value_scale: float = 1.0,
        activation: str = "softmax",
        precision: Precision = "fp32",
    ):
        super().__init__(config, device, value_scale, activation)
        self.precision = precision
        self.model = model.to(device).eval()
        # NHWC lets cuDNN pick tensor-core kernels for convolutions; on CPU it only costs copies.
        self.channels_last = device.type == "cuda"
        if self.channels_last:
            # Module.to accepts memory_format; torch's typed overloads omit it.
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @torch.inference_mode()
    def compute_context(self, view) -> dict:
        model: GlobalLocalModel = self.model
        with self._autocast():
            return model.forward_global(self.normalize(view.data[None], view.valid[None]))

    @torch.inference_mode()
    def logits(self, x: torch.Tensor, contexts: list | None, boxes: np.ndarray | None) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            if boxes is None:
                return self.model(x)
            # Global-local: runs of tiles sharing a region's context go through the model together.
            assert contexts is not None
            model: GlobalLocalModel = self.model
            boxes_t = torch.from_numpy(boxes).to(self.device)
            return torch.cat(
                [
                    model.predict_patches(x[a:b], contexts[a], boxes_t[a:b])
                    for a, b in self.runs_of_same_context(contexts)
                ]
            )
