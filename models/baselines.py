"""The six baselines of GLNet's / GLCANet's Table 1: UNet, ICNet, PSPNet, SegNet, DeepLabv3+, FCN-8s.

Standard architectures written here from their papers, registered so that the memory
benchmark (patch vs global inference) and the pipeline can run them like any rsinfer
model; random weights. Input (B, bands, H, W), normalized, with H and W multiples of the
model's total stride (``size_multiple``; the pipeline pads); output logits
(B, classes, H, W).

Shared choices: every resize is bilinear with ``align_corners=False``; a conv followed by
BN has no bias (except in the VGG16-BN encoder); training-only auxiliary heads are not
built. The encoders use torchvision's layouts (:class:`~.resnet.ResNet`, a VGG16
``features`` Sequential), so ImageNet checkpoints could load. Pyramid pooling, image
pooling and SegNet's unpooling are written in ONNX-exportable forms (averaging matrices,
a mean, a scatter).

Parameters and GFLOPs at 512², 3 bands, 6 classes: :data:`COMPLEXITY_512`.

Per-model notes, differences from the papers, export details and costs:
docs/models/baselines.md
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .lanet import adaptive_avg_pool2d
from .registry import register_model
from .resnet import ResNet

# (parameters, GFLOPs) at 512², 3 bands, 6 classes, measured with complexity.model_complexity.
COMPLEXITY_512: dict[str, tuple[int, float]] = {
    "unet": (31_037_958, 385.51),
    "icnet": (24_579_494, 17.62),
    "pspnet": (46_584_902, 354.30),
    "segnet": (29_442_758, 321.62),
    "deeplabv3plus": (40_348_326, 138.32),
    "fcn8s": (134_300_114, 221.67),
}

PSP_BINS = (1, 2, 3, 6)


# --- shared bits -----------------------------------------------------------------------------


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """``kernel``×``kernel`` conv (no bias, "same" padding) → BN → ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def dilated_resnet50(in_channels: int, output_stride: int) -> ResNet:
    """torchvision-layout ResNet-50 with stride replaced by dilation for output stride 8 or 16."""
    if output_stride == 8:
        strides, dilations = (1, 2, 1, 1), (1, 1, 2, 4)
    elif output_stride == 16:
        strides, dilations = (1, 2, 2, 1), (1, 1, 1, 2)
    else:
        raise ValueError("output_stride must be 8 or 16")
    return ResNet((3, 4, 6, 3), in_channels=in_channels, strides=strides, dilations=dilations, contract_dilation=True)


