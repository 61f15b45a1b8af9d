"""AMMUNet: multi-scale attention map merging (Yang & Zheng, IEEE GRSL 2024, arXiv 2404.13408).

Encoder: mmseg-layout ResNetV1c-50 (deep 3×3 stem; dilations (1, 1, 2, 4) but strides
kept, so c2..c5 are 256/512/1024/2048 ch at 1/4..1/32). Decoder, 256 ch and 8 heads:
``pre_conv`` on c5 → ``b4`` global MSA at 1/32 → ``p3`` fuse c4 → ``b3`` GMSA at 1/16 →
``p2`` fuse c3 → ``b2`` GMSA at 1/8 → ``p1`` fuse c2 → 1×1 ``conv_seg`` at 1/4 → bilinear to
the input. A fusion concatenates the ×2-upsampled map with the 1×1-projected skip, then
3×3 conv-BN-ReLU; a block is pre-LN attention + FFN without window shift.

Attention windows are 16 tokens a side at 1/32 and double per level (32, 64), so a level-0
token owns a 2×2 group at 1/16 and a 4×4 block at 1/8. Level 0 attends over its whole
window; deeper levels attend only inside 2×2 groups (softmax divided by the number of
groups) and add each coarser level's map, diagonal masked, applied to V averaged over the
coarser token's descendants (AMMM). :class:`MergedAttention` puts tokens in "hierarchical
order" so that every level's groups are contiguous runs.

Input (B, bands, H, W), H and W multiples of 32 (the pipeline pads); output logits
(B, classes, H, W). At a 512 tile the attention is global over the tile; larger tiles
split into 512-px windows, and sides off a multiple of 512 are padded to whole windows
with unmasked zero tokens, as in the authors' code. The authors' mmseg checkpoint loads through :func:`ammunet_key_map`.
30,430,718 parameters, 108.63 GFLOPs at 512² (FlopCounterMode).

Provenance and differences from the authors' code: docs/models/ammunet.md
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
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

    relative_position_index: torch.Tensor
    off_diagonal: torch.Tensor
    to_raster: torch.Tensor
    to_hierarchical: torch.Tensor

    def __init__(self, dim: int, num_heads: int, base_window: int, level: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.level = level
        self.window = base_window << level
        group_side = base_window if level == 0 else 2
        self.group_size = group_side**2
        self.num_groups = self.window**2 // self.group_size

        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # Zeros like the authors' PosBias; a checkpoint overwrites it.
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * group_side - 1) ** 2, num_heads))
        # Derived from the window sizes, so rebuilt here rather than stored in checkpoints.
        self.register_buffer("relative_position_index", relative_position_index(group_side), persistent=False)
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

    def forward(self, x: torch.Tensor, maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x``: (B, H, W, C) layer-normed tokens; returns (B, H, W, C) and the maps."""
        b, h, w, c = x.shape
        ws = self.window
        pad_b, pad_r = (-h) % ws, (-w) % ws
        # Zero tokens after LN, unmasked, as the authors do (docs/models/ammunet.md, "Tile size").
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

    def attend(self, x: torch.Tensor, maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
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

    def __init__(self, dim: int, num_heads: int, base_window: int, level: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MergedAttention(dim, num_heads, base_window, level)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        t = x.permute(0, 2, 3, 1)
        a, maps = self.attn(self.norm1(t), maps)
        t = t + a
        t = t + self.ffn(self.norm2(t))
        return t.permute(0, 3, 1, 2).contiguous(), maps


class AMMUNetDecoder(nn.Module):
    """The authors' ``AMMUNetHead`` minus its dead modules; logits at 1/4."""

    def __init__(
        self,
        encoder_channels: Sequence[int],
        num_classes: int,
        channels: int = 256,
        num_heads: int = 8,
        base_window: int = 16,
        mlp_ratio: int = 4,
        dropout: float = 0.1,
    ):
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

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 6,
        channels: int = 256,
        num_heads: int = 8,
        base_window: int = 16,
        mlp_ratio: int = 4,
        dropout: float = 0.1,
        backbone: nn.Module | None = None,
        encoder_channels: Sequence[int] = ENCODER_CHANNELS,
    ):
        super().__init__()
        if backbone is None:
            backbone = resnet50_v1c(
                in_channels=in_channels, strides=ENCODER_STRIDES, dilations=ENCODER_DILATIONS, contract_dilation=True
            )
        self.backbone = backbone
        self.decoder = AMMUNetDecoder(
            encoder_channels, num_classes, channels, num_heads, base_window, mlp_ratio, dropout
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Shape check only; skipped while tracing, where it would freeze into a constant.
        if not torch.jit.is_tracing() and (h % SIZE_MULTIPLE or w % SIZE_MULTIPLE):
            raise ValueError(
                f"AMMUNet needs H and W that are multiples of {SIZE_MULTIPLE}, got {h}x{w}; pad the tile first"
            )
        logits = self.decoder(self.backbone(x))
        return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)


# Authors' mmseg key → ours. Rules apply in order; the first match wins.
_DROPPED_KEYS = re.compile(
    r"^(auxiliary_head\."  # training-only FCN head on c3
    r"|decode_head\.(p0|fr)\."  # built but never called in forward
    r"|decode_head\.p\d\.weights$"  # WF fusion weights, unused by the concat
    r"|decode_head\.pb\d\.relative_position_index_\d$)"  # rebuilt at init
)
_RENAMES = (
    (
        re.compile(r"^decode_head\.pb(\d)\.relative_position_bias_table$"),
        r"decoder.b\1.attn.relative_position_bias_table",
    ),
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
    backbone = resnet18_lite(
        width,
        in_channels=config.num_bands,
        deep_stem=True,
        strides=ENCODER_STRIDES,
        dilations=ENCODER_DILATIONS,
        contract_dilation=True,
    )
    lite = dict(channels=64, num_heads=4, base_window=8)
    return AMMUNet(
        in_channels=config.num_bands,
        num_classes=config.num_classes,
        backbone=backbone,
        encoder_channels=backbone.out_channels,
        **{**lite, **kwargs},
    )
