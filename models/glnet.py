"""GLNet: collaborative global-local networks (Chen, Jiang, Wang, Cui, Qian, CVPR 2019).

Written from the paper and from reading the authors' code (VITA-Group/GLNet, MIT:
``models/fpn_global_local_fmreg_ensemble.py``, ``models/resnet.py``, ``helper.py``).
No code is taken from it; the structure and numerics follow it so that the authors'
checkpoints map onto this module (:func:`glnet_key_map`).

Network (facts from the authors' code)
--------------------------------------
* Two torchvision-layout ResNet-50s (``resnet_global``, ``resnet_local``; no ``fc``),
  each giving c2..c5 (256..2048 ch at 1/4..1/32). Our :class:`~.resnet.ResNet` has the
  same layout (stride on the 3×3 conv).
* Global FPN (:class:`GlobalFPN`), no BN and no activation anywhere: 1×1 laterals to 256
  (``toplayer`` on c5, ``latlayer1..3`` on c4..c2), top-down by bilinear resize to the
  lateral's size + add (ps0); ``smooth*_1`` 3×3 256→256 per level (ps1); ``smooth*_2``
  3×3 256→128 (ps2); the four levels resized to 1/4 and concatenated, order p5, p4, p3,
  p2 = 512 ch (ps3); ``classify`` 3×3 512→C.
* The global FPN's ``*_ext`` twins (local→global, "l2g"): every layer takes
  ``[global, local]`` concatenated (channels doubled), and ps3 = ``smooth`` 3×3 over the
  eight concatenated maps (1024→512) before ``classify``.
* Local FPN (:class:`LocalFPN`, "fold=2"): every layer takes ``[local, global crop]``:
  laterals on ``[c_k, crop(c_k^g)]``, ``smooth*_1`` on ``[ps0_k, crop(ps0_k^g)]``,
  ``smooth*_2`` on ``[ps1_k, crop(ps1_k^g)]``, ps3 = ``smooth`` (1024→512) over the
  concatenation of ``[ps2_k, crop(ps2_k^g)]``, ``classify`` 3×3 512→C.
* ``ensemble_conv``: 3×3 conv 1024→C over ``cat(local ps3, global ps3 cropped and resized
  to the local ps3)``, at 1/4 of the patch; we resize it to the patch size.
* Every resize is ``F.interpolate(mode='bilinear')``; with the authors' PyTorch 0.4.1 that
  means ``align_corners=False``, which we use. Their init: every FPN conv and
  ``ensemble_conv`` weight N(0, 0.01), FPN biases 0 (we do the same, so random-weight
  logits stay small).
* Inputs: ``ToTensor`` only, i.e. RGB in [0, 1] with no mean/std (config: mean 0, std 1,
  ``input_range`` 1.0). DeepGlobe: global view 508², patches 508², ≥ 50 px overlap.

Inference: the authors' procedure and ours
-------------------------------------------
The authors' evaluation (``helper.py`` ``Evaluator.eval_test``, mode 3 "G⇔L"):

1. the *frozen mode-1 global model* (``fpn_deepglobe_global.pth``) computes c2..c5 and
   ps0..ps2 of the 508² global view once;
2. patches go through the local branch in sub-batches of 6; each takes crops of *every*
   global map over its footprint (integer slices ``top = round(y0·H)``,
   ``h = round(H·ratio)``), bilinearly resized to the local map;
3. every patch's local c2..c5 and ps0..ps2 are resized onto its footprint of the global
   grid and overlap-averaged (a count template) into a whole-image "merged" grid;
4. only when *all* patches are done, the l2g model's own global branch runs the ``_ext``
   path on the global view with the merged grids, giving ps3_g;
5. per patch: ``ensemble_conv(cat(local ps3, resize(crop(ps3_g))))``; logits are
   nearest-upsampled to the patch and summed over overlaps.

Step 4 needs every patch of the image before any patch's output exists. rsinfer streams
patches in batches and returns each batch's logits at once, so **we run the l2g pass per
patch** ("windowed l2g", :meth:`GLNet._l2g_global`): for each patch the ``_ext`` path of
the global FPN runs on the patch's footprint window of the global grid — the global maps
(c2..c5 of the global encoder) cropped to the footprint at the global grid's own
resolution (per level ``round(box side · grid side)`` cells, the authors' rounding),
the ``_ext`` inputs being *this patch's* local maps resized onto that window (the
authors' merge with one patch) — and the window's ps3 goes to the ensemble. What
differs from their evaluation:

* in overlap zones the authors average neighbouring patches' local features; we use the
  patch's own (they see the same pixels there);
* their l2g convolutions and top-down resizes read the global grid across the footprint's
  edge; ours stop at the window edge (zero padding, as at the image border). At the
  coarse levels the window is small (a 500-px patch of a 4096-px region is 2×2 cells of
  the 1/32 grid of a 500-px view; of a 2448² DeepGlobe image, 3×3), so this is a real
  approximation, mostly near patch edges, which the overlap blending then weighs down.

When the patch *is* the region (whole-image ``forward``, box (0, 0, 1, 1)), the window is
the whole global grid and the result equals the authors' two-pass procedure for one patch
(tested). The other options were worse for a streaming pipeline: a running merged grid
filled by the batches, or a merge of the current batch's patches, make a patch's logits
depend on which patches happened to be in the same or earlier batches (batch size,
reading order, cache evictions), and a running grid still lacks the patches not yet
seen. Per-patch l2g keeps memory bounded (one window per patch) and every patch's logits
independent of batching. ``l2g=False`` gives the authors' mode 2 ("G→L") evaluation,
which streams exactly: ensemble with the crop of the non-``_ext`` global ps3.

Export: the window sizes depend on the box values, so the l2g pass cannot be traced;
``torch.onnx.export`` of ``predict_patches`` raises a clear error with ``l2g=True`` (the
G→L model, ``l2g=False``, exports).

Other deviations (all small): the global view keeps the region's aspect ratio (longest
side ``global_size``; the authors squash the image to 508²); crops are sampled with :func:`~.global_local.crop_global`
at the exact footprint (bilinear at local cell centres) instead of integer slices of the
global map then resized, so they carry no sub-cell rounding offset and read real
neighbouring cells at the footprint edge instead of clamping to the slice; logits are
resized to the patch bilinearly (``upsample='nearest'`` gives the authors' nearest).

Weights: the authors' evaluation uses two global branches — the frozen mode-1 model for
the local branch's context (also during mode-3 training) and the l2g checkpoint's own
global branch for the ``_ext`` pass. Mode-3 training gives ``resnet_global`` a learning
rate (``helper.py`` ``get_optimizer``), so the l2g checkpoint's global encoder is not the
mode-1 one (its plain FPN layers are, except the shared ``classify``: they get no
gradient). One checkpoint (any of the three) loads strictly into the default model, whose
own global branch serves both roles. ``frozen_global=True`` adds a second, frozen global branch
(``frozen_encoder``, ``frozen_fpn``) for the context, as the authors do; fill it from
``fpn_deepglobe_global.pth`` with :func:`merge_glnet_checkpoints`.

Modes: ``global`` = ``classify`` on the (frozen, if any) global branch's non-``_ext``
ps3 (the authors' mode 1); ``patch`` = the local branch with zeros in place of every
global crop and its own ``classify`` (the authors have no such mode: their local FPN was
always trained with global crops, so this is a diagnostic); ``global-local`` as above.

Regions, padding, sizes
-----------------------
Footprints (``boxes``) describe the tensor the model is given. The backend pads a tile
that is off the size rule, and rsinfer's ``RegionPlan.box(tile, padded)`` grows the box by
the same amount, so all crops and windows are computed for the *padded* size and the
padded rows/columns of a patch are paired with the global view beyond the tile (border-
replicated past the view's edge, like the replicate padding of the tile). A caller
passing an unpadded box with a padded patch would stretch the crops by the padding
fraction; the model cannot tell, since it does not know the unpadded size.

The config keeps the papers' 500-px patch with 50 px overlap (our grid's stride 450, the
last patch shifted inward, so the overlap is ≥ 50 px as in the authors' rule) and a
500-px global view per ``region`` (4096 scene px, see ``rsinfer.global_context``).
``size_multiple`` is 4, not 32: the FPN resizes to each lateral's own size, so any size
works; a multiple of 4 keeps the 1/4 output grid exact (the authors' 508 = 4·127 is not a
multiple of 32 either), and a multiple of 32 with a 500-px tile would break the rule that
the tile is a multiple of ``size_multiple`` (``tests/test_models_common.py``).

Context memory: a context holds, per level, ``[c_k | ps0_k | ps1_k | ps2_k]`` (896/1152/
1664/2688 ch at 1/4..1/32 of the view) and the global logits; with ``l2g=False`` also ps3
(512 ch at 1/4). For a 500² view that is 80 MB of float32 (ps3 another 30.5 MB;
``frozen_global`` adds the l2g encoder's c2..c5, 29 MB). The pipeline caches one context
per region of a row of regions plus one.

Cost
----
Measured here with ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add;
convolutions and matmuls only, not BN, resizes or ``grid_sample``), batch 1, 6 classes:

* parameters: **79,182,482** (316.7 MB float32): two ResNet-50 encoders 23,508,032 each;
  global FPN 18,317,830 (plain path 4,552,198 + ``_ext`` layers 13,765,632); local FPN
  13,793,286; ``ensemble_conv`` 55,302. The global branch proper (encoder + plain FPN) is
  28,060,230; the local branch with its l2g layers and ensemble 51,122,252.
  ``frozen_global=True`` adds 28,060,230 (107,242,712 in all).
* global branch, one 500² view (``forward_global``): **83.64 GFLOPs** (ResNet-50 41.94,
  FPN 41.70).
* local branch, one 500² patch (``forward_local``, global-local mode): **276.12 GFLOPs**
  for the footprint of a 500-px patch in a 4096-px region (box side 0.122), 4.2 more than
  patch mode (the l2g window and the ensemble in place of the local classifier); 282.70
  for a DeepGlobe patch (box side 0.204); 501.90 when the patch is the whole view
  (full-grid l2g pass); 272.79 with ``l2g=False``; 271.92 in patch mode. The local FPN's
  fold-2 3×3 convs at 1/4 dominate (its ``smooth`` 1024→512 at 125² alone is 147.5). A
  500 tile padded to 512 would cost 287.94 (not with the registered ``size_multiple`` 4).
"""
from __future__ import annotations

