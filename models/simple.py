"""A small fully-convolutional network to exercise the pipeline.

``simple-fcn`` has a bounded receptive field (no pooling, no attention), so tiled
inference with an overlap margin wider than that field equals whole-image inference
exactly; the tests rely on this. It is cheap enough to push 30000² rasters through
on a laptop CPU for the streaming benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import ModelConfig
from .registry import register_model


class SimpleFCN(nn.Module):
    """``depth`` 3×3 convolutions (zero padding) with ReLU, then a 1×1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(inplace=True)]
            c = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


SIMPLE_DEPTH = 3

SIMPLE_FCN = ModelConfig(
    name="simple-fcn",
    description="3-layer 3x3 FCN for pipeline tests and streaming benchmarks (not a paper model)",
    tile=256,
    overlap=16,
    receptive_radius=SIMPLE_DEPTH,
)


@register_model(SIMPLE_FCN)
def simple_fcn(config: ModelConfig, width: int = 16, depth: int = SIMPLE_DEPTH) -> SimpleFCN:
    return SimpleFCN(config.num_bands, config.num_classes, width=width, depth=depth)