# VGG16 configuration "D": conv widths per block, each block ending in a 2×2 max pool.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg16_features(in_channels: int, batch_norm: bool, return_indices: bool = False) -> nn.Sequential:
    """torchvision ``vgg16``/``vgg16_bn`` ``features`` (same indices, so its keys load).

    3×3 convs with bias and padding 1, (BN,) ReLU; 2×2/2 max pool after each block.
    """
    layers: list[nn.Module] = []
    c = in_channels
    for block in VGG16_BLOCKS:
        for w in block:
            layers.append(nn.Conv2d(c, w, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.ReLU(inplace=True))
            c = w
        layers.append(nn.MaxPool2d(2, 2, return_indices=return_indices))
    return nn.Sequential(*layers)


def max_unpool2d(x: torch.Tensor, indices: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``F.max_unpool2d`` as a scatter into a zero map of ``size`` (exports as ScatterElements).

    ``indices`` are ``max_pool2d(..., return_indices=True)``'s, flat per (batch, channel)
    plane; non-overlapping windows make them unique, so the scatter has no collisions.
    """
    b, c = x.shape[:2]
    h, w = int(size[0]), int(size[1])
    out = x.new_zeros((b, c, h * w))
    return out.scatter(2, indices.flatten(2), x.flatten(2)).view(b, c, h, w)


def bilinear_kernel_(deconv: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    """Initialise a (C → C) transposed conv as per-channel bilinear upsampling (FCN's init)."""
    k = deconv.kernel_size[0]
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    og = torch.arange(k, dtype=torch.float32, device=deconv.weight.device)
    filt1 = 1 - (og - center).abs() / factor
    filt = filt1[:, None] * filt1[None, :]
    with torch.no_grad():
        deconv.weight.zero_()
        for i in range(min(deconv.in_channels, deconv.out_channels)):
            deconv.weight[i, i].copy_(filt)
    return deconv


# --- UNet --------------------------------------------------------------------------------------


class UNet(nn.Module):
    """UNet (Ronneberger et al., MICCAI 2015): 4 down / 4 up, widths 64-128-256-512-1024.

    Padded ("same") 3×3 conv + BN + ReLU pairs, max pool down, the paper's learned 2×2
    stride-2 "up-convolution" up, skips concatenated; 1×1 classifier. Total stride 16.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 6, widths: Sequence[int] = (64, 128, 256, 512, 1024)):
        super().__init__()
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(nn.Sequential(conv_bn_relu(c, w), conv_bn_relu(w, w)))
            c = w
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.up_conv.append(nn.Sequential(conv_bn_relu(2 * w, w), conv_bn_relu(w, w)))
            c = w
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2, 2)
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck
        for up, conv in zip(self.up, self.up_conv):
            x = conv(torch.cat([skips.pop(), up(x)], 1))
        return self.classifier(x)


# --- pyramid pooling (PSPNet, ICNet) -----------------------------------------------------------


def pyramid_pooled(x: torch.Tensor, bins: Sequence[int]) -> list[torch.Tensor]:
    """``adaptive_avg_pool2d(x, (b, b))`` for each bin count, in exportable (matrix) form."""
    return [adaptive_avg_pool2d(x, (b, b)) for b in bins]


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: per bin count, adaptive average pooling → 1×1 conv
    (C / len(bins) channels) → BN → ReLU → bilinear upsampling; concatenated with the input."""

    def __init__(self, in_channels: int, bins: Sequence[int] = PSP_BINS):
        super().__init__()
        self.bins = tuple(bins)
        self.stages = nn.ModuleList(conv_bn_relu(in_channels, in_channels // len(bins), 1) for _ in bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = pyramid_pooled(x, self.bins)
        return torch.cat([x] + [upsample(stage(p), size) for stage, p in zip(self.stages, pooled)], 1)


# --- ICNet -------------------------------------------------------------------------------------


class CascadeFeatureFusion(nn.Module):
    """ICNet's CFF unit: low-res F1 ×2 bilinear → 3×3 conv dilation 2 → BN; high-res F2 →
    1×1 conv → BN; sum → ReLU. (The unit's auxiliary classifier is training-only.)"""

    def __init__(self, low_channels: int, high_channels: int, out_channels: int = 128):
        super().__init__()
        self.low = nn.Sequential(
            nn.Conv2d(low_channels, out_channels, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.high = nn.Sequential(nn.Conv2d(high_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return F.relu(self.low(upsample(low, high.shape[-2:])) + self.high(high))


class ICNet(nn.Module):
    """ICNet (Zhao et al., ECCV 2018), inference path, dilated ResNet-50 (OS 8) backbone.

    Three cascade inputs: the full image through three stride-2 convs (64 ch at 1/8);
    the 1/2 image through the ResNet up to conv3_1 (``layer2[0]``, 512 ch at 1/16); those
    features downsampled ×2 through the rest of the ResNet (2048 ch at 1/32), pyramid
    pooling summed in, 1×1 to 256. Two CFF units (128 ch) merge 1/32 → 1/16 → 1/8; the
    classifier runs at 1/4. Full ResNet-50 widths, unlike the authors' compressed model
    (docs/models/baselines.md). Total stride 32.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 6, bins: Sequence[int] = PSP_BINS):
        super().__init__()
        self.bins = tuple(bins)
        self.sub1 = nn.Sequential(
            conv_bn_relu(in_channels, 32, stride=2), conv_bn_relu(32, 32, stride=2), conv_bn_relu(32, 64, stride=2)
        )
        self.backbone = dilated_resnet50(in_channels, output_stride=8)
        self.sub4_reduce = conv_bn_relu(2048, 256, 1)
        self.cff_sub24 = CascadeFeatureFusion(256, 512, 128)
        self.cff_sub12 = CascadeFeatureFusion(128, 64, 128)
        self.classifier = nn.Conv2d(128, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        b = self.backbone
        f1 = self.sub1(x)  # 64 ch, 1/8
        f2 = b.layer2[0](b.layer1(b.forward_stem(upsample(x, (h // 2, w // 2)))))  # 512 ch, 1/16
        f4 = upsample(f2, (h // 32, w // 32))
        f4 = b.layer4(b.layer3(b.layer2[1:](f4)))  # 2048 ch, 1/32
        size = f4.shape[-2:]
        for p in pyramid_pooled(f4, self.bins):
            f4 = f4 + upsample(p, size)
        y = self.cff_sub24(self.sub4_reduce(f4), f2)  # 128 ch, 1/16
        y = self.cff_sub12(y, f1)  # 128 ch, 1/8
        y = self.classifier(upsample(y, (h // 4, w // 4)))
        return upsample(y, (h, w))


# --- PSPNet ------------------------------------------------------------------------------------


class PSPNet(nn.Module):
    """PSPNet (Zhao et al., CVPR 2017): dilated ResNet-50 (output stride 8), pyramid pooling
    (bins 1, 2, 3, 6; 512 ch each), 3×3 conv 4096→512 + BN + ReLU, dropout 0.1, 1×1
    classifier, ×8 bilinear. No auxiliary head. Total stride 8.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 6, bins: Sequence[int] = PSP_BINS):
        super().__init__()
        self.backbone = dilated_resnet50(in_channels, output_stride=8)
        self.ppm = PyramidPooling(2048, bins)
        self.bottleneck = conv_bn_relu(4096, 512)
        self.dropout = nn.Dropout2d(0.1)
        self.classifier = nn.Conv2d(512, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5 = self.backbone(x)[-1]
        y = self.classifier(self.dropout(self.bottleneck(self.ppm(c5))))
        return upsample(y, x.shape[-2:])


# --- SegNet ------------------------------------------------------------------------------------


class SegNet(nn.Module):
    """SegNet (Badrinarayanan et al., TPAMI 2017): VGG16-BN encoder (13 convs, torchvision
    ``vgg16_bn.features`` layout) whose five 2×2 max pools keep their argmax indices; the
    mirrored decoder unpools with those indices (sparse maps, zeros elsewhere) and densifies
    with 3×3 conv + BN + ReLU (widths mirror the encoder: 512×3, 512,512,256, 256,256,128,
    128,64, 64); the last layer is a 3×3 conv 64 → classes (no BN/ReLU), as in the paper's
    final decoder → soft-max. Total stride 32.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 6):
        super().__init__()
        self.features = vgg16_features(in_channels, batch_norm=True, return_indices=True)
        # Decoder block i mirrors encoder block i: as many 3×3 convs, the last one mapping to
        # block i-1's width; in block 0 that last conv is the classifier.
        self.decoder = nn.ModuleList()
        for i in reversed(range(len(VGG16_BLOCKS))):
            widths = list(reversed(VGG16_BLOCKS[i]))  # input side first
            outs = widths[1:] + ([VGG16_BLOCKS[i - 1][-1]] if i else [])
            self.decoder.append(nn.Sequential(*[conv_bn_relu(cin, cout) for cin, cout in zip(widths, outs)]))
        self.classifier = nn.Conv2d(VGG16_BLOCKS[0][0], num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pools = []  # (indices, size before pooling), one per block
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                size = x.shape[-2:]
                x, idx = layer(x)
                pools.append((idx, size))
            else:
                x = layer(x)
        for block in self.decoder:
            idx, size = pools.pop()
            x = block(max_unpool2d(x, idx, size))
        return self.classifier(x)


# --- DeepLabv3+ --------------------------------------------------------------------------------


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1×1 conv, three 3×3 convs (rates 6/12/18), image
    pooling (mean over H, W → 1×1 conv, broadcast back), each 256 ch + BN + ReLU; concat →
    1×1 conv 256 + BN + ReLU, dropout 0.5."""

    def __init__(self, in_channels: int = 2048, channels: int = 256, rates: Sequence[int] = (6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, channels, 1)]
            + [conv_bn_relu(in_channels, channels, 3, dilation=r) for r in rates]
        )
        self.image_pool = conv_bn_relu(in_channels, channels, 1)
        self.project = conv_bn_relu(channels * (len(rates) + 2), channels, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.image_pool(x.mean((2, 3), keepdim=True))
        outs.append(pooled.expand(-1, -1, x.shape[2], x.shape[3]))
        return self.dropout(self.project(torch.cat(outs, 1)))


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ (Chen et al., ECCV 2018) on ResNet-50, output stride 16 (layer4 dilated 2).

    ASPP on c5; decoder: c2 (1/4) → 1×1 conv 48 + BN + ReLU, concatenated with the ASPP
    output upsampled ×4, two 3×3 convs 256 + BN + ReLU (plain, not depthwise-separable),
    1×1 classifier, ×4 bilinear. Total stride 16.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 6, rates: Sequence[int] = (6, 12, 18)):
        super().__init__()
        self.backbone = dilated_resnet50(in_channels, output_stride=16)
        self.aspp = ASPP(2048, 256, rates)
        self.low_project = conv_bn_relu(256, 48, 1)
        self.decoder = nn.Sequential(conv_bn_relu(256 + 48, 256), conv_bn_relu(256, 256))
        self.classifier = nn.Conv2d(256, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c2, _, _, c5 = self.backbone(x)
        low = self.low_project(c2)
        y = torch.cat([upsample(self.aspp(c5), low.shape[-2:]), low], 1)
        return upsample(self.classifier(self.decoder(y)), x.shape[-2:])


# --- FCN-8s ------------------------------------------------------------------------------------


class FCN8s(nn.Module):
    """FCN-8s (Long, Shelhamer, Darrell, CVPR 2015) on VGG16 (torchvision ``vgg16.features``
    layout), caffe layer names.

    fc6 = 7×7 conv 512→4096, fc7 = 1×1 conv 4096→4096 (the convolutionalized VGG16
    classifier); score_fr → upscore2 (×2) + score_pool4 → upscore_pool4 (×2) + score_pool3
    → upscore8 (×8), the upsamplers being bilinear-initialised transposed convs. Unlike the
    paper (100-px padding, then crops), fc6 and the transposed convs are padded so every map
    is exactly 2× / 8× the previous one and needs no crop. Total stride 32.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 6, fc_channels: int = 4096):
        super().__init__()
        self.features = vgg16_features(in_channels, batch_norm=False)
        self.fc6 = nn.Sequential(nn.Conv2d(512, fc_channels, 7, padding=3), nn.ReLU(inplace=True), nn.Dropout2d(0.5))
        self.fc7 = nn.Sequential(nn.Conv2d(fc_channels, fc_channels, 1), nn.ReLU(inplace=True), nn.Dropout2d(0.5))
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.score_pool3 = nn.Conv2d(256, num_classes, 1)
        self.upscore2 = bilinear_kernel_(nn.ConvTranspose2d(num_classes, num_classes, 4, 2, 1, bias=False))
        self.upscore_pool4 = bilinear_kernel_(nn.ConvTranspose2d(num_classes, num_classes, 4, 2, 1, bias=False))
        self.upscore8 = bilinear_kernel_(nn.ConvTranspose2d(num_classes, num_classes, 16, 8, 4, bias=False))

    # indices of pool3 / pool4 in torchvision's vgg16.features
    POOL3, POOL4 = 16, 23

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool3 = self.features[: self.POOL3 + 1](x)
        pool4 = self.features[self.POOL3 + 1 : self.POOL4 + 1](pool3)
        pool5 = self.features[self.POOL4 + 1 :](pool4)
        y = self.upscore2(self.score_fr(self.fc7(self.fc6(pool5))))
        y = self.upscore_pool4(y + self.score_pool4(pool4))
        return self.upscore8(y + self.score_pool3(pool3))


# --- registry ----------------------------------------------------------------------------------


def _config(name: str, size_multiple: int, paper: str, description: str) -> ModelConfig:
    # min_tile = the total stride: the deepest map is then 1×1 (pooling bins larger than a
    # map are still defined, so PSPNet/ICNet run there too, if not meaningfully).
    return ModelConfig(
        name=name,
        description=description,
        tile=512,
        overlap=64,
        size_multiple=size_multiple,
        min_tile=size_multiple,
        receptive_radius=None,
        paper=paper,
    )


@register_model(
    _config("unet", 16, "UNet (MICCAI 2015)", "UNet 64-1024, padded 3x3 conv+BN, transposed-conv up (Table 1 baseline)")
)
def unet(config: ModelConfig) -> UNet:
    return UNet(config.num_bands, config.num_classes)


@register_model(
    _config(
        "icnet",
        32,
        "ICNet (ECCV 2018)",
        "ICNet, dilated ResNet-50, cascade inputs 1, 1/2, 1/4 + CFF (Table 1 baseline)",
    )
)
def icnet(config: ModelConfig) -> ICNet:
    return ICNet(config.num_bands, config.num_classes)


@register_model(
    _config(
        "pspnet", 8, "PSPNet (CVPR 2017)", "PSPNet, dilated ResNet-50 OS 8, pyramid pooling 1/2/3/6 (Table 1 baseline)"
    )
)
def pspnet(config: ModelConfig) -> PSPNet:
    return PSPNet(config.num_bands, config.num_classes)


@register_model(
    _config(
        "segnet",
        32,
        "SegNet (TPAMI 2017)",
        "SegNet, VGG16-BN encoder, max-pool-index unpooling decoder (Table 1 baseline)",
    )
)
def segnet(config: ModelConfig) -> SegNet:
    return SegNet(config.num_bands, config.num_classes)


@register_model(
    _config(
        "deeplabv3plus",
        16,
        "DeepLabv3+ (ECCV 2018)",
        "DeepLabv3+, ResNet-50 OS 16, ASPP 6/12/18 + image pooling, 48-ch decoder (Table 1 baseline)",
    )
)
def deeplabv3plus(config: ModelConfig) -> DeepLabV3Plus:
    return DeepLabV3Plus(config.num_bands, config.num_classes)


@register_model(
    _config("fcn8s", 32, "FCN-8s (CVPR 2015)", "FCN-8s, VGG16 with conv fc6/fc7, pool3/pool4 skips (Table 1 baseline)")
)
def fcn8s(config: ModelConfig, fc_channels: int = 4096) -> FCN8s:
    """``fc_channels`` (4096 in the paper) shrinks fc6/fc7, e.g. for quick export tests."""
    return FCN8s(config.num_bands, config.num_classes, fc_channels=fc_channels)
