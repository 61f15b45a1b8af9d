"""GLCANet: global-local cross-attention network (Chen Yi, Shan LianLei, arXiv 2506.19406, 2025).

GLNet's dual-branch design (:mod:`.glnet`: two ResNet-50 + FPN branches, the local FPN
taking the global crops at every layer) plus the Global-Local Cross-Attention Fusion
Module (GLCA-FM), which we put at the top FPN level p5 (256 ch at 1/32, one token a cell):

* the global p5 is refined by self-attention, ``softmax(QKᵀ/√d)V + Q``, once per region
  (:meth:`GLCANet.forward_global`);
* per patch, the local p5 tokens attend to the global tokens of the patch's footprint
  grown by ``neighbourhood`` tokens (:func:`footprint_mask`); the result ``Q̂_L`` replaces
  the local p5. The global tokens over the footprint attend to the patch's local tokens,
  giving ``Q̂_G``; this replaces GLNet's two-pass l2g, so every patch streams on its own;
* ``f_agg``, a 3×3 conv 1024→C over ``cat(local ps3, global ps3 of the patch, its p5 part
  from Q̂_G)`` at 1/4, gives the logits, resized to the patch.

There is no public code; where the paper is silent (where the GLCA-FM sits, the mask, the
global→local queries, heads, no positional encoding) the choices are ours. Inputs and
sizes as GLNet's: [0, 1], 500-px patches and views, multiples of 4. No trained weights are
published. 66,008,978 parameters.

Provenance, our choices and costs: docs/models/glcanet.md
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn as nn

from .config import GlobalLocalSpec, ModelConfig
from .glnet import (
    RESNET50_LAYERS,
    GlobalFPN,
    LocalFPN,
    context_levels,
    conv3x3,
    crop_levels,
    level_channels,
    resize,
    zero_crops,
)
from .global_local import GlobalLocalModel, crop_global
from .registry import register_model
from .resnet import ResNet


def footprint_mask(boxes: torch.Tensor, grid: Sequence[int], neighbourhood: float) -> torch.Tensor:
    """(B, gh·gw) bool: global tokens each box may attend to (docs/models/glcanet.md, "Mask").

    Token (i, j) covers [i, i+1) × [j, j+1) in token units; it is visible iff it overlaps
    the box scaled to the grid and grown by ``neighbourhood`` tokens on each side.
    """
    gh, gw = grid[0], grid[1]  # ints, or traced sizes under ONNX export
    y0, x0, y1, x1 = boxes.unbind(1)
    iy = torch.arange(gh, device=boxes.device, dtype=boxes.dtype)
    ix = torch.arange(gw, device=boxes.device, dtype=boxes.dtype)
    rows = (iy[None] + 1 > y0[:, None] * gh - neighbourhood) & (iy[None] < y1[:, None] * gh + neighbourhood)
    cols = (ix[None] + 1 > x0[:, None] * gw - neighbourhood) & (ix[None] < x1[:, None] * gw + neighbourhood)
    mask = (rows[:, :, None] & cols[:, None, :]).flatten(1)
    # a box that sees nothing (outside the view) attends to everything rather than to NaN
    empty = mask.to(torch.int32).sum(1, keepdim=True) == 0
    return mask | empty


class TokenAttention(nn.Module):
    """``softmax(Q Kᵀ/√d_k + mask) V + Q`` with ``Q = x_q W^Q``, ``K = x_kv W^K``, ``V = x_kv W^V``.

    ``x_q`` (B, Nq, d), ``x_kv`` (B or 1, Nk, d), ``mask`` (B, Nk) bool or None.
    Returns the output (B, Nq, d) and the weights (B, heads, Nq, Nk).
    """

    def __init__(self, dim: int, heads: int = 1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"TokenAttention: {heads} heads do not divide {dim} channels")
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x_q: torch.Tensor, x_kv: torch.Tensor, mask: torch.Tensor | None = None):
        q = self.query(x_q)
        k, v = self._split(self.key(x_kv)), self._split(self.value(x_kv))
        qh = self._split(q)
        scores = qh @ k.transpose(-1, -2) * (qh.shape[-1] ** -0.5)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        weights = scores.softmax(-1)
        out = (weights @ v).transpose(1, 2).reshape(q.shape)
        return out + q, weights


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, d, h, w) → (B, h·w, d), row-major."""
    return x.flatten(2).transpose(1, 2)


