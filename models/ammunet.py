"""AMMUNet: multi-scale attention map merging (Yang & Zheng, IEEE GRSL 2024, arXiv 2404.13408).

Written from the paper and from reading the authors' mmseg plug-in (interpretty/AMMUNet:
``mmseg/models/decode_heads/ammunet_head.py``, ``mmseg/models/backbone/ammm_gmsa.py``,
``configs/_base_/models/ammunet_r50-d8.py``). No code is taken from it; the structure and
numerics follow it so that the authors' mmseg checkpoint maps one-to-one onto this module
(:func:`ammunet_key_map`) and gives the same logits.

Architecture
------------
* **Encoder** (config): mmseg ``ResNetV1c``-50, deep 3×3 stem, strides (1, 2, 2, 2),
  dilations (1, 1, 2, 4), ``contract_dilation=True``. The strides keep output stride 32
  despite "d8" in the config name, so c2..c5 are 256/512/1024/2048 channels at 1/4..1/32;
  the dilations only widen the 3×3 convs of stages 3-4.
* **Decoder** (code; the paper's Fig. 1a): 256 channels, 8 heads of 32.
  ``pre_conv`` (1×1 + BN + ReLU on c5) → ``b4`` global MSA at 1/32 → ``p3`` fusion with c4
  → ``b3`` GMSA at 1/16 → ``p2`` fusion with c3 → ``b2`` GMSA at 1/8 → ``p1`` fusion with
  c2 → Dropout2d(0.1) + 1×1 ``conv_seg`` at 1/4 → bilinear resize to the input
  (``align_corners=False``, as mmseg does for ``mode='whole'``). No attention at 1/4.
* **Fusion** ``p*`` (code; differs from UNetFormer's weighted sum): bilinear ×2 on the
  decoder map, 1×1 conv *with bias* on the skip, **concat**, 3×3 conv + BN + ReLU. The
  authors' learnable ``weights`` pair is unused in their forward, so we drop it.
* **Blocks** (code): pre-LN transformer block without window shift: LN → attention →
  residual; LN → FFN (256→1024, GELU, →256) → residual. qkv has a bias; q is scaled by
  head_dim^-0.5 before ``q·kᵀ``.

Attention hierarchy (paper eqs. 1-3, 7, 8; exact behaviour from the code)
------------------------------------------------------------------------
Window sides double per level: ``base_window`` 16 at 1/32 (level 0), 32 at 1/16, 64 at
1/8, so one level-0 token owns a 2×2 group at level 1 and a 4×4 block at level 2.

* Level 0, global MSA (eqs. 1-2): ``A0 = softmax(q·kᵀ + RPB16)`` over the 16×16 window with
  a Swin relative position bias (table 31²×8). The map handed down is ``A0`` with its
  diagonal zeroed: the fixed identity mask ``E`` of eq. 7 keeps ``(1 - E)·AM_{i-1}``.
* Level k ≥ 1, GMSA (eq. 3): attention only inside 2×2 granular windows with one 3×3-entry
  bias table per level (``pb3``/``pb2`` are *separate* 9×8 tables, each shared by all 2×2
  groups of its level). Each group's softmax is divided by the number of groups
  ``G = (window/2)²`` (256 at 1/16, 1024 at 1/8): a code fact the paper does not state.
* AMMM (eq. 7): a token's output is its group's fine attention applied to V, plus each
  deeper masked map applied to V averaged over that deeper token's descendants (the
  "upsampling" of the deeper map: entry ``M[a, a'] / 4^(k-i)`` for every pair of
  descendants). The masks make the parts disjoint: level-0 terms cover token pairs with
  different level-0 ancestors, level-i terms pairs in the same level-i 2×2 group but with
  different level-i ancestors, the fine term pairs in the same finest group. The merged
  matrix is not row-stochastic (a level-1 row sums to ``1 - A0[a, a] + 1/G``).
* Dimension correspondence (eq. 8): inside a window, level-k tokens are put in
  "hierarchical order" (level-0 token in raster order, then one 2×2 quadrant index per
  finer level) with a gather built at init, so the groups of every level are contiguous
  runs; the result is gathered back to raster order before ``proj``.
  ``tests/test_ammunet.py`` checks the whole scheme against a dense N×N matrix built
  directly from these rules in raster coordinates.

Tile size (decision)
--------------------
Input sides must be multiples of 32 (the fusion concat needs exact 2× steps); the pipeline
pads to ``size_multiple=32``. Every level then has the same window grid
``ceil(side/512)`` per axis, which the hand-down of maps needs. At 512 the attention is
exactly global over the tile; at 1024 each level has 2×2 = 4 independent windows (each
covering the same 512-px quadrant at every level), so attention is global per 512-px
quadrant, not per tile. At sides that are not multiples of 512 each level's token grid is
padded to whole windows with zero tokens *after* the LayerNorm, and, as in the authors'
code, those tokens are not masked: their keys and values (the qkv bias) take part in the
softmaxes and in the V averages, then their outputs are cropped. We reproduce this
exactly rather than masking, so logits match the authors' code at every size; the
checkpoint was trained on 512² crops, so we keep tile 512 (and recommend multiples of 512).

Checked here
------------
We ran the authors' head on CPU, with small stand-ins for the mmcv/mmengine building blocks
and ``'cuda:0'`` replaced. Loaded through :func:`ammunet_key_map` with random weights, ours
gives the same 1/4 logits at 512², 1024², 640² and 576² (the last two have zero-padded
windows). The largest difference is 1.8e-7 in float32 and 5e-16 in float64, on logits of
about 0.75. That stub harness holds their code, so it is not part of the tests. Their
``mask_diag`` is created on ``'cuda:0'``; ours is a buffer, so the module is
device-agnostic. There is no data-dependent Python control flow and the index buffers are
built at init. The legacy ONNX exporter with dynamic H/W matches eager in onnxruntime
(tested).

Size and cost (measured, 3×512×512 in, 6 classes)
--------------------------------------------------
* Parameters: **30,430,718** (30.43 M; backbone 23.53 M, decoder 6.90 M). The authors'
  mmseg model also stores modules it never calls: ``p0`` (a WF on the RGB input, 1.18 M),
  ``fr`` (FeatureRefinementHead, 0.15 M) and ``p*.weights`` (6), giving 31.76 M, plus
  the training-only FCN auxiliary head (2.36 M), 34.12 M in all. Table III reports
  **32.35 M**. Adding a 3×3 256→256 ConvBNReLU (0.59 M) to the 31.76 M gives exactly
  32.35 M (32,347,926). Their file has a commented-out ``segmentation_head`` (ConvModule
  256→256 + Dropout2d + 1×1, UNetFormer's 3×3 head), so Table III most likely counted
  an earlier code state that had this head and no auxiliary head. That is our reading;
  the paper doesn't say.
* Compute (``torch.utils.flop_counter.FlopCounterMode``, which counts only convolutions
  and matmuls, 2 FLOPs per multiply-add): **108.63 GFLOPs = 54.32 GMACs** (convolutions
  50.01, linear layers 4.23, attention matmuls 0.08 GMACs). Backbone 22.61 GMACs; ``p1``'s
  3×3 512→256 conv at 1/4 alone is 19.33. Table III's **52.50 GFLOPs** is on the MAC scale
  (mmseg's counters report multiply-adds as "FLOPs"), 3.4 % below ours. That
  unexplained 1.8 G matches no module exactly (the three 1×1 skip convs
  of the fusions are 1.88 G). Adding the 3×3 head from the parameter count would add
  9.66 GMACs, so the parameter and FLOP columns don't seem to come from one code state.
  Table III's 64.10 FPS (RTX 3090) was not re-measured.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .registry import register_model
from .resnet import resnet18_lite, resnet50_v1c

ENCODER_CHANNELS = (256, 512, 1024, 2048)
# ResNetV1c settings from the authors' config: output stride 32, dilated stages 3-4.
ENCODER_STRIDES = (1, 2, 2, 2)
ENCODER_DILATIONS = (1, 1, 2, 4)
SIZE_MULTIPLE = 32


def relative_position_index(side: int) -> torch.Tensor:
    """Swin relative-position index for a raster-ordered ``side``×``side`` window.

    Entry (query, key) points into a ``(2·side - 1)²`` table at the row/column offset
    ``query - key``; same values as the authors' ``relative_position_index_*`` buffers.
    """
    rows = torch.arange(side).repeat_interleave(side)
    cols = torch.arange(side).repeat(side)
    d_row = rows[:, None] - rows[None, :] + side - 1
    d_col = cols[:, None] - cols[None, :] + side - 1
    return d_row * (2 * side - 1) + d_col


def hierarchical_position(base_window: int, level: int) -> torch.Tensor:
    """For each raster token of a ``(base_window·2^level)²`` window, its hierarchical position.

    Hierarchical order (eq. 8): level-0 ancestor in raster order, then the 2×2 quadrant
    (row bit, column bit) at each finer level, coarse to fine. Groups of any level are then
    contiguous runs, which is what lets the deeper maps act through plain reshapes.
    """
    side = base_window << level
    r = torch.arange(side).view(-1, 1).expand(side, side)
    c = torch.arange(side).view(1, -1).expand(side, side)
    pos = (r >> level) * base_window + (c >> level)
    for bit in range(level - 1, -1, -1):
        pos = pos * 4 + ((r >> bit) & 1) * 2 + ((c >> bit) & 1)
    return pos.reshape(-1)


class ConvBNReLU(nn.Module):
    """Conv (no bias) + BN + ReLU; ``conv``/``bn`` names as in mmcv's ConvModule."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size,
                              padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SkipFusion(nn.Module):
    """The authors' WF: upsample ×2, concat with the 1×1-projected skip, 3×3 conv-BN-ReLU."""

    def __init__(self, skip_channels: int, channels: int):
        super().__init__()
        self.pre_conv = nn.Conv2d(skip_channels, channels, 1)
        self.post_conv = ConvBNReLU(2 * channels, channels, 3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.post_conv(torch.cat((x, self.pre_conv(skip)), dim=1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MergedAttention(nn.Module):
    """Global MSA (``level=0``) or GMSA + AMMM (``level>=1``) over windows of one level.

    The window side is ``base_window·2^level``. Attention runs inside groups: the whole
    window at level 0, 2×2 granular windows above. ``forward`` takes the masked maps of
    the coarser levels (coarse first) and returns them with this level's appended, each
    shaped ``(windows·B, heads, groups, group_size, group_size)``.
    """

    def __init__(self, dim: int, num_heads: int, base_window: int, level: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.level = level
        self.window = base_window << level
        group_side = base_window if level == 0 else 2
        self.group_size = group_side ** 2
        self.num_groups = self.window ** 2 // self.group_size

        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # Zeros like the authors' PosBias; a checkpoint overwrites it.
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * group_side - 1) ** 2, num_heads))
        # Derived from the window sizes, so rebuilt here rather than stored in checkpoints.
        self.register_buffer("relative_position_index", relative_position_index(group_side),
                             persistent=False)
        # (1 - E) of eq. 7: keeps everything but each group's diagonal.
        self.register_buffer("off_diagonal", 1.0 - torch.eye(self.group_size), persistent=False)
        if level > 0:
            position = hierarchical_position(base_window, level)
            self.register_buffer("to_raster", position, persistent=False)
            self.register_buffer("to_hierarchical", torch.argsort(position), persistent=False)

    def position_bias(self) -> torch.Tensor:
        """(heads, 1, group_size, group_size): one bias shared by every group of the level."""
        n = self.group_size
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1).unsqueeze(1)

    def forward(self, x: torch.Tensor, maps: list[torch.Tensor]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x``: (B, H, W, C) layer-normed tokens; returns (B, H, W, C) and the maps."""
        b, h, w, c = x.shape
        ws = self.window
        pad_b, pad_r = (-h) % ws, (-w) % ws
        # Zero tokens after LN, unmasked, as the authors do (see the module docstring).
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        rows, cols = (h + pad_b) // ws, (w + pad_r) // ws
        windows = x.reshape(b, rows, ws, cols, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        if self.level > 0:
            windows = windows.index_select(1, self.to_hierarchical)
        out, maps = self.attend(windows, maps)
        if self.level > 0:
            out = out.index_select(1, self.to_raster)
        out = out.reshape(b, rows, cols, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(b, rows * ws, cols * ws, c)
        return out[:, :h, :w], maps

    def attend(self, x: torch.Tensor, maps: list[torch.Tensor]
               ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x``: (windows·B, N, C) in hierarchical order."""
        bw, n, c = x.shape
        heads, d = self.num_heads, self.head_dim
        groups, size = self.num_groups, self.group_size
        q, k, v = self.qkv(x).view(bw, n, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
        q = (q * self.scale).reshape(bw, heads, groups, size, d)
        k = k.reshape(bw, heads, groups, size, d)
        attn = (q @ k.transpose(-2, -1) + self.position_bias()).softmax(dim=-1)
        if groups > 1:
            attn = attn / groups  # the authors' GMSA scaling; level 0 is a single group
        out = (attn @ v.reshape(bw, heads, groups, size, d)).reshape(bw, heads, n, d)

        for deeper in maps:  # AMMM: coarse levels first, as the authors sum them
            d_groups, d_size = deeper.shape[2], deeper.shape[3]
            coarse = d_groups * d_size  # tokens of that level in this window
            span = n // coarse  # descendants per coarse token
            v_coarse = v.reshape(bw, heads, coarse, span, d).mean(dim=3)
            ctx = deeper @ v_coarse.reshape(bw, heads, d_groups, d_size, d)
            out = out.reshape(bw, heads, coarse, span, d) + ctx.reshape(bw, heads, coarse, 1, d)
            out = out.reshape(bw, heads, n, d)

        maps = [*maps, attn * self.off_diagonal]
        out = out.transpose(1, 2).reshape(bw, n, c)
        return self.proj(out), maps


class AttentionBlock(nn.Module):
    """Pre-LN block on a (B, C, H, W) map: LN → attention → +x; LN → FFN → +x."""

    def __init__(self, dim: int, num_heads: int, base_window: int, level: int,
                 mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MergedAttention(dim, num_heads, base_window, level)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, maps: list[torch.Tensor]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        t = x.permute(0, 2, 3, 1)
        a, maps = self.attn(self.norm1(t), maps)
        t = t + a
        t = t + self.ffn(self.norm2(t))
        return t.permute(0, 3, 1, 2).contiguous(), maps


class AMMUNetDecoder(nn.Module):
    """The authors' ``AMMUNetHead`` minus its dead modules; logits at 1/4."""

    def __init__(self, encoder_channels: tuple[int, int, int, int], num_classes: int,
                 channels: int = 256, num_heads: int = 8, base_window: int = 16,
                 mlp_ratio: int = 4, dropout: float = 0.1):
        super().__init__()
        c2, c3, c4, c5 = encoder_channels
        self.pre_conv = ConvBNReLU(c5, channels, 1)
        self.b4 = AttentionBlock(channels, num_heads, base_window, 0, mlp_ratio)
        self.p3 = SkipFusion(c4, channels)
        self.b3 = AttentionBlock(channels, num_heads, base_window, 1, mlp_ratio)
        self.p2 = SkipFusion(c3, channels)
        self.b2 = AttentionBlock(channels, num_heads, base_window, 2, mlp_ratio)
        self.p1 = SkipFusion(c2, channels)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        c2, c3, c4, c5 = feats
        x, maps = self.b4(self.pre_conv(c5), [])
        x, maps = self.b3(self.p3(x, c4), maps)
        x, _ = self.b2(self.p2(x, c3), maps)
        x = self.p1(x, c2)
        return self.conv_seg(self.dropout(x))


class AMMUNet(nn.Module):
    """ResNetV1c-50 encoder + AMMUNet decoder; (B, bands, H, W) → (B, classes, H, W).

    ``backbone`` may be replaced by any module returning four maps at 1/4..1/32 with
    ``encoder_channels`` channels (tests use a tiny one); ``base_window`` is the level-0
    window side (16 in the paper; the deeper windows are 2× and 4× it).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 6, channels: int = 256,
                 num_heads: int = 8, base_window: int = 16, mlp_ratio: int = 4,
                 dropout: float = 0.1, backbone: nn.Module | None = None,
                 encoder_channels: tuple[int, int, int, int] = ENCODER_CHANNELS):
        super().__init__()
        if backbone is None:
            backbone = resnet50_v1c(in_channels=in_channels, strides=ENCODER_STRIDES,
                                    dilations=ENCODER_DILATIONS, contract_dilation=True)
        self.backbone = backbone
        self.decoder = AMMUNetDecoder(encoder_channels, num_classes, channels, num_heads,
                                      base_window, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Shape check only; skipped while tracing, where it would freeze into a constant.
        if not torch.jit.is_tracing() and (h % SIZE_MULTIPLE or w % SIZE_MULTIPLE):
            raise ValueError(f"AMMUNet needs H and W that are multiples of {SIZE_MULTIPLE}, "
                             f"got {h}x{w}; pad the tile first")
        logits = self.decoder(self.backbone(x))
        return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)


# Authors' mmseg key → ours. Rules apply in order; the first match wins.
_DROPPED_KEYS = re.compile(
    r"^(auxiliary_head\."                        # training-only FCN head on c3
    r"|decode_head\.(p0|fr)\."                   # built but never called in forward
    r"|decode_head\.p\d\.weights$"               # WF fusion weights, unused by the concat
    r"|decode_head\.pb\d\.relative_position_index_\d$)"  # rebuilt at init
)
_RENAMES = (
    (re.compile(r"^decode_head\.pb(\d)\.relative_position_bias_table$"),
     r"decoder.b\1.attn.relative_position_bias_table"),
    (re.compile(r"^decode_head\.(b\d)\.attn\.w_msa\."), r"decoder.\1.attn."),
    (re.compile(r"^decode_head\.(b\d)\.ffn\.layers\.0\.0\."), r"decoder.\1.ffn.fc1."),
    (re.compile(r"^decode_head\.(b\d)\.ffn\.layers\.1\."), r"decoder.\1.ffn.fc2."),
    (re.compile(r"^decode_head\.(p\d)\.pre_conv\.conv\."), r"decoder.\1.pre_conv."),
    (re.compile(r"^decode_head\."), "decoder."),
)


def ammunet_key_map(author_key: str) -> str | None:
    """Map a key of the authors' mmseg ``state_dict`` to ours; None for keys we drop.

    ``backbone.*`` is unchanged (mmseg ResNetV1c and our ResNet share names). Keys that
    are already ours pass through unchanged, so the map is idempotent.
    """
    if _DROPPED_KEYS.match(author_key):
        return None
    for pattern, replacement in _RENAMES:
        if pattern.match(author_key):
            return pattern.sub(replacement, author_key, count=1)
    return author_key


AMMUNET = ModelConfig(
    name="ammunet",
    description="AMMUNet: ResNet-50-V1c + global MSA / GMSA decoder with attention map merging",
    tile=512,
    # The attention is global inside a tile, so pixels near tile edges miss context on one
    # side; a quarter-tile margin is blended away.
    overlap=128,
    size_multiple=SIZE_MULTIPLE,
    min_tile=SIZE_MULTIPLE,
    receptive_radius=None,
    paper="AMMUNet (GRSL 2024)",
    source="interpretty/AMMUNet (mmseg)",
)


@register_model(AMMUNET, key_map=ammunet_key_map)
def ammunet(config: ModelConfig, **kwargs) -> AMMUNet:
    """``kwargs`` go to :class:`AMMUNet` (channels, num_heads, base_window, ...)."""
    return AMMUNet(in_channels=config.num_bands, num_classes=config.num_classes, **kwargs)


AMMUNET_LITE = AMMUNET.replace(
    name="ammunet-lite",
    description="AMMUNet-lite (demo): ResNet-18-V1c at width 32 + a 64-channel AMMUNet decoder",
    demo=True,
)


@register_model(AMMUNET_LITE, key_map=ammunet_key_map)
def ammunet_lite(config: ModelConfig, width: int = 32, **kwargs) -> AMMUNet:
    """The same decoder, narrower: 64 channels, 4 heads, 8-token level-0 windows (256 px).

    The encoder keeps the paper's strides and dilations, so only widths differ.
    """
    backbone = resnet18_lite(width, in_channels=config.num_bands, deep_stem=True, strides=ENCODER_STRIDES,
                             dilations=ENCODER_DILATIONS, contract_dilation=True)
    lite = dict(channels=64, num_heads=4, base_window=8)
    return AMMUNet(in_channels=config.num_bands, num_classes=config.num_classes, backbone=backbone,
                   encoder_channels=backbone.out_channels, **{**lite, **kwargs})
