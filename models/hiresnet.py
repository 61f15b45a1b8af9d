"""Hi-ResNet (Chen et al., IEEE JSTARS 17, 2024; arXiv 2305.12691), from the paper.

Funnel (two pre-norm stride-2 3×3 convs to 1/4, four inverted-bottleneck blocks) →
layer 1: branches of 48 and 96 ch at 1/4 and 1/8, 4 IA blocks each, 1 module → layer 2:
a 192-ch branch at 1/16 added, 12 IA blocks per branch, 4 modules; each module ends in an
all-to-all fusion summed per resolution → feature refinement on the 336-ch concat at 1/4:
a coarse classifier whose logits are OCR's soft object regions, and an OCR-refined
classifier. ``forward`` returns coarse + refined (1:1, paper Fig. 2), upsampled bilinearly
(``align_corners=True``) to the input.

IA block: ``y = SE(x); y = y + WMHSA(BN(y)); y = y + DW(y); out = x + PW(GELU(BN(y)))``.
The paper leaves the widths open; ours (window 8, 24-dim heads, 9×9 depthwise, SE hidden
2C, funnel width 64, a light 1×1 OCR head) are chosen to land near its 26.0 M parameters
and 57 G "FLOPs" (read as multiply-adds): 25,352,498 parameters, 116.89 GFLOPs =
58.45 GMAC at 512².

This is not the authors' public code (AmberJar/Hi-ResNet), and no arguments of this
builder turn it into that: their ``HRNet_W48_ASPOCR_V5`` stacks HRNet basic blocks with
coordinate attention (no window attention, SE or depthwise conv) under an ASP-OCR head,
54.3 M parameters, so their checkpoints cannot load here. Giving ours the authors' 256-wide
funnel, an HRNet-OCR-sized head and a classic SE (docs/models/hiresnet.md) makes 24.3 M
parameters of the same IA-block network, still not theirs. No weights are
published; the builder returns random weights. Input (B, bands, H, W), padded to multiples
of 16 by the pipeline (any size runs); output logits (B, classes, H, W).

Provenance, our choices and the budget behind them: docs/models/hiresnet.md
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import IMAGENET_MEAN_255, IMAGENET_STD_255, ModelConfig
from .registry import register_model

# Table II: branch channels (C1, C2, C3), IA blocks per branch in layers 1 / 2, modules per layer.
BRANCH_CHANNELS = (48, 96, 192)
LAYER_BLOCKS = (4, 12)
LAYER_MODULES = (1, 4)
# Total stride of the lowest branch: every stride-2 step must halve a side exactly.
SIZE_MULTIPLE = 16
# Our choices for what the paper leaves open (docs/models/hiresnet.md says why).
WINDOW = 8  # L: attention windows of 8×8 tokens
HEAD_DIM = 24  # 2 / 4 / 8 heads on the 48 / 96 / 192-channel branches
DW_KERNEL = 9  # depthwise kernel
SE_RATIO = 2.0  # SE hidden width as a multiple of C (classic SE reduction r = 1 / SE_RATIO)


def _upsample(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    # align_corners=True everywhere, as in the authors' HRNet-based code.
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class NormConv(nn.Sequential):
    """BN → conv (no bias) [→ GELU]: the pre-norm unit of the funnel, transitions and fusions.

    The paper puts BN *before* the convolution when sampling down or up (Sec. III-A1,
    Fig. 5); the authors' code does so in transitions and fusions.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, act: bool = True):
        layers: list[nn.Module] = [
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        ]
        if act:
            layers.append(nn.GELU())
        super().__init__(*layers)