def to_map(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, h·w, d) → the (B, d, h, w) shape of ``like``."""
    return t.transpose(1, 2).reshape(like.shape)


class GLCANet(GlobalLocalModel):
    """GLNet's branches (g2l sharing) + GLCA-FM at p5 + ``f_agg``; see docs/models/glcanet.md."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 6,
        global_size: int = 500,
        neighbourhood: float = 1.0,
        heads: int = 1,
        encoder_layers: Sequence[int] = RESNET50_LAYERS,
        fpn_width: int = 256,
        smooth_width: int = 128,
        basic_blocks: bool = False,
        encoder_width: int = 64,
    ):
        super().__init__()
        if neighbourhood < 0:
            raise ValueError("GLCANet: neighbourhood must be >= 0 (global tokens)")
        self.global_size = global_size
        self.neighbourhood = float(neighbourhood)
        self.smooth_width = smooth_width
        self.global_encoder = ResNet(encoder_layers, in_channels, basic=basic_blocks, width=encoder_width)
        self.local_encoder = ResNet(encoder_layers, in_channels, basic=basic_blocks, width=encoder_width)
        top_down_channels = self.global_encoder.out_channels[::-1]
        self.channels = level_channels(fpn_width, smooth_width, top_down_channels)
        self.global_fpn = GlobalFPN(num_classes, fpn_width, smooth_width, l2g=False, encoder_channels=top_down_channels)
        self.local_fpn = LocalFPN(num_classes, fpn_width, smooth_width, encoder_channels=top_down_channels)
        self.global_attention = TokenAttention(fpn_width, heads)  # self-attention, global p5
        self.local_from_global = TokenAttention(fpn_width, heads)  # Q_L; K_G, V_G -> Q̂_L
        self.global_from_local = TokenAttention(fpn_width, heads)  # Q_G; K_L, V_L -> Q̂_G
        self.aggregate = conv3x3(8 * smooth_width, num_classes)  # f_agg
        nn.init.normal_(self.aggregate.weight, mean=0.0, std=0.01)

    # -- global ------------------------------------------------------------------------------
    def forward_global(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.global_encoder(image)[::-1]
        laterals = self.global_fpn.laterals(feats)
        tokens = to_tokens(laterals[0])
        laterals[0] = to_map(self.global_attention(tokens, tokens)[0], laterals[0])
        ps0, ps1, ps2, ps3 = self.global_fpn.pyramid(laterals)
        context = context_levels(feats, ps0, ps1, ps2)
        context["tokens"] = laterals[0]  # the self-attended global p5: keys/values of the GLCA-FM
        context["ps3"] = ps3
        context["logits"] = self.global_fpn.classify(ps3)
        return context

    def forward_global_logits(self, context: dict[str, torch.Tensor]) -> torch.Tensor:
        return context["logits"]

    # -- GLCA-FM -----------------------------------------------------------------------------
    def cross_attention(self, local_p5: torch.Tensor, tokens: torch.Tensor, boxes: torch.Tensor):
        """``(Q̂_L, Q̂_G, weights)``: both maps at the local p5 grid; weights (B, heads, Nl, Ng) of L←G."""
        local = to_tokens(local_p5)
        mask = footprint_mask(boxes, tokens.shape[-2:], self.neighbourhood)
        q_local, weights = self.local_from_global(local, to_tokens(tokens), mask)
        global_here = to_tokens(crop_global(tokens, boxes, tuple(local_p5.shape[-2:])))
        q_global, _ = self.global_from_local(global_here, local)
        return to_map(q_local, local_p5), to_map(q_global, local_p5), weights

    def attention_weights(
        self, patches: torch.Tensor, context: dict[str, torch.Tensor], boxes: torch.Tensor
    ) -> torch.Tensor:
        """Local→global attention weights (B, heads, local tokens, global tokens), for inspection."""
        feats = self.local_encoder(patches)[::-1]
        laterals = self.local_fpn.laterals(feats, crop_levels(context, boxes, feats, self.channels))
        return self.cross_attention(laterals[0], context["tokens"], boxes)[2]

    # -- local -------------------------------------------------------------------------------
    def forward_local(
        self, patches: torch.Tensor, context: dict[str, torch.Tensor], boxes: torch.Tensor
    ) -> torch.Tensor:
        feats = self.local_encoder(patches)[::-1]
        crops = crop_levels(context, boxes, feats, self.channels)
        laterals = self.local_fpn.laterals(feats, crops)
        laterals[0], q_global, _ = self.cross_attention(laterals[0], context["tokens"], boxes)
        ps3 = self.local_fpn.pyramid(laterals, crops)[3]
        size = tuple(ps3.shape[-2:])
        fpn = self.global_fpn
        global_p5 = resize(fpn.smooth_b[0](fpn.smooth_a[0](q_global)), size)
        rest = crop_global(context["ps3"][:, self.smooth_width :], boxes, size)  # p4, p3, p2 parts
        logits = self.aggregate(torch.cat((ps3, global_p5, rest), 1))
        return resize(logits, patches.shape[-2:])

    def forward_patch(self, patches: torch.Tensor) -> torch.Tensor:
        feats = self.local_encoder(patches)[::-1]
        crops = zero_crops(feats, self.channels)
        laterals = self.local_fpn.laterals(feats, crops)
        # no global tokens to attend to: Q̂_L = Q_L
        laterals[0] = to_map(self.local_from_global.query(to_tokens(laterals[0])), laterals[0])
        ps3 = self.local_fpn.pyramid(laterals, crops)[3]
        return resize(self.local_fpn.classify(ps3), patches.shape[-2:])


# --- registry ----------------------------------------------------------------------------------

GLCANET = ModelConfig(
    name="glcanet",
    description="GLCANet: GLNet branches + global self-attention + masked global-local cross-attention",
    tile=500,  # the paper's 500 px patches
    overlap=50,
    in_bands=("red", "green", "blue"),
    mean=(0.0, 0.0, 0.0),  # GLNet's ToTensor-only input; the paper gives no normalization
    std=(1.0, 1.0, 1.0),
    input_range=1.0,
    size_multiple=4,  # see docs/models/glnet.md ("Regions, padding, sizes")
    min_tile=64,
    receptive_radius=None,
    paper="GLCANet (arXiv 2506.19406)",
    global_local=GlobalLocalSpec(global_size=500, region=4096, neighbourhood=1.0),
)


@register_model(GLCANET)
def glcanet(config: ModelConfig, **kwargs) -> GLCANet:
    """``kwargs`` go to :class:`GLCANet` (``global_size``, ``neighbourhood``, ``heads``, widths...)."""
    spec = config.global_local or GlobalLocalSpec()
    kwargs.setdefault("global_size", spec.global_size)
    kwargs.setdefault("neighbourhood", spec.neighbourhood)
    return GLCANet(in_channels=config.num_bands, num_classes=config.num_classes, **kwargs)


GLCANET_LITE = GLCANET.replace(
    name="glcanet-lite",
    description="GLCANet-lite (demo): two ResNet-18s at width 32, 64/32-channel FPNs",
    # 512 rather than the paper's 500: a side that is a multiple of the encoder's stride 32
    # keeps the FPN's top-down resizes aligned. With 500 px tiles the demo weights score
    # about 2 mIoU points below whole-image inference; with 512, the same (BENCHMARKS.md).
    tile=512,
    overlap=64,
    demo=True,
)


@register_model(GLCANET_LITE)
def glcanet_lite(config: ModelConfig, **kwargs) -> GLCANet:
    lite = dict(encoder_layers=(2, 2, 2, 2), basic_blocks=True, encoder_width=32, fpn_width=64, smooth_width=32)
    return cast(GLCANet, glcanet(config, **{**lite, **kwargs}))
