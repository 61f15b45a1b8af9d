"""GLCANet: global-local cross-attention network (Chen Yi, Shan LianLei, arXiv 2506.19406, 2025).

Written from the paper (``shared/papers/002_*.txt``); there is no public code, so where
the paper is silent the choices below are ours and say so. GLCANet is GLNet's dual-branch
design (:mod:`.glnet`) plus the Global-Local Cross-Attention Fusion Module (GLCA-FM).

From the paper
--------------
* Global branch on the downsampled image, local branch on full-resolution patches, the
  same backbone in both: "a modified ResNet-50" with FPN (Sec. 3.1, 4.2), with GLNet's
  deep feature-map sharing of conv2..conv5 and of the FPN top-down and smoothing maps
  (Sec. 4.2), so we reuse GLNet's ResNet-50 + FPN branches (widths 256/128) and its
  local FPN that takes ``[local, global crop]`` at every layer. "Lightweight" in the paper
  is about GPU memory (1766 MB vs GLNet's 1865 MB, Table 1), not a slimmer backbone:
  the text names ResNet-50 twice, so we keep it (``encoder_layers`` shrinks it for tests).
* GLCA-FM on the *deep* feature maps (Fig. 1): self-attention refines the global
  features (Sec. 3.4), and bidirectional masked cross-attention (Sec. 3.5):
  ``Q̂_G = softmax(Q_G K_Lᵀ/√d) V_L + Q_G`` and ``Q̂_L = softmax(Q_L K_Gᵀ/√d) V_G + Q_L``,
  with ``Q = F W^Q``, ``K = F W^K``, ``V = F W^V`` learned projections.
* Branch aggregation ``f_agg``: a 3×3 conv over the concatenated high-level maps of the
  two branches (Sec. 3.6). Two auxiliary heads (local, global) and the feature-map
  regularisation (λ = 0.15) are training-only.
* Patches and global view 500×500, 50 px overlap (Sec. 4.2).

Our choices (the paper does not say)
------------------------------------
* **Where**: the GLCA-FM works on the top FPN level p5 (the 1×1 lateral of c5, 256 ch at
  1/32), before the top-down pass, so that both branches' whole pyramids see it. One
  token = one 1/32 cell. The global self-attention (same residual form,
  ``softmax(QKᵀ/√d)V + Q``) replaces the global p5 before the global top-down pass;
  it runs once per region in :meth:`GLCANet.forward_global`.
* **Mask** (:func:`footprint_mask`): a local query attends only to the global tokens of its
  patch's footprint and neighbourhood: global token (i, j), which covers cell
  [i, i+1) × [j, j+1) of the global p5 grid, is visible to a patch iff that cell overlaps
  the patch's box expanded by ``neighbourhood`` global tokens on every side (open
  intervals: a cell that only touches the expanded box is not visible). ``neighbourhood``
  is in global-token units (1/32 of the global view; 1 token = 32 view px = 262 scene px
  for a 4096-px region), default 1.0, set by ``extra={"neighbourhood": ...}`` in the
  config or the builder kwarg. Masked weights are exactly zero. Every local token of a
  patch shares its patch's mask. The mask is built from the boxes with tensor ops
  (ONNX-exportable). If no token is visible (a box outside the view) the patch attends
  to all tokens.
* **Global→local direction**: the global queries are the global tokens sampled over the
  patch's footprint at the local token grid (``crop_global``), keys/values the patch's
  local tokens. All of a patch's local tokens lie inside its footprint, so the same mask
  rule keeps every one of them: this direction needs no mask. It brings local detail into
  the global features *per patch*, which is what makes GLCANet stream without GLNet's
  two-pass l2g: we use it in place of GLNet's ``_ext`` path (not built here).
* **Aggregation**: ``Q̂_L`` replaces the local p5 before the local top-down pass. The
  global high-level map of a patch is the global ps3 (512 ch, levels p5|p4|p3|p2 of 128)
  cropped to the patch, whose p5 part is replaced by ``Q̂_G`` passed through the global
  FPN's own p5 smoothing convs (256→256→128). ``f_agg`` = 3×3 conv 1024→C over
  ``cat(local ps3, global ps3 of the patch)`` at 1/4, bilinearly resized to the patch.
* Single-head attention as in the equations (``heads`` > 1 splits d = 256 evenly);
  projections are ``nn.Linear`` with bias; no positional encoding (none is mentioned).
  The paper also motivates self-attention on *local* features for inter-patch
  consistency; with one patch per forward pass that can only be intra-patch, so we keep
  self-attention on the global features only.

Dependence on the global view: a patch's output reads global tokens only where the mask
allows, plus the crops of the global maps, whose bilinear samples (at local cell centres
inside the footprint) read only cells overlapping the footprint grown by half a cell of
that map. So with ``neighbourhood`` ≥ 0.5 a patch's logits do not depend
on the global view outside its footprint + neighbourhood at all (tested).

Modes: ``global`` = the global branch's classifier (with self-attention); ``patch`` = the
local branch alone: zeros in place of the global crops, ``Q̂_L = Q_L`` (nothing to attend
to), the local classifier; ``global-local`` as above.

Export: ``predict_patches`` traces to ONNX in every mode (no host reads of box values;
batch size and context sizes may stay dynamic); tested against onnxruntime. No trained
weights are published; the builder returns random weights.

Regions, padding and sizes: as for GLNet (see :mod:`.glnet`): boxes describe the tensor
given (rsinfer grows them to the padded size), ``size_multiple`` 4, tile 500, overlap 50,
global view 500 per 4096-px region.

Cost
----
Measured here with ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add;
convolutions and matmuls, attention included; not BN, resizes, softmax or
``grid_sample``), batch 1, 6 classes, defaults (ResNet-50, 256/128, one head):

* parameters: **66,008,978** (264.0 MB float32): two ResNet-50 encoders 23,508,032 each;
  global FPN 4,552,198; local FPN 13,793,286; three attention blocks 197,376 each;
  ``f_agg`` 55,302. Global branch (encoder, FPN, self-attention) 28,257,606; local branch
  (encoder, FPN, both cross-attentions, ``f_agg``) 37,751,372.
* global branch, one 500² view (``forward_global``, 16×16 tokens): **83.80 GFLOPs**.
* local branch, one 500² patch (global-local mode): **273.58 GFLOPs**, of which the two
  cross-attentions (16×16 local tokens) are 0.34; patch mode 271.96. The local FPN's
  fold-2 3×3 convs at 1/4 dominate, as in GLNet.

The paper reports no parameter or FLOP counts, only 1766 MB of GPU memory at batch 1
(Table 1).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .config import GlobalLocalSpec, ModelConfig
from .global_local import GlobalLocalModel, crop_global
from .glnet import (
    LEVELS, RESNET50_LAYERS, GlobalFPN, LocalFPN, conv3x3, context_levels, crop_levels, level_channels,
    resize, zero_crops,
)
from .registry import register_model
from .resnet import ResNet


def footprint_mask(boxes: torch.Tensor, grid: Sequence[int], neighbourhood: float) -> torch.Tensor:
    """(B, gh·gw) bool: global tokens each box may attend to (see the module docstring).

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
    """GLNet's branches (g2l sharing) + GLCA-FM at p5 + ``f_agg``; see the module docstring."""

    def __init__(self, in_channels: int = 3, num_classes: int = 6, global_size: int = 500,
                 neighbourhood: float = 1.0, heads: int = 1,
                 encoder_layers: Sequence[int] = RESNET50_LAYERS, fpn_width: int = 256,
                 smooth_width: int = 128, basic_blocks: bool = False, encoder_width: int = 64):
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
        self.global_fpn = GlobalFPN(num_classes, fpn_width, smooth_width, l2g=False,
                                    encoder_channels=top_down_channels)
        self.local_fpn = LocalFPN(num_classes, fpn_width, smooth_width, encoder_channels=top_down_channels)
        self.global_attention = TokenAttention(fpn_width, heads)   # self-attention, global p5
        self.local_from_global = TokenAttention(fpn_width, heads)  # Q_L; K_G, V_G -> Q̂_L
        self.global_from_local = TokenAttention(fpn_width, heads)  # Q_G; K_L, V_L -> Q̂_G
        self.aggregate = conv3x3(8 * smooth_width, num_classes)    # f_agg
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

    def attention_weights(self, patches: torch.Tensor, context: dict[str, torch.Tensor],
                          boxes: torch.Tensor) -> torch.Tensor:
        """Local→global attention weights (B, heads, local tokens, global tokens), for inspection."""
        feats = self.local_encoder(patches)[::-1]
        laterals = self.local_fpn.laterals(feats, crop_levels(context, boxes, feats, self.channels))
        return self.cross_attention(laterals[0], context["tokens"], boxes)[2]

    # -- local -------------------------------------------------------------------------------
    def forward_local(self, patches: torch.Tensor, context: dict[str, torch.Tensor],
                      boxes: torch.Tensor) -> torch.Tensor:
        feats = self.local_encoder(patches)[::-1]
        crops = crop_levels(context, boxes, feats, self.channels)
        laterals = self.local_fpn.laterals(feats, crops)
        laterals[0], q_global, _ = self.cross_attention(laterals[0], context["tokens"], boxes)
        ps3 = self.local_fpn.pyramid(laterals, crops)[3]
        size = tuple(ps3.shape[-2:])
        fpn = self.global_fpn
        global_p5 = resize(fpn.smooth_b[0](fpn.smooth_a[0](q_global)), size)
        rest = crop_global(context["ps3"][:, self.smooth_width:], boxes, size)  # p4, p3, p2 parts
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
    size_multiple=4,  # see glnet's docstring ("Regions, padding, sizes")
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
    return glcanet(config, **{**lite, **kwargs})
