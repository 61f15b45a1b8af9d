"""ResNet encoders returning the four stage outputs (c2..c5): ResNet-50 for the paper
models, and narrow ResNet-18s for the ``-lite`` demo variants.

Layout facts (not code) carried over from two references:

* torchvision ``resnet50``: Bottleneck with expansion 4, the stride on the 3×3 conv
  ("ResNet v1.5" / mmseg ``style='pytorch'``), projection shortcut ``downsample`` =
  (1×1 conv with the block stride, BN) on the first block of each stage. Parameter and
  buffer names follow torchvision exactly so an ImageNet checkpoint, minus ``fc.*``,
  loads with ``strict=True``.
* mmseg ``ResNetV1c``: the 7×7 stem is replaced by three 3×3 convs (3→32 s2, 32→32,
  32→64, each + BN + ReLU) stored as ``stem.{0,1,3,4,6,7}``; per-stage ``dilations``
  with ``contract_dilation`` giving the first block of a dilated stage ``d // 2``
  (mmseg ``ResLayer``: ``first_dilation = dilation // 2 if dilation > 1 and
  contract_dilation``). The 3×3 conv pads by its dilation, so spatial size only
  changes through strides.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

EXPANSION = 4
STAGE_PLANES = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """Two 3×3 convs plus the shortcut (torchvision ``BasicBlock`` names); no expansion."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (stride, dilation) → 1×1 expand, plus the shortcut."""

    expansion = EXPANSION

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ResNet(nn.Module):
    """ResNet; ``forward`` returns ``[c2, c3, c4, c5]`` (``out_channels``).

    Bottleneck blocks by default (ResNet-50: 256/512/1024/2048 channels). ``basic=True``
    builds basic blocks (ResNet-18/34) and ``width`` scales every stage: the lite demo
    models use ResNet-18 at width 32 (32/64/128/256 channels, a quarter of the weights).
    With the default strides the outputs sit at 1/4, 1/8, 1/16, 1/32 of the input.
    ``strides``/``dilations`` are per stage (layer1..layer4).
    """

    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        in_channels: int = 3,
        deep_stem: bool = False,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        contract_dilation: bool = False,
        basic: bool = False,
        width: int = 64,
    ):
        super().__init__()
        if not len(layers) == len(strides) == len(dilations) == 4:
            raise ValueError("layers, strides and dilations need one entry per stage (4)")
        self.block = BasicBlock if basic else Bottleneck
        self.deep_stem = deep_stem
        if deep_stem:  # mmseg ResNetV1c stem; no conv1/bn1 then
            self.stem = nn.Sequential(
                *_conv_bn_relu(in_channels, width // 2, 2),
                *_conv_bn_relu(width // 2, width // 2, 1),
                *_conv_bn_relu(width // 2, width, 1),
            )
        else:  # torchvision stem
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        self.inplanes = width
        planes = [p * width // 64 for p in STAGE_PLANES]
        for i, (n, p, s, d) in enumerate(zip(layers, planes, strides, dilations)):
            self.add_module(f"layer{i + 1}", self._make_layer(p, n, s, d, contract_dilation))
        self.out_channels = tuple(p * self.block.expansion for p in planes)
        self._init_weights()

    def _make_layer(
        self, planes: int, blocks: int, stride: int, dilation: int, contract_dilation: bool
    ) -> nn.Sequential:
        out = planes * self.block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        first_dilation = dilation // 2 if (contract_dilation and dilation > 1) else dilation
        blocks_ = [self.block(self.inplanes, planes, stride, first_dilation, downsample)]
        self.inplanes = out
        blocks_ += [self.block(out, planes, 1, dilation) for _ in range(1, blocks)]
        return nn.Sequential(*blocks_)

    def _init_weights(self) -> None:
        # torchvision's default init; only matters when no checkpoint is loaded
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Stem plus max-pool: ``width`` channels at 1/4."""
        x = self.stem(x) if self.deep_stem else self.relu(self.bn1(self.conv1(x)))
        return self.maxpool(x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.forward_stem(x)
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


def resnet50(**kwargs) -> ResNet:
    """torchvision ResNet-50 layout (7×7 stem, ``conv1``/``bn1`` keys)."""
    return ResNet(layers=(3, 4, 6, 3), **kwargs)


def resnet50_v1c(**kwargs) -> ResNet:
    """mmseg ResNetV1c-50 layout (deep 3×3 stem, ``stem.*`` keys)."""
    kwargs.setdefault("deep_stem", True)
    return ResNet(layers=(3, 4, 6, 3), **kwargs)


def resnet18_lite(width: int = 32, **kwargs) -> ResNet:
    """ResNet-18 layout (basic blocks, 2-2-2-2) at ``width`` channels in the stem."""
    return ResNet(layers=(2, 2, 2, 2), basic=True, width=width, **kwargs)
