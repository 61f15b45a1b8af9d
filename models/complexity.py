"""Parameter and FLOP counts of registered models, without allocating real weights.

Models are built on PyTorch's ``meta`` device, so counting a 50 M parameter network at
a 512² tile costs no memory and takes a fraction of a second. FLOPs come from torch's
own ``FlopCounterMode`` (2 FLOPs per multiply-add).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import ModelConfig
from .registry import create_model, get_config


@dataclass(frozen=True)
class Complexity:
    config: ModelConfig
    params: int
    flops: int | None  # one forward pass at ``config.tile``², batch 1


def model_complexity(name: str, tile: int | None = None, flops: bool = True) -> Complexity:
    config = get_config(name)
    if tile:
        config = config.replace(tile=tile, overlap=min(config.overlap, tile // 2))
    with torch.device("meta"):
        model = create_model(name, config)
    params = sum(p.numel() for p in model.parameters())
    count = None
    if flops:
        side = config.padded_size(config.tile)
        x = torch.empty(1, config.num_bands, side, side, device="meta")
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
        count = counter.get_total_flops()
    return Complexity(config, params, count)
