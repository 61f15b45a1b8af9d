"""PyTorch backend (CPU or CUDA): autocast precision, channels_last on CUDA, inference mode."""

from __future__ import annotations

import contextlib
import platform
import warnings
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


class PrecisionWarning(RuntimeWarning):
    """Half precision gave non-finite logits; the batch was run again in fp32."""


class EmulatedPrecisionWarning(PrecisionWarning):
    """fp16/bf16 asked for on a CPU without instructions for it: emulated, likely slower than fp32."""


def cpu_has_native(precision: Precision) -> bool:
    """Whether this CPU computes ``precision`` in hardware (fp32 always does).

    bf16: AVX512-BF16 or AMX (x86), the BF16 extension (Arm). fp16: AVX512-FP16 or AMX-FP16
    (x86), FP16 arithmetic (Arm). Elsewhere oneDNN converts to fp32 and back around each op.
    """
    if precision == "fp32":
        return True
    try:
        if precision == "bf16":
            if platform.machine().lower() in ("aarch64", "arm64"):
                return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported() or torch.cpu._is_amx_fp16_supported())
    except (AttributeError, RuntimeError):  # a torch without these probes: say nothing
        return True


_emulation_warned = False  # the warning is given once per process (a batch worker runs many scenes)


def warn_if_emulated(precision: Precision, device: torch.device) -> None:
    """Warn, once, that ``precision`` on this CPU is emulated and likely slower than fp32."""
    global _emulation_warned
    if device.type != "cpu" or _emulation_warned or cpu_has_native(precision):
        return
    _emulation_warned = True
    # On a 2-core AMD EPYC VM (no AVX512-BF16/AMX), lanet-lite 512² under bf16 autocast took
    # 13.6 s a tile against 0.115 s in fp32 (rsinfer bench speed, torch 2.13).
    warnings.warn(
        f"--precision {precision}: this CPU has no {precision} instructions, so torch emulates them; "
        "likely far slower than fp32",
        EmulatedPrecisionWarning,
        stacklevel=3,
    )


def _to_float(context):
    """A global context (a dict of tensors) with half-precision tensors as float32."""
    if not isinstance(context, dict):
        return context
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in context.items()}


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
        warn_if_emulated(precision, device)
        self.fp32_fallbacks = 0  # half-precision batches run again in fp32 (non-finite logits)
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
        """Logits under the backend's precision; a half-precision batch whose logits are not all
        finite (fp16 overflows past 65504, in attention scores say) is run again in fp32."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self._forward(x, contexts, boxes, self._autocast())
        if PRECISIONS[self.precision] is None or bool(torch.isfinite(out).all()):
            return out
        self.fp32_fallbacks += 1
        if self.fp32_fallbacks == 1:
            warnings.warn(
                f"{self.precision} logits were not finite (overflow); such batches are run again in fp32",
                PrecisionWarning,
                stacklevel=4,
            )
        if contexts is not None:  # converted once per region, so runs of one region stay together
            floats: dict[int, object] = {}
            contexts = [floats.setdefault(id(c), _to_float(c)) for c in contexts]
        return self._forward(x, contexts, boxes, contextlib.nullcontext())

    def _forward(self, x: torch.Tensor, contexts: list | None, boxes: np.ndarray | None, autocast) -> torch.Tensor:
        with autocast:
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
