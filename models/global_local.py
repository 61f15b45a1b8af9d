"""The interface of dual-branch global-local models (GLNet, GLCANet) and the crop they share.

A global-local model sees two inputs: a *global view* (a region of the scene, downsampled
so its longest side is ``global_size``) and full-resolution *local patches* inside that
region. The pipeline computes the global context once per region
(:meth:`GlobalLocalModel.forward_global`), then runs batches of patches with their
footprints (:meth:`GlobalLocalModel.forward_local`).

Footprints (``boxes``) are ``(y0, x0, y1, x1)`` in normalized coordinates of the global
view: 0 is the view's top/left edge and 1 its bottom/right edge (pixel edges, not pixel
centres), so a patch covering the whole region has box ``(0, 0, 1, 1)`` whatever the
region's aspect ratio.

A model may need a first pass over every patch of a region before it can predict any
(:meth:`GlobalLocalModel.needs_region_pass`, :meth:`GlobalLocalModel.fuse_region`: GLNet's
local→global fusion as its authors run it); the pipeline then reads the region's patches
twice, and memory stays bounded by one region.

``mode`` picks what runs (``--mode``): ``global`` (the global branch alone on the global
view, upsampled to the patch), ``patch`` (the local branch alone) or ``global-local``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

MODES = ("global-local", "global", "patch")


def crop_global(features: torch.Tensor, boxes: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Sample ``features`` (1 or B, C, h, w) inside each box onto a ``size`` grid.

    Output pixel (i, j) of box b is read (bilinearly) at the global position of the
    centre of local cell (i, j), so the crop lines up with a local feature map of
    ``size`` that covers the patch exactly. ONNX-exportable (GridSample).
    """
    b = boxes.shape[0]
    oh, ow = size
    y0, x0, y1, x1 = boxes.to(features.dtype).unbind(1)
    # Centres of the output cells in [0, 1] box coordinates.
    ys = (torch.arange(oh, device=features.device, dtype=features.dtype) + 0.5) / oh
    xs = (torch.arange(ow, device=features.device, dtype=features.dtype) + 0.5) / ow
    gy = y0[:, None] + (y1 - y0)[:, None] * ys[None]  # (B, oh) in [0, 1] view coordinates
    gx = x0[:, None] + (x1 - x0)[:, None] * xs[None]
    # grid_sample with align_corners=False maps -1/+1 to the outer pixel edges.
    grid = torch.stack((gx[:, None, :].expand(b, oh, ow), gy[:, :, None].expand(b, oh, ow)), dim=-1) * 2 - 1
    if features.shape[0] != b:
        features = features.expand(b, -1, -1, -1)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)


def global_view_size(height: int, width: int, global_size: int) -> tuple[int, int]:
    """The global view of a ``height`` × ``width`` region: longest side ``global_size``, aspect kept."""
    scale = global_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


class GlobalLocalModel(nn.Module):
    """Base class: subclasses implement the four ``forward_*`` methods."""

    global_size: int = 500

    def __init__(self) -> None:
        super().__init__()
        self.mode = "global-local"

    def set_mode(self, mode: str) -> GlobalLocalModel:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        return self

    # -- what subclasses provide -------------------------------------------------------------
    def forward_global(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Global context of a normalized global view (1, C, gh, gw): named feature maps."""
        raise NotImplementedError

    def forward_local(
        self, patches: torch.Tensor, context: dict[str, torch.Tensor], boxes: torch.Tensor
    ) -> torch.Tensor:
        """Logits (B, K, p, p) of patches (B, C, p, p) using the global context, in global-local mode."""
        raise NotImplementedError

    def forward_global_logits(self, context: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits (1, K, gh', gw') of the global branch alone, at its own output resolution."""
        raise NotImplementedError

    def forward_patch(self, patches: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, p, p) of the local branch alone (no global context)."""
        raise NotImplementedError

    # -- two-pass models (GLNet as its authors run it) ---------------------------------------
    def needs_region_pass(self, context: dict[str, torch.Tensor] | None) -> bool:
        """True when ``context`` must first go through :meth:`fuse_region` with every patch
        of its region before any patch of the region can be predicted (in the current mode)."""
        return False

    def fuse_region(
        self,
        context: dict[str, torch.Tensor],
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        size: Sequence[int],
    ) -> None:
        """First pass over a region: ``batches`` of ``(patches, boxes)`` covering the region
        (``size`` = its (rows, cols) in scene pixels); completes ``context`` in place."""
        raise NotImplementedError(f"{type(self).__name__} has no region pass")

    # -- shared ------------------------------------------------------------------------------
    def predict_patches(
        self, patches: torch.Tensor, context: dict[str, torch.Tensor] | None, boxes: torch.Tensor | None
    ) -> torch.Tensor:
        """Logits for patches in the current mode (what the pipeline calls)."""
        size = patches.shape[-2:]
        if self.mode == "patch":
            return self.forward_patch(patches)
        assert context is not None and boxes is not None
        if self.mode == "global":
            logits = self.forward_global_logits(context)
            # Sample the global logits over each patch's footprint at the patch's resolution.
            return crop_global(logits, boxes, tuple(size))
        return self.forward_local(patches, context, boxes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole-image inference: ``x`` is both the region and its one patch (box 0,0,1,1).

        The global view is ``x`` resized so its longest side is ``global_size``.
        """
        if x.shape[0] > 1 and self.mode != "patch":  # one global view per image
            return torch.cat([self.forward(x[i : i + 1]) for i in range(x.shape[0])])
        context = None
        boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=x.dtype, device=x.device).expand(x.shape[0], 4)
        if self.mode != "patch":
            gh, gw = global_view_size(x.shape[-2], x.shape[-1], self.global_size)
            view = F.interpolate(x, size=(gh, gw), mode="bilinear", align_corners=False, antialias=True)
            context = self.forward_global(view)
            if self.needs_region_pass(context):  # the image is its region's one patch
                self.fuse_region(context, [(x, boxes)], x.shape[-2:])
        return self.predict_patches(x, context, boxes)
