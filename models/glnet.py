"""GLNet: collaborative global-local networks (Chen, Jiang, Wang, Cui, Qian, CVPR 2019).

Two ResNet-50 + FPN branches (FPN width 256, smoothing 128, no BN or activation): a global
branch on a downsampled view of the region (longest side ``global_size``), and a local
branch on full-resolution patches. Every layer of the local FPN also takes the global
maps cropped to the patch's footprint ("fold=2", :class:`LocalFPN`). The global FPN's
``_ext`` layers (local→global, "l2g") take local maps back, and ``ensemble_conv`` (3×3,
1024→C) classifies ``cat(local ps3, global ps3 over the patch)`` at 1/4, resized to the
patch.

Two inference procedures (``procedure``; docs/models/glnet.md, "Inference"):

* ``authors`` (the default, as their ``helper.py`` evaluates): crops are the whole cells of
  each global map under the patch (:func:`crop_cells`), resized; l2g runs once per region
  after a first pass over *every* patch of the region (:meth:`GLNet.fuse_region`, which the
  pipeline drives), and each patch's ensemble crops its ps3; logits are nearest-upsampled.
* ``streaming``: crops sample the exact footprint (:func:`~.global_local.crop_global`), and
  l2g runs per patch on its footprint window of the global grid (:meth:`GLNet._l2g_global`),
  so every patch streams on its own with no first pass; logits are bilinearly upsampled.

``l2g=False`` is the authors' mode-2 (G→L) ensemble (streams exactly in either procedure;
exports to ONNX with ``streaming``); ``frozen_global=True`` adds the frozen global branch
of their two-checkpoint evaluation.

Inputs in [0, 1] with no mean/std (the authors' ``ToTensor``); 500-px patches and views
(the global view's size comes from the config: ``global_size``, 508 in the authors'
DeepGlobe runs), 50 px overlap, any multiple of 4. :meth:`~GLNet.forward_global` gives the context dict,
:meth:`~GLNet.forward_local` logits (B, C, p, p) (see :mod:`.global_local`). The authors'
checkpoints load through :func:`glnet_key_map`. 79,182,482 parameters.

Provenance and differences from the authors' code: docs/models/glnet.md
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import cast

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
# How GLNet runs patches (docs/models/glnet.md, "Inference"): the authors' evaluation
# (cell crops, the l2g fusion once per region over all its patches) or the streaming variant
# (grid-sampled crops, l2g per patch on its window).
PROCEDURES = ("authors", "streaming")


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

    def __init__(
        self,
        num_classes: int,
        width: int = 256,
        smooth: int = 128,
        l2g: bool = True,
        encoder_channels: Sequence[int] = ENCODER_CHANNELS,
    ):
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

    def __init__(
        self, num_classes: int, width: int = 256, smooth: int = 128, encoder_channels: Sequence[int] = ENCODER_CHANNELS
    ):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(2 * c, width, 1) for c in encoder_channels)
        self.smooth_a = nn.ModuleList(conv3x3(2 * width, width) for _ in encoder_channels)
        self.smooth_b = nn.ModuleList(conv3x3(2 * width, smooth) for _ in encoder_channels)
        self.fuse = conv3x3(8 * smooth, 4 * smooth)
        self.classify = conv3x3(4 * smooth, num_classes)
        init_fpn(self)

    def laterals(self, feats: list[torch.Tensor], crops: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
        return [conv(torch.cat((f, g[0]), 1)) for conv, f, g in zip(self.lateral, feats, crops)]

    def levels(self, laterals: list[torch.Tensor], crops: Sequence[Sequence[torch.Tensor]]):
        """``(ps0, ps1, ps2)`` of the local branch (what the l2g fusion reads)."""
        ps0 = top_down(laterals)
        ps1 = [conv(torch.cat((p, g[1]), 1)) for conv, p, g in zip(self.smooth_a, ps0, crops)]
        ps2 = [conv(torch.cat((p, g[2]), 1)) for conv, p, g in zip(self.smooth_b, ps1, crops)]
        return ps0, ps1, ps2

    def pyramid(self, laterals: list[torch.Tensor], crops: Sequence[Sequence[torch.Tensor]]):
        """``(ps0, ps1, ps2, ps3)`` of the local branch."""
        ps0, ps1, ps2 = self.levels(laterals, crops)
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


def crop_levels(
    context: dict[str, torch.Tensor], boxes: torch.Tensor, feats: list[torch.Tensor], channels
) -> list[list[torch.Tensor]]:
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
        raise RuntimeError(
            "GLNet: the windowed l2g pass sizes its windows from the box values, which a traced "
            "(ONNX) graph would freeze; export GLNet with l2g=False (mode-2 ensemble) instead"
        )
    if boxes.device.type == "meta":
        spans = [(1.0, 1.0)] * boxes.shape[0]
    else:
        spans = (boxes[:, 2:] - boxes[:, :2]).tolist()
    return [tuple((max(1, round(bh * h)), max(1, round(bw * w))) for h, w in grids) for bh, bw in spans]


def _host_boxes(boxes: torch.Tensor, what: str) -> list[list[float]]:
    """Box values on the host (the authors' crops and fusion are sized from them)."""
    if torch.jit.is_tracing():
        raise RuntimeError(
            f"GLNet: {what} sizes its crops from the box values, which a traced (ONNX) graph would "
            "freeze; run it with the torch backend, or export GLNet with procedure='streaming' and l2g=False"
        )
    if boxes.device.type == "meta":  # complexity counting: the whole view, as in whole-image forward
        return [[0.0, 0.0, 1.0, 1.0]] * boxes.shape[0]
    return boxes.double().tolist()


def cell_span(start: float, side: float, cells: int) -> tuple[int, int]:
    """The authors' ``_crop_global`` on one axis: first cell ``round(start·cells)``, and
    ``round(side·cells)`` cells (at least 1), in a grid of ``cells``."""
    return round(start * cells), max(1, round(side * cells))


def _cells(features: torch.Tensor, first: int, count: int, dim: int) -> torch.Tensor:
    """``count`` cells of ``features`` along ``dim`` from ``first``; past the grid's edge the
    edge cell repeats (the authors' slice, which would come back short there)."""
    n = features.shape[dim]
    if 0 <= first and first + count <= n:
        return features.narrow(dim, first, count)
    index = torch.arange(first, first + count, device=features.device).clamp(0, n - 1)
    return features.index_select(dim, index)


def crop_cells(features: torch.Tensor, boxes: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The authors' crop: per box, the whole cells of ``features`` (1 or B, C, h, w) under its
    footprint (:func:`cell_span` per axis), bilinearly resized to ``size``."""
    h, w = features.shape[-2:]
    out = []
    for i, (y0, x0, y1, x1) in enumerate(_host_boxes(boxes, "the authors' crop")):
        f = features[i : i + 1] if features.shape[0] == boxes.shape[0] else features[:1]
        top, rows = cell_span(y0, y1 - y0, h)
        left, cols = cell_span(x0, x1 - x0, w)
        out.append(resize(_cells(_cells(f, top, rows, 2), left, cols, 3), size))
    return torch.cat(out)


def crop_levels_cells(
    context: dict[str, torch.Tensor], boxes: torch.Tensor, feats: list[torch.Tensor], channels
) -> list[list[torch.Tensor]]:
    """:func:`crop_levels` with the authors' crops (:func:`crop_cells`)."""
    out = []
    for n, f, chans in zip(LEVELS, feats, channels):
        stack = crop_cells(context[f"level{n}"], boxes, tuple(f.shape[-2:]))
        out.append(list(torch.split(stack, list(chans), dim=1)))
    return out


def coverage(start: float, stop: float, pixels: int, cells: int, like: torch.Tensor) -> torch.Tensor:
    """(cells,): the 0/1 indicator of scene pixels ``[round(start·pixels), round(stop·pixels))``
    on one axis, bilinearly resized to ``cells`` (the authors' count template, one patch, one axis)."""
    a, b = max(0, round(start * pixels)), min(pixels, round(stop * pixels))
    line = like.new_zeros(1, 1, pixels, 1)
    line[:, :, a:b] = 1
    return resize(line, (cells, 1)).view(cells)


def upsample_logits(logits: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    if mode == "nearest":
        return F.interpolate(logits, size=tuple(size), mode="nearest")
    return resize(logits, size)


# --- the model -------------------------------------------------------------------------------


class GLNet(GlobalLocalModel):
    """GLNet; ``procedure`` ``authors`` (their evaluation) or ``streaming`` (docs/models/glnet.md, "Inference").

    ``l2g=False``: the authors' mode-2 (G→L) ensemble. ``frozen_global=True``: a separate
    global branch for the context (authors' mode-3 evaluation with two checkpoints).
    ``encoder_layers``, ``fpn_width`` and ``smooth_width`` shrink the network for tests;
    the defaults are the authors'.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 6,
        global_size: int = 500,
        l2g: bool = True,
        frozen_global: bool = False,
        encoder_layers: Sequence[int] = RESNET50_LAYERS,
        fpn_width: int = 256,
        smooth_width: int = 128,
        upsample: str | None = None,
        basic_blocks: bool = False,
        encoder_width: int = 64,
        procedure: str = "authors",
    ):
        super().__init__()
        if procedure not in PROCEDURES:
            raise ValueError(f"GLNet: procedure must be one of {', '.join(PROCEDURES)}")
        upsample = upsample or ("nearest" if procedure == "authors" else "bilinear")
        if upsample not in ("bilinear", "nearest"):
            raise ValueError("GLNet: upsample must be 'bilinear' or 'nearest'")
        self.procedure = procedure
        self.global_size = global_size
        self.l2g = l2g
        self.frozen_global = frozen_global
        self.upsample = upsample
        self.global_encoder = ResNet(encoder_layers, in_channels, basic=basic_blocks, width=encoder_width)
        self.local_encoder = ResNet(encoder_layers, in_channels, basic=basic_blocks, width=encoder_width)
        top_down = self.global_encoder.out_channels[::-1]
        self.channels = level_channels(fpn_width, smooth_width, top_down)
        # The _ext layers are always built: every one of the authors' checkpoints has them.
        self.global_fpn = GlobalFPN(num_classes, fpn_width, smooth_width, l2g=True, encoder_channels=top_down)
        self.local_fpn = LocalFPN(num_classes, fpn_width, smooth_width, encoder_channels=top_down)
        self.ensemble_conv = conv3x3(8 * smooth_width, num_classes)
        nn.init.normal_(self.ensemble_conv.weight, mean=0.0, std=0.01)
        if frozen_global:
            self.frozen_encoder = ResNet(encoder_layers, in_channels, basic=basic_blocks, width=encoder_width)
            self.frozen_fpn = GlobalFPN(num_classes, fpn_width, smooth_width, l2g=False, encoder_channels=top_down)

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
    def _crops(self, feats, context, boxes):
        if context is None:
            return zero_crops(feats, self.channels)
        crop = crop_levels_cells if self.procedure == "authors" else crop_levels
        return crop(context, boxes, feats, self.channels)

    def _crop(self, features: torch.Tensor, boxes: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return (crop_cells if self.procedure == "authors" else crop_global)(features, boxes, size)

    def local_features(self, patches, context, boxes):
        """Local encoder features and local FPN maps ``(feats, ps0, ps1, ps2, ps3)`` (top-down lists)."""
        feats = self.local_encoder(patches)[::-1]
        return (feats, *self.local_fpn(feats, self._crops(feats, context, boxes)))

    # -- the authors' l2g: one fusion per region over all its patches -----------------------
    def needs_region_pass(self, context: dict[str, torch.Tensor] | None) -> bool:
        return (
            self.procedure == "authors"
            and self.l2g
            and self.mode == "global-local"
            and context is not None
            and "l2g_ps3" not in context
        )

    def fuse_region(
        self,
        context: dict[str, torch.Tensor],
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        size: Sequence[int],
    ) -> None:
        """Pass 1 of the authors' mode-3 evaluation, over every patch of a region.

        Each patch's local c, ps0, ps1, ps2 (per level, stacked) are resized onto its cells of
        the global grid (:func:`cell_span`) and summed; the sums are divided by the count of
        patches over each scene pixel, bilinearly resized to the grid (the authors'
        template). The ``_ext`` path of the global FPN then runs once on the whole grid;
        its ps3 goes into ``context["l2g_ps3"]``, which every patch's ensemble crops in pass 2.
        """
        maps = self._l2g_maps(context)
        grids = [tuple(m.shape[-2:]) for m in maps]
        like = maps[0]
        merged = [like.new_zeros(1, sum(ch), *g) for ch, g in zip(self.channels, grids)]
        counts = [like.new_zeros(g) for g in grids]
        for patches, boxes in batches:
            feats = self.local_encoder(patches)[::-1]
            crops = self._crops(feats, context, boxes)
            ps0, ps1, ps2 = self.local_fpn.levels(self.local_fpn.laterals(feats, crops), crops)
            stacks = [torch.cat(level, 1) for level in zip(feats, ps0, ps1, ps2)]
            for i, (y0, x0, y1, x1) in enumerate(_host_boxes(boxes, "the authors' l2g fusion")):
                for k, (gh, gw) in enumerate(grids):
                    top, rows = cell_span(y0, y1 - y0, gh)
                    left, cols = cell_span(x0, x1 - x0, gw)
                    local = resize(stacks[k][i : i + 1], (rows, cols))
                    # cells past the grid's edge (a patch padded beyond the region) are dropped
                    merged[k][:, :, top : top + rows, left : left + cols] += local[:, :, : gh - top, : gw - left]
                    ry = coverage(y0, y1, size[0], gh, like)
                    rx = coverage(x0, x1, size[1], gw, like)
                    counts[k] += ry[:, None] * rx[None, :]
        ext: list[list[torch.Tensor]] = [[], [], [], []]
        for m, c, ch in zip(merged, counts, self.channels):
            fused = torch.where(c > 0, m / c.clamp_min(1e-12), m.new_zeros(()))  # no patch: 0, not 0/0
            for lst, part in zip(ext, torch.split(fused, list(ch), dim=1)):
                lst.append(part)
        context["l2g_ps3"] = self.global_fpn.forward_l2g(maps, ext)

    def _l2g_maps(self, context: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        if self.frozen_global:
            return [context[f"l2g_c{n}"] for n in LEVELS]
        return [context[f"level{n}"][:, : c[0]] for n, c in zip(LEVELS, self.channels)]

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

    def forward_local(
        self, patches: torch.Tensor, context: dict[str, torch.Tensor], boxes: torch.Tensor
    ) -> torch.Tensor:
        local = self.local_features(patches, context, boxes)
        ps3 = local[-1]
        if not self.l2g:
            glob = self._crop(context["ps3"], boxes, tuple(ps3.shape[-2:]))
        elif self.procedure == "streaming":
            glob = self._l2g_global(context, boxes, local)
        elif "l2g_ps3" in context:
            glob = crop_cells(context["l2g_ps3"], boxes, tuple(ps3.shape[-2:]))
        else:
            raise RuntimeError(
                "GLNet (authors' procedure): the region's patches must go through fuse_region first "
                "(the pipeline's torch backend does this; this procedure does not export to ONNX: "
                "use procedure='streaming' with l2g=False for that)"
            )
        logits = self.ensemble_conv(torch.cat((ps3, glob), 1))
        return upsample_logits(logits, patches.shape[-2:], self.upsample)

    def forward_patch(self, patches: torch.Tensor) -> torch.Tensor:
        ps3 = self.local_features(patches, None, None)[-1]
        return upsample_logits(self.local_fpn.classify(ps3), patches.shape[-2:], self.upsample)


# --- authors' checkpoint keys -> ours ----------------------------------------------------------

_DP_PREFIX = re.compile(r"^module\.")
OUR_PREFIXES = (
    "global_encoder.",
    "local_encoder.",
    "global_fpn.",
    "local_fpn.",
    "ensemble_conv.",
    "frozen_encoder.",
    "frozen_fpn.",
)
_FPN_KEY = re.compile(
    r"^(fpn_global|fpn_local)\.(toplayer|latlayer[123]|smooth[1-4]_[12]|smooth|classify)"
    r"(_ext)?\.(weight|bias)$"
)


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
    level, stage = name[len("smooth") :].split("_")  # smooth<level>_<1|2>
    return f"{pre}smooth_{'a' if stage == '1' else 'b'}.{int(level) - 1}"


def glnet_key_map(author_key: str) -> str:
    """Map one key of the authors' ``fpn`` state_dict (``module.`` prefix optional) to ours.

    Keys that are already ours map to themselves; unknown keys raise KeyError.
    """
    if author_key.startswith(OUR_PREFIXES):
        return author_key
    key = _DP_PREFIX.sub("", author_key)
    for src, dst in (
        ("resnet_global.", "global_encoder."),
        ("resnet_local.", "local_encoder."),
        ("ensemble_conv.", "ensemble_conv."),
    ):
        if key.startswith(src):
            return dst + key[len(src) :]
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


def merge_glnet_checkpoints(
    l2g_state: dict[str, torch.Tensor], global_state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Our state dict for ``GLNet(frozen_global=True)`` from the authors' two evaluation files.

    ``l2g_state``: ``fpn_deepglobe_local2global.pth`` (everything but the frozen branch);
    ``global_state``: ``fpn_deepglobe_global.pth``, whose ``resnet_global`` and
    non-``_ext`` ``fpn_global`` layers become ``frozen_encoder`` / ``frozen_fpn``.
    """
    out = convert_glnet_state_dict(l2g_state)
    for key, value in global_state.items():
        ours = glnet_key_map(key)
        if ours.startswith("global_encoder."):
            out["frozen_encoder." + ours[len("global_encoder.") :]] = value
        elif ours.startswith("global_fpn.") and not ours.startswith("global_fpn.l2g_"):
            out["frozen_fpn." + ours[len("global_fpn.") :]] = value
    return out


# --- registry ----------------------------------------------------------------------------------

GLNET = ModelConfig(
    name="glnet",
    description="GLNet: global (downsampled view) + local (patch) ResNet-50 FPN branches, l2g once per region",
    tile=500,  # GLCANet's 500 px; the authors' DeepGlobe runs used 508
    overlap=50,
    in_bands=("red", "green", "blue"),
    mean=(0.0, 0.0, 0.0),  # ToTensor only: [0, 1], no mean/std
    std=(1.0, 1.0, 1.0),
    input_range=1.0,
    size_multiple=4,  # see docs/models/glnet.md ("Regions, padding, sizes")
    min_tile=64,
    receptive_radius=None,  # global context: unbounded
    paper="GLNet (CVPR 2019)",
    source="VITA-Group/GLNet (MIT)",
    global_local=GlobalLocalSpec(global_size=500, region=4096, procedure="authors"),
)


@register_model(GLNET, key_map=glnet_key_map)
def glnet(config: ModelConfig, **kwargs) -> GLNet:
    """``kwargs`` go to :class:`GLNet` (``global_size``, ``procedure``, ``l2g``, ``frozen_global``, widths...);
    ``global_size`` and ``procedure`` default to the config's."""
    spec = config.global_local or GlobalLocalSpec()
    kwargs.setdefault("global_size", spec.global_size)
    kwargs.setdefault("procedure", spec.procedure or "authors")
    return GLNet(in_channels=config.num_bands, num_classes=config.num_classes, **kwargs)


GLNET_LITE = GLNET.replace(
    name="glnet-lite",
    description="GLNet-lite (demo): two ResNet-18s at width 32, 64/32-channel FPNs",
    # 512 px like glcanet-lite: a multiple of the encoder's stride 32 keeps the FPN aligned.
    tile=512,
    overlap=64,
    demo=True,
)


@register_model(GLNET_LITE, key_map=glnet_key_map)
def glnet_lite(config: ModelConfig, **kwargs) -> GLNet:
    lite = dict(encoder_layers=(2, 2, 2, 2), basic_blocks=True, encoder_width=32, fpn_width=64, smooth_width=32)
    return cast(GLNet, glnet(config, **{**lite, **kwargs}))