class ConvNormAct(nn.Sequential):
    """conv (no bias) → BN → activation: the usual post-norm unit, used in the OCR head."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, act: type[nn.Module] = nn.ReLU):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
            act(),
        )


# --- funnel module ----------------------------------------------------------------------------


class InvertedBottleneck(nn.Module):
    """IB block: 3×3 conv → BN → 1×1 (×expansion) → GELU → 1×1 back, plus the input; linear out.

    "Thin heads, thick middle" with no activation after the sum, so the residual stream is
    never squashed (paper Sec. III-A1). When the width changes, the shortcut is BN + 1×1
    (authors' code).
    """

    def __init__(self, cin: int, cout: int, expansion: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(cout)
        self.expand = nn.Conv2d(cout, cout * expansion, 1, bias=False)
        self.act = nn.GELU()
        self.reduce = nn.Conv2d(cout * expansion, cout, 1, bias=False)
        self.shortcut = nn.Identity() if cin == cout else NormConv(cin, cout, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(self.act(self.expand(self.norm(self.conv(x)))))
        return self.shortcut(x) + y


class Funnel(nn.Module):
    """Two stride-2 pre-norm 3×3 convs (to 1/4), then a stem of inverted bottlenecks."""

    def __init__(self, in_channels: int, stem_channels: int = 64, width: int = 64, blocks: int = 4, expansion: int = 4):
        super().__init__()
        self.down = nn.Sequential(
            NormConv(in_channels, stem_channels, 3, stride=2),
            NormConv(stem_channels, stem_channels, 3, stride=2),
        )
        self.stem = nn.Sequential(
            *[InvertedBottleneck(stem_channels if i == 0 else width, width, expansion) for i in range(blocks)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(self.down(x))


# --- IA block ---------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad ``(B, C, H, W)`` bottom/right to multiples of ``window`` and cut it into windows.

    Returns ``(windows, (Hp, Wp))`` with ``windows`` of shape ``(B·nWin, window², C)``,
    windows in raster order per image, tokens in raster order per window. Paddings are
    arithmetic on ``x.shape`` (no control flow on tensor values), which the legacy ONNX
    tracer records as shape ops, so even a dynamic-size export pads correctly.
    """
    b, c, h, w = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    x = F.pad(x, (0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.reshape(b, c, hp // window, window, wp // window, window)
    windows = x.permute(0, 2, 4, 3, 5, 1).reshape(-1, window * window, c)
    return windows, (hp, wp)


def window_merge(windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: reassemble ``(B, C, Hp, Wp)`` and crop to ``size``."""
    hp, wp = padded
    c = windows.shape[-1]
    x = windows.reshape(-1, hp // window, wp // window, window, window, c)
    x = x.permute(0, 5, 1, 3, 2, 4).reshape(-1, c, hp, wp)
    return x[:, :, : size[0], : size[1]]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ``window``×``window`` windows.

    The map is reshaped C×H×W → (C·HW/L²)×L×L (paper Fig. 6b): no shift, no relative
    position bias (the paper names none; the block's depthwise conv supplies position).
    Sides that are not multiples of L are zero-padded *after* the qkv projection and
    cropped after merging. No mask: a padded token has q = k = v = 0, so it adds
    exp(0) to the softmax denominators of real queries in its window and nothing to their
    numerators; its own outputs are cropped away.
    """

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"WindowAttention: {dim} channels do not split into {heads} heads")
        self.heads, self.window = heads, window
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        windows, padded = window_partition(self.qkv(x), self.window)
        n, t, c3 = windows.shape
        heads = windows.reshape(n, t, 3, self.heads, c3 // (3 * self.heads))
        q, k, v = heads.permute(2, 0, 3, 1, 4).unbind(0)  # each (n, heads, t, d)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(-1)  # (n, heads, t, t)
        out = (attn @ v).transpose(1, 2).reshape(n, t, c3 // 3)
        return self.proj(window_merge(out, self.window, padded, size))


class SqueezeExcite(nn.Module):
    """SE channel gate: global mean → 1×1 → SiLU → 1×1 → sigmoid, times the input."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.reduce = nn.Conv2d(dim, hidden, 1)
        self.act = nn.SiLU()
        self.expand = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * gate.sigmoid()


class IABlock(nn.Module):
    """Information aggregation block (paper Fig. 6)::

        y = SE(x)
        y = y + WMHSA(BN(y))          # skip around the attention
        y = y + DWConv_k(y)           # skip around the large-kernel depthwise conv
        out = x + Conv1x1(GELU(BN(y)))  # skip around the whole block

    Two norms and one GELU (plus SiLU inside SE): the paper uses "fewer activation
    functions and normalizations" than a conv block, with GELU/SiLU instead of ReLU.
    """

    def __init__(self, dim: int, heads: int, window: int, kernel: int, se_hidden: int):
        super().__init__()
        self.se = SqueezeExcite(dim, se_hidden)
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.dwconv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.act = nn.GELU()
        self.pwconv = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(x)
        y = y + self.attn(self.norm1(y))
        y = y + self.dwconv(y)
        return x + self.pwconv(self.act(self.norm2(y)))


# --- multi-branch module ----------------------------------------------------------------------


class FusionLink(nn.Module):
    """One arrow of the fusion (Fig. 5): branch ``src`` resampled to branch ``dst``.

    Up (src coarser): BN + 1×1 conv at the coarse size, then bilinear upsampling. The paper
    lists upsampling first; BN and the 1×1 conv are per-pixel affine maps and bilinear
    weights sum to one, so the order gives the same result, and converting first is
    cheaper (authors' code does the same). Down: a chain of BN + stride-2 3×3 convs, GELU
    between links, the last one changing the width.
    """

    def __init__(self, channels: tuple[int, ...], src: int, dst: int):
        super().__init__()
        cin, cout = channels[src], channels[dst]
        self.up = src > dst
        if self.up:
            self.body: nn.Module = NormConv(cin, cout, 1, act=False)
        else:
            steps = dst - src
            self.body = nn.Sequential(
                *[NormConv(cin, cout if i == steps - 1 else cin, 3, stride=2, act=i < steps - 1) for i in range(steps)]
            )

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        y = self.body(x)
        return _upsample(y, size) if self.up else y


class MultiBranchModule(nn.Module):
    """Parallel branches of IA blocks, then all-to-all fusion summed per resolution + GELU."""

    def __init__(self, channels: tuple[int, ...], blocks: int, block_args: Callable[[int], dict]):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[IABlock(c, **block_args(c)) for _ in range(blocks)]) for c in channels
        )
        n = len(channels)
        self.fuse = nn.ModuleList(
            nn.ModuleList(FusionLink(channels, j, i) if j != i else nn.Identity() for j in range(n)) for i in range(n)
        )
        self.act = nn.GELU()  # after the sum, as in the authors' fuse layers

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, links in enumerate(self.fuse):
            size = xs[i].shape[-2:]
            y = xs[i]
            for j, link in enumerate(cast(nn.ModuleList, links)):
                if j != i:
                    y = y + link(xs[j], size)
            out.append(self.act(y))
        return out


# --- feature refinement -----------------------------------------------------------------------


class ObjectContext(nn.Module):
    """OCR (Yuan et al., ECCV 2020) from soft object regions given by coarse logits.

    1. soft object regions: the coarse logits softmaxed over pixels, one map per class;
    2. object region representations: region-weighted sums of the pixel features;
    3. pixel-region relation: softmax over classes of key(pixel)·key(region) / sqrt(d);
    4. object contextual representation: relation-weighted sum of region values;
    5. augmented representation: 1×1 fuse of [context, pixel features].
    The OCR paper's dropout (training only) is left out.
    """

    def __init__(self, channels: int, key_channels: int):
        super().__init__()
        self.scale = key_channels**-0.5
        self.pixel_key = nn.Sequential(ConvNormAct(channels, key_channels), ConvNormAct(key_channels, key_channels))
        self.region_key = nn.Sequential(ConvNormAct(channels, key_channels), ConvNormAct(key_channels, key_channels))
        self.region_value = ConvNormAct(channels, key_channels)
        self.context_out = ConvNormAct(key_channels, channels)
        self.fuse = ConvNormAct(2 * channels, channels)

    def forward(self, feats: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        b, _, h, w = feats.shape
        regions_soft = coarse.flatten(2).softmax(-1)  # (B, K, HW)
        regions = regions_soft @ feats.flatten(2).transpose(1, 2)  # (B, K, C)
        regions = regions.transpose(1, 2).unsqueeze(-1)  # (B, C, K, 1)
        query = self.pixel_key(feats).flatten(2).transpose(1, 2)  # (B, HW, d)
        key = self.region_key(regions).flatten(2)  # (B, d, K)
        value = self.region_value(regions).flatten(2).transpose(1, 2)  # (B, K, d)
        relation = ((query @ key) * self.scale).softmax(-1)  # (B, HW, K)
        context = (relation @ value).transpose(1, 2).reshape(b, -1, h, w)  # (B, d, H, W)
        return self.fuse(torch.cat([self.context_out(context), feats], 1))


class FeatureRefinement(nn.Module):
    """Coarse classifier (soft object regions) and OCR-refined classifier on the 1/4 concat."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        coarse_channels: int,
        ocr_channels: int,
        key_channels: int,
        kernel: int,
    ):
        super().__init__()
        self.coarse = nn.Sequential(
            ConvNormAct(in_channels, coarse_channels, kernel), nn.Conv2d(coarse_channels, num_classes, 1)
        )
        self.pixels = ConvNormAct(in_channels, ocr_channels, kernel)
        self.ocr = ObjectContext(ocr_channels, key_channels)
        self.classifier = nn.Conv2d(ocr_channels, num_classes, 1)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        coarse = self.coarse(feats)
        refined = self.classifier(self.ocr(self.pixels(feats), coarse))
        return coarse, refined


# --- the network ------------------------------------------------------------------------------


class HiResNet(nn.Module):
    """Funnel → layer 1 (2 branches) → layer 2 (3 branches) → feature refinement.

    ``forward`` returns coarse + refined logits at the input size; ``forward_heads`` returns
    the two separately (both at the input size), ``forward_features`` the three branch maps.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 6,
        channels: tuple[int, int, int] = BRANCH_CHANNELS,
        blocks: tuple[int, int] = LAYER_BLOCKS,
        num_modules: tuple[int, int] = LAYER_MODULES,
        stem_channels: int = 64,
        funnel_channels: int = 64,
        window: int = WINDOW,
        head_dim: int = HEAD_DIM,
        dw_kernel: int = DW_KERNEL,
        se_ratio: float = SE_RATIO,
        coarse_channels: int = 256,
        ocr_channels: int = 256,
        ocr_key_channels: int = 128,
        head_kernel: int = 1,
    ):
        super().__init__()
        self.funnel = Funnel(in_channels, stem_channels, funnel_channels)

        def block_args(c: int) -> dict:
            return dict(heads=c // head_dim, window=window, kernel=dw_kernel, se_hidden=max(1, round(c * se_ratio)))

        c1, c2, c3 = channels
        self.transition1 = nn.ModuleList(
            [
                NormConv(funnel_channels, c1, 3),
                NormConv(funnel_channels, c2, 3, stride=2),
            ]
        )
        self.layer1 = nn.Sequential(
            *[MultiBranchModule((c1, c2), blocks[0], block_args) for _ in range(num_modules[0])]
        )
        self.transition2 = NormConv(c2, c3, 3, stride=2)  # new 1/16 branch from the 1/8 one
        self.layer2 = nn.Sequential(
            *[MultiBranchModule((c1, c2, c3), blocks[1], block_args) for _ in range(num_modules[1])]
        )
        self.head = FeatureRefinement(
            sum(channels), num_classes, coarse_channels, ocr_channels, ocr_key_channels, head_kernel
        )

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.funnel(x)
        xs = self.layer1([t(x) for t in self.transition1])
        return self.layer2(xs + [self.transition2(xs[-1])])

    def _heads_quarter(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.forward_features(x)
        size = feats[0].shape[-2:]
        cat = torch.cat([feats[0]] + [_upsample(f, size) for f in feats[1:]], 1)
        return self.head(cat)

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(coarse, refined)`` logits, each bilinearly upsampled to the input size."""
        size = x.shape[-2:]
        coarse, refined = self._heads_quarter(x)
        return _upsample(coarse, size), _upsample(refined, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Paper Fig. 2: at inference the two outputs are added 1:1. Bilinear resizing is
        # linear, so summing at 1/4 and upsampling once equals summing the upsampled maps.
        coarse, refined = self._heads_quarter(x)
        return _upsample(coarse + refined, x.shape[-2:])


# --- registry ---------------------------------------------------------------------------------

HIRESNET = ModelConfig(
    name="hiresnet",
    description="Hi-ResNet: funnel stem, 2/3-branch IA blocks (window MHSA, SE, DW conv), OCR head",
    tile=512,  # the paper's training crop (Potsdam, Vaihingen, LoveDA)
    overlap=64,
    in_bands=("red", "green", "blue"),
    # ImageNet statistics on 0-255 (our choice; the authors' scripts disagree: docs/models/hiresnet.md).
    mean=IMAGENET_MEAN_255,
    std=IMAGENET_STD_255,
    input_range=255.0,
    size_multiple=SIZE_MULTIPLE,
    min_tile=SIZE_MULTIPLE,  # one pixel on the 1/16 branch
    receptive_radius=None,  # window attention, SE pooling and OCR regions span the tile
    paper="Hi-ResNet (JSTARS 2024)",
    source="paper (arXiv 2305.12691); shared parts from AmberJar/Hi-ResNet",
)


@register_model(HIRESNET)
def hiresnet(config: ModelConfig, **kwargs) -> HiResNet:
    """Build Hi-ResNet for ``config``'s bands and classes (random weights; none are published).

    ``kwargs`` go to :class:`HiResNet` (window, head_dim, dw_kernel, se_ratio, funnel_channels,
    ...). They change widths of *this* network; none of them gives the authors' public model,
    whose blocks differ (docs/models/hiresnet.md).
    """
    return HiResNet(in_channels=config.num_bands, num_classes=config.num_classes, **kwargs)


HIRESNET_LITE = HIRESNET.replace(
    name="hiresnet-lite",
    description="Hi-ResNet-lite (demo): 16/32/64-channel branches, one module per layer, 64-channel OCR head",
    demo=True,
)


@register_model(HIRESNET_LITE)
def hiresnet_lite(config: ModelConfig, **kwargs) -> HiResNet:
    lite = dict(
        channels=(16, 32, 64),
        blocks=(2, 2),
        num_modules=(1, 1),
        head_dim=16,
        stem_channels=32,
        funnel_channels=32,
        coarse_channels=64,
        ocr_channels=64,
        ocr_key_channels=32,
    )
    return cast(HiResNet, hiresnet(config, **{**lite, **kwargs}))