import re
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GlobalLocalSpec, ModelConfig
from .global_local import GlobalLocalModel, crop_global
from .registry import register_model
from .resnet import ResNet

# Encoder outputs in top-down order (c5, c4, c3, c2) and the names of their levels.
ENCODER_CHANNELS = (2048, 1024, 512, 256)
LEVELS = ("5", "4", "3", "2")
RESNET50_LAYERS = (3, 4, 6, 3)


# --- building blocks (shared with GLCANet) ---------------------------------------------------

def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize, ``align_corners=False`` (the authors' ``F.interpolate``)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def top_down(laterals: list[torch.Tensor]) -> list[torch.Tensor]:
    """FPN top-down path: each level adds the previous one resized to its size (ps0)."""
    out = [laterals[0]]
    for lat in laterals[1:]:
        out.append(resize(out[-1], lat.shape[-2:]) + lat)
    return out


def gather(levels: list[torch.Tensor]) -> torch.Tensor:
    """Resize every level to the finest (last) and concatenate, coarsest first."""
    size = levels[-1].shape[-2:]
    return torch.cat([resize(x, size) for x in levels[:-1]] + [levels[-1]], dim=1)


def init_fpn(module: nn.Module) -> None:
    """The authors' FPN init: conv weights N(0, 0.01), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, mean=0.0, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class GlobalFPN(nn.Module):
    """The global branch's FPN; ``l2g=True`` adds the ``_ext`` (local→global) layers.

    Lists hold one conv per level, top-down (index 0 = 1/32, 3 = 1/4).
    """

    def __init__(self, num_classes: int, width: int = 256, smooth: int = 128, l2g: bool = True,
                 encoder_channels: Sequence[int] = ENCODER_CHANNELS):
        super().__init__()
        self.width, self.smooth = width, smooth
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in encoder_channels)
        self.smooth_a = nn.ModuleList(conv3x3(width, width) for _ in encoder_channels)
        self.smooth_b = nn.ModuleList(conv3x3(width, smooth) for _ in encoder_channels)
        self.classify = conv3x3(4 * smooth, num_classes)
        self.has_l2g = l2g
        if l2g:
            self.l2g_lateral = nn.ModuleList(nn.Conv2d(2 * c, width, 1) for c in encoder_channels)
            self.l2g_smooth_a = nn.ModuleList(conv3x3(2 * width, width) for _ in encoder_channels)
            self.l2g_smooth_b = nn.ModuleList(conv3x3(2 * width, smooth) for _ in encoder_channels)
            self.l2g_fuse = conv3x3(8 * smooth, 4 * smooth)
        init_fpn(self)

    def laterals(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(c) for conv, c in zip(self.lateral, feats)]

    def pyramid(self, laterals: list[torch.Tensor]):
        """``(ps0, ps1, ps2, ps3)`` from the laterals (plain path, no local input)."""
        ps0 = top_down(laterals)
        ps1 = [conv(p) for conv, p in zip(self.smooth_a, ps0)]
        ps2 = [conv(p) for conv, p in zip(self.smooth_b, ps1)]
        return ps0, ps1, ps2, gather(ps2)

    def forward_l2g(self, feats: list[torch.Tensor], ext: Sequence[list[torch.Tensor]]) -> torch.Tensor:
        """ps3 of the ``_ext`` path; ``ext`` = local (c, ps0, ps1, ps2), each per level, at ``feats``' sizes."""
        ext_c, ext_ps0, ext_ps1, ext_ps2 = ext
        ps0 = top_down([conv(torch.cat((c, e), 1)) for conv, c, e in zip(self.l2g_lateral, feats, ext_c)])
        ps1 = [conv(torch.cat((p, e), 1)) for conv, p, e in zip(self.l2g_smooth_a, ps0, ext_ps0)]
        ps2 = [conv(torch.cat((p, e), 1)) for conv, p, e in zip(self.l2g_smooth_b, ps1, ext_ps1)]
        return self.l2g_fuse(gather([torch.cat((p, e), 1) for p, e in zip(ps2, ext_ps2)]))


class LocalFPN(nn.Module):
    """The local branch's FPN: every layer takes ``[local, global crop]`` ("fold=2").

    ``crops[k]`` is ``(c, ps0, ps1, ps2)`` of the global branch at level ``k``, cropped to
    the patch at the size of the local level ``k``.
    """

    def __init__(self, num_classes: int, width: int = 256, smooth: int = 128,
                 encoder_channels: Sequence[int] = ENCODER_CHANNELS):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(2 * c, width, 1) for c in encoder_channels)
        self.smooth_a = nn.ModuleList(conv3x3(2 * width, width) for _ in encoder_channels)
        self.smooth_b = nn.ModuleList(conv3x3(2 * width, smooth) for _ in encoder_channels)
        self.fuse = conv3x3(8 * smooth, 4 * smooth)
        self.classify = conv3x3(4 * smooth, num_classes)
        init_fpn(self)

    def laterals(self, feats: list[torch.Tensor], crops: list[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
        return [conv(torch.cat((f, g[0]), 1)) for conv, f, g in zip(self.lateral, feats, crops)]

    def pyramid(self, laterals: list[torch.Tensor], crops: list[Sequence[torch.Tensor]]):
        """``(ps0, ps1, ps2, ps3)`` of the local branch."""
        ps0 = top_down(laterals)
        ps1 = [conv(torch.cat((p, g[1]), 1)) for conv, p, g in zip(self.smooth_a, ps0, crops)]
        ps2 = [conv(torch.cat((p, g[2]), 1)) for conv, p, g in zip(self.smooth_b, ps1, crops)]
        ps3 = self.fuse(gather([torch.cat((p, g[3]), 1) for p, g in zip(ps2, crops)]))
        return ps0, ps1, ps2, ps3

    def forward(self, feats, crops):
        return self.pyramid(self.laterals(feats, crops), crops)


def level_channels(width: int, smooth: int, encoder_channels: Sequence[int] = ENCODER_CHANNELS):
    """Channel split of a context level stack ``[c | ps0 | ps1 | ps2]``, per level."""
    return [(c, width, width, smooth) for c in encoder_channels]


def context_levels(feats, ps0, ps1, ps2) -> dict[str, torch.Tensor]:
    """Per level one stacked map ``level<k>`` = ``[c_k | ps0_k | ps1_k | ps2_k]`` (one crop per level)."""
    return {f"level{n}": torch.cat(maps, 1) for n, maps in zip(LEVELS, zip(feats, ps0, ps1, ps2))}


def crop_levels(context: dict[str, torch.Tensor], boxes: torch.Tensor, feats: list[torch.Tensor],
                channels) -> list[list[torch.Tensor]]:
    """Crops of every global map over each box, at the size of the local level it joins."""
    out = []
    for n, f, chans in zip(LEVELS, feats, channels):
        stack = crop_global(context[f"level{n}"], boxes, tuple(f.shape[-2:]))
        out.append(list(torch.split(stack, list(chans), dim=1)))
    return out


def zero_crops(feats: list[torch.Tensor], channels) -> list[list[torch.Tensor]]:
    """Zeros in place of the global crops (the local branch alone, ``patch`` mode)."""
    return [[f.new_zeros(f.shape[0], c, *f.shape[-2:]) for c in chans] for f, chans in zip(feats, channels)]


def footprint_cells(boxes: torch.Tensor, grids: Sequence[Sequence[int]]) -> list[tuple[tuple[int, int], ...]]:
    """Per box, per grid ``(h, w)``: the footprint's size in cells, ``round(side · grid)`` (≥ 1).

    Reads the boxes on the host, so it cannot be traced (ONNX export raises; export with
    ``l2g=False``). On the ``meta`` device (complexity counting) values do not exist; the
    footprint is then taken as the whole view, as in whole-image ``forward``.
    """
    if torch.jit.is_tracing():
        raise RuntimeError("GLNet: the windowed l2g pass sizes its windows from the box values, which a traced "
                           "(ONNX) graph would freeze; export GLNet with l2g=False (mode-2 ensemble) instead")
    if boxes.device.type == "meta":
        spans = [(1.0, 1.0)] * boxes.shape[0]
    else:
        spans = (boxes[:, 2:] - boxes[:, :2]).tolist()
    return [tuple((max(1, round(bh * h)), max(1, round(bw * w))) for h, w in grids) for bh, bw in spans]


def upsample_logits(logits: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    if mode == "nearest":
        return F.interpolate(logits, size=tuple(size), mode="nearest")
    return resize(logits, size)


# --- the model -------------------------------------------------------------------------------

class GLNet(GlobalLocalModel):
    """GLNet with the l2g (``_ext``) path run per patch; see the module docstring.

    ``l2g=False``: the authors' mode-2 (G→L) ensemble. ``frozen_global=True``: a separate
    global branch for the context (authors' mode-3 evaluation with two checkpoints).
    ``encoder_layers``, ``fpn_width`` and ``smooth_width`` shrink the network for tests;
    the defaults are the authors'.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 6, global_size: int = 500,
                 l2g: bool = True, frozen_global: bool = False,
                 encoder_layers: Sequence[int] = RESNET50_LAYERS, fpn_width: int = 256,
                 smooth_width: int = 128, upsample: str = "bilinear"):
        super().__init__()
        if upsample not in ("bilinear", "nearest"):
            raise ValueError("GLNet: upsample must be 'bilinear' or 'nearest'")
        self.global_size = global_size
        self.l2g = l2g
        self.frozen_global = frozen_global
        self.upsample = upsample
        self.channels = level_channels(fpn_width, smooth_width)
        self.global_encoder = ResNet(encoder_layers, in_channels)
        self.local_encoder = ResNet(encoder_layers, in_channels)
        # The _ext layers are always built: every one of the authors' checkpoints has them.
        self.global_fpn = GlobalFPN(num_classes, fpn_width, smooth_width, l2g=True)
        self.local_fpn = LocalFPN(num_classes, fpn_width, smooth_width)
        self.ensemble_conv = conv3x3(8 * smooth_width, num_classes)
        nn.init.normal_(self.ensemble_conv.weight, mean=0.0, std=0.01)
        if frozen_global:
            self.frozen_encoder = ResNet(encoder_layers, in_channels)
            self.frozen_fpn = GlobalFPN(num_classes, fpn_width, smooth_width, l2g=False)

    # -- global ------------------------------------------------------------------------------
    def _context_branch(self):
        if self.frozen_global:
            return self.frozen_encoder, self.frozen_fpn
        return self.global_encoder, self.global_fpn

    def forward_global(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        encoder, fpn = self._context_branch()
        feats = encoder(image)[::-1]
        ps0, ps1, ps2, ps3 = fpn.pyramid(fpn.laterals(feats))
        context = context_levels(feats, ps0, ps1, ps2)
        context["logits"] = fpn.classify(ps3)
        if not self.l2g:
            context["ps3"] = ps3
        elif self.frozen_global:  # the l2g pass reads the l2g model's own global encoder
            for n, c in zip(LEVELS, self.global_encoder(image)[::-1]):
                context[f"l2g_c{n}"] = c
        return context

    def forward_global_logits(self, context: dict[str, torch.Tensor]) -> torch.Tensor:
        return context["logits"]

    # -- local -------------------------------------------------------------------------------
    def local_features(self, patches, context, boxes):
        """Local encoder features and local FPN maps ``(feats, ps0, ps1, ps2, ps3)`` (top-down lists)."""
        feats = self.local_encoder(patches)[::-1]
        crops = (zero_crops(feats, self.channels) if context is None
                 else crop_levels(context, boxes, feats, self.channels))
        return (feats, *self.local_fpn(feats, crops))

    def _l2g_maps(self, context: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        if self.frozen_global:
            return [context[f"l2g_c{n}"] for n in LEVELS]
        return [context[f"level{n}"][:, :c[0]] for n, c in zip(LEVELS, self.channels)]

    def _l2g_global(self, context, boxes, local) -> torch.Tensor:
        """Windowed l2g: the ``_ext`` global ps3 over each patch's footprint, resized to the local ps3.

        ``local`` = ``(feats, ps0, ps1, ps2, ps3)`` of the patches. Patches are grouped by
        window size (normally one group: same-size patches have same-size footprints).
        """
        feats, ps0, ps1, ps2, ps3 = local
        maps = self._l2g_maps(context)
        windows = footprint_cells(boxes, [m.shape[-2:] for m in maps])
        groups: dict[tuple, list[int]] = {}
        for i, w in enumerate(windows):
            groups.setdefault(w, []).append(i)
        out_size = ps3.shape[-2:]
        results = []
        for sizes, idx in groups.items():
            sel = None if len(groups) == 1 else torch.tensor(idx, device=boxes.device)
            pick = (lambda t: t) if sel is None else (lambda t: t[sel])  # noqa: B023 (used in this iteration)
            b = pick(boxes)
            glob = [crop_global(m, b, s) for m, s in zip(maps, sizes)]
            ext = [[resize(pick(f), s) for f, s in zip(level, sizes)] for level in (feats, ps0, ps1, ps2)]
            results.append((idx, resize(self.global_fpn.forward_l2g(glob, ext), out_size)))
        if len(results) == 1:
            return results[0][1]
        out = ps3.new_empty(ps3.shape[0], results[0][1].shape[1], *out_size)
        for idx, r in results:
            out[torch.tensor(idx, device=out.device)] = r
        return out

    def forward_local(self, patches: torch.Tensor, context: dict[str, torch.Tensor],
                      boxes: torch.Tensor) -> torch.Tensor:
        local = self.local_features(patches, context, boxes)
        ps3 = local[-1]
        if self.l2g:
            glob = self._l2g_global(context, boxes, local)
        else:
            glob = crop_global(context["ps3"], boxes, tuple(ps3.shape[-2:]))
        logits = self.ensemble_conv(torch.cat((ps3, glob), 1))
        return upsample_logits(logits, patches.shape[-2:], self.upsample)

    def forward_patch(self, patches: torch.Tensor) -> torch.Tensor:
        ps3 = self.local_features(patches, None, None)[-1]
        return upsample_logits(self.local_fpn.classify(ps3), patches.shape[-2:], self.upsample)


# --- authors' checkpoint keys -> ours ----------------------------------------------------------

_DP_PREFIX = re.compile(r"^module\.")
OUR_PREFIXES = ("global_encoder.", "local_encoder.", "global_fpn.", "local_fpn.", "ensemble_conv.",
                "frozen_encoder.", "frozen_fpn.")
_FPN_KEY = re.compile(r"^(fpn_global|fpn_local)\.(toplayer|latlayer[123]|smooth[1-4]_[12]|smooth|classify)"
                      r"(_ext)?\.(weight|bias)$")


def _fpn_layer(branch: str, name: str, ext: bool) -> str | None:
    """Our name of one authors' FPN layer (None if that branch has no such layer)."""
    local = branch == "fpn_local"
    if name == "classify":
        return None if ext else "classify"
    if name == "smooth":  # 1024 -> 512 over the concatenated levels
        if local:
            return None if ext else "fuse"
        return None if ext else "l2g_fuse"
    if ext and local:
        return None
    pre = "l2g_" if ext else ""
    if name == "toplayer":
        return f"{pre}lateral.0"
    if name.startswith("latlayer"):
        return f"{pre}lateral.{name[-1]}"
    level, stage = name[len("smooth"):].split("_")  # smooth<level>_<1|2>
    return f"{pre}smooth_{'a' if stage == '1' else 'b'}.{int(level) - 1}"


def glnet_key_map(author_key: str) -> str | None:
    """Map one key of the authors' ``fpn`` state_dict (``module.`` prefix optional) to ours.

    Keys that are already ours map to themselves; unknown keys raise KeyError.
    """
    if author_key.startswith(OUR_PREFIXES):
        return author_key
    key = _DP_PREFIX.sub("", author_key)
    for src, dst in (("resnet_global.", "global_encoder."), ("resnet_local.", "local_encoder."),
                     ("ensemble_conv.", "ensemble_conv.")):
        if key.startswith(src):
            return dst + key[len(src):]
    m = _FPN_KEY.match(key)
    if m:
        branch, name, ext, param = m.groups()
        layer = _fpn_layer(branch, name, bool(ext))
        if layer is not None:
            ours = "global_fpn." if branch == "fpn_global" else "local_fpn."
            return f"{ours}{layer}.{param}"
    raise KeyError(f"not a GLNet checkpoint key: {author_key!r}")


def convert_glnet_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename one authors' checkpoint (any of the three) to our default layout."""
    return {glnet_key_map(k): v for k, v in state_dict.items()}


def merge_glnet_checkpoints(l2g_state: dict[str, torch.Tensor],
                            global_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict for ``GLNet(frozen_global=True)`` from the authors' two evaluation files.

    ``l2g_state``: ``fpn_deepglobe_local2global.pth`` (everything but the frozen branch);
    ``global_state``: ``fpn_deepglobe_global.pth``, whose ``resnet_global`` and
    non-``_ext`` ``fpn_global`` layers become ``frozen_encoder`` / ``frozen_fpn``.
    """
    out = convert_glnet_state_dict(l2g_state)
    for key, value in global_state.items():
        ours = glnet_key_map(key)
        if ours.startswith("global_encoder."):
            out["frozen_encoder." + ours[len("global_encoder."):]] = value
        elif ours.startswith("global_fpn.") and not ours.startswith("global_fpn.l2g_"):
            out["frozen_fpn." + ours[len("global_fpn."):]] = value
    return out


# --- registry ----------------------------------------------------------------------------------

GLNET = ModelConfig(
    name="glnet",
    description="GLNet: global (downsampled view) + local (patch) ResNet-50 FPN branches, l2g per patch",
    tile=500,  # GLCANet's 500 px; the authors' DeepGlobe runs used 508
    overlap=50,
    in_bands=("red", "green", "blue"),
    mean=(0.0, 0.0, 0.0),  # ToTensor only: [0, 1], no mean/std
    std=(1.0, 1.0, 1.0),
    input_range=1.0,
    size_multiple=4,  # see the module docstring ("Regions, padding, sizes")
    min_tile=64,
    receptive_radius=None,  # global context: unbounded
    paper="GLNet (CVPR 2019)",
    source="VITA-Group/GLNet (MIT)",
    global_local=GlobalLocalSpec(global_size=500, region=4096),
)


@register_model(GLNET, key_map=glnet_key_map)
def glnet(config: ModelConfig, **kwargs) -> GLNet:
    """``kwargs`` go to :class:`GLNet` (``global_size``, ``l2g``, ``frozen_global``, widths...)."""
    kwargs.setdefault("global_size", (config.global_local or GlobalLocalSpec()).global_size)
    return GLNet(in_channels=config.num_bands, num_classes=config.num_classes, **kwargs)
