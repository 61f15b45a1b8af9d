"""LANet: Local Attention Embedding (Ding, Tang, Bruzzone, IEEE TGRS 2020).

An FCN on a torchvision-layout ResNet-50 with two branches whose score maps are summed:

* high: c5 → 1×1 ``head`` to 128 ch → PAM (patch attention: an SE-style gate on
  descriptors averaged over local patches, ``x + x·A``, pool window 4). Layer4 is not
  strided, so this branch is at 1/16 (``output_stride=32``: the paper's Potsdam setting);
* low: c2 (1/4) → 1×1 to 64 ch → PAM (window 20) → AEM: a gate computed from the
  detached high features multiplies the low features, ``X_l·A_l``, with *no residual*
  (the authors' code; the paper's Eq. 5 has one);
* one 1×1 classifier per branch; both logit maps are upsampled bilinearly
  (``align_corners=False``) to the input and added.

Input (B, bands, H, W), normalized; output logits (B, classes, H, W). The pipeline pads H
and W to multiples of 16; they must be ≥ 80 (PAM needs ceil(H/4) ≥ 20 and ceil(H/16) ≥ 4).
The patch grid spans the tile, so the receptive field is unbounded. Layer shapes and numerics follow
the authors' code, so their checkpoints load through :func:`lanet_key_map`. Registered
config: 23,793,108 parameters, 65.96 GFLOPs at 512² (FlopCounterMode).

Provenance and differences from the authors' code: docs/models/lanet.md
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .registry import register_model
from .resnet import ResNet

# The authors' BN momentum for every layer they added (authors' code).
BN_MOMENTUM = 0.95
# Every gate's bottleneck is 8 wide in the authors' code (reductions 128/16, 64/8, 128/16);
# narrower variants keep that width.
GATE_HIDDEN = 8

# Authors' Potsdam statistics (datasets/PD_random.py), 0-255 scale, band order of their stack.
POTSDAM_BANDS = ("red", "green", "blue", "nir", "dsm")
POTSDAM_MEAN = (85.8, 91.7, 84.9, 96.6, 47.0)
POTSDAM_STD = (35.8, 35.2, 36.5, 37.0, 55.0)


def _gate(cin: int, mid: int, cout: int) -> nn.Sequential:
    """SE-style bottleneck gate: 1×1 reduce → BN → ReLU → 1×1 expand → sigmoid.

    Indices 0, 1, 3 hold the weights, as in the authors' ``SA``/``SE`` sequentials.
    """
    return nn.Sequential(
        nn.Conv2d(cin, mid, 1),
        nn.BatchNorm2d(mid, momentum=BN_MOMENTUM),
        nn.ReLU(),
        nn.Conv2d(mid, cout, 1),
        nn.Sigmoid(),
    )


def _pool_matrix(n: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, n) averaging matrix of adaptive pooling: bin i spans [floor(i n / bins), ceil((i+1) n / bins))."""
    i = torch.arange(bins, device=like.device)
    start = torch.div(i * n, bins, rounding_mode="floor")
    stop = torch.div((i + 1) * n + bins - 1, bins, rounding_mode="floor")
    j = torch.arange(n, device=like.device)
    member = (j[None] >= start[:, None]) & (j[None] < stop[:, None])
    return member.to(like.dtype) / (stop - start)[:, None].to(like.dtype)


def adaptive_avg_pool2d(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` as two matrix products, equal to it bin for bin.

    ONNX has no adaptive pooling whose bins do not divide the input (a 512 tile pools
    128 → 6 here); averaging matrices export as plain MatMuls.
    """
    h, w = x.shape[-2:]
    return _pool_matrix(h, size[0], x) @ x @ _pool_matrix(w, size[1], x).t()


def _upsample(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class PatchAttention(nn.Module):
    """PAM: ``x + x * up(gate(avgpool_patches(x)))``.

    Patches are the ``adaptive_avg_pool2d`` bins of a ``(h // window, w // window)``
    grid, so a side that is not a multiple of ``window`` gives slightly larger patches.
    """

    def __init__(self, channels: int, reduction: int, window: int):
        super().__init__()
        self.window = window
        self.gate = _gate(channels, channels // reduction, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        grid = (h // self.window, w // self.window)
        if min(grid) < 1:
            raise ValueError(
                f"PatchAttention: feature map {h}x{w} is smaller than its "
                f"{self.window}-px pooling window; use a larger tile"
            )
        attn = _upsample(self.gate(adaptive_avg_pool2d(x, grid)), (h, w))
        return x + x * attn


class AttentionEmbedding(nn.Module):
    """AEM: gate low-level features with local descriptors of the high-level ones.

    No residual: the authors' code builds it with ``add_input=False`` (docs/models/lanet.md).
    """

    def __init__(self, high_channels: int, low_channels: int, reduction: int = 16, window: int = 6):
        super().__init__()
        # kernel window+1, stride 1, "same" padding; zeros count in border averages
        self.pool = nn.AvgPool2d(window + 1, stride=1, padding=window // 2)
        self.gate = _gate(high_channels, high_channels // reduction, low_channels)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        attn = self.gate(self.pool(high))
        return low * _upsample(attn, low.shape[-2:])


class LANet(nn.Module):
    """ResNet-50 FCN (output stride 16) with PAM on both branches and AEM high→low.

    ``forward`` returns the summed logits at input resolution; ``forward_branches``
    returns the two upsampled branch logits ``(high, low)`` (the authors train with an
    auxiliary loss on ``high``). ``encoder_*``, ``high`` and ``low`` narrow the network
    (``lanet-lite``); the defaults are the paper's.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 6,
        output_stride: int = 16,
        encoder_layers: tuple[int, ...] = (3, 4, 6, 3),
        basic_blocks: bool = False,
        encoder_width: int = 64,
        high: int = 128,
        low: int = 64,
    ):
        super().__init__()
        if output_stride not in (16, 32):
            raise ValueError("LANet: output_stride must be 16 (FCN_16s) or 32 (FCN_32s)")
        # layer4 stride 1 and no dilation for output stride 16 (authors' FCN_16s)
        last_stride = 1 if output_stride == 16 else 2
        self.encoder = ResNet(
            layers=encoder_layers,
            in_channels=in_channels,
            basic=basic_blocks,
            width=encoder_width,
            strides=(1, 2, 2, last_stride),
        )
        c2, _, _, c5 = self.encoder.out_channels
        self.head = nn.Sequential(
            nn.Conv2d(c5, high, 1, bias=False),
            nn.BatchNorm2d(high, momentum=BN_MOMENTUM),
            nn.ReLU(),
        )
        self.high_pam = PatchAttention(high, reduction=high // GATE_HIDDEN, window=4)
        self.low_reduce = nn.Sequential(
            nn.Conv2d(c2, low, 1),
            nn.BatchNorm2d(low, momentum=BN_MOMENTUM),
            nn.ReLU(),
        )
        self.low_pam = PatchAttention(low, reduction=low // GATE_HIDDEN, window=20)
        self.aem = AttentionEmbedding(high, low, reduction=high // GATE_HIDDEN, window=6)
        self.classifier_low = nn.Conv2d(low, num_classes, 1)
        self.classifier_high = nn.Conv2d(high, num_classes, 1)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(high, low)``: ``high`` ch at 1/16 and ``low`` ch at 1/4 (128 and 64), after PAM/AEM."""
        c2, _, _, c5 = self.encoder(x)
        high = self.high_pam(self.head(c5))
        low = self.low_pam(self.low_reduce(c2))
        # detached as in the authors' code: the low-branch loss does not train the high branch
        low = self.aem(high.detach(), low)
        return high, low

    def forward_branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        high, low = self.forward_features(x)
        size = x.shape[-2:]
        return _upsample(self.classifier_high(high), size), _upsample(self.classifier_low(low), size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high, low = self.forward_branches(x)
        return high + low


# --- authors' checkpoint keys -> ours -------------------------------------------------

# Ordered (author prefix, our prefix) pairs; the first match wins. A None target drops
# the key (``FCN.classifier`` is built but never used by LANet.forward).
LANET_PREFIX_MAP: tuple[tuple[str, str | None], ...] = (
    ("FCN.layer0.0.", "encoder.conv1."),  # re-created conv1 (in_channels bands)
    ("FCN.layer0.1.", "encoder.bn1."),  # torchvision bn1
    ("FCN.layer1.", "encoder.layer1."),
    ("FCN.layer2.", "encoder.layer2."),
    ("FCN.layer3.", "encoder.layer3."),
    ("FCN.layer4.", "encoder.layer4."),
    ("FCN.head.", "head."),  # .0 conv, .1 BN
    ("FCN.classifier.", None),  # unused FCN classifier: dropped
    ("PA0.3.SA.", "low_pam.gate."),  # must precede "PA0."
    ("PA0.", "low_reduce."),  # .0 conv 256->64, .1 BN
    ("PA2.SA.", "high_pam.gate."),
    ("AE.SE.1.", "aem.gate.0."),  # SE.0 is the AvgPool (no weights)
    ("AE.SE.2.", "aem.gate.1."),
    ("AE.SE.4.", "aem.gate.3."),
    ("classifier0.", "classifier_low."),
    ("classifier1.", "classifier_high."),
)

_DP_PREFIX = re.compile(r"^module\.")


def lanet_key_map(author_key: str) -> str | None:
    """Map one key of the authors' ``LANet.state_dict()`` to ours; None = drop it.

    A ``module.`` (DataParallel) prefix is tolerated. Unknown keys raise KeyError so a
    mismatched checkpoint fails loudly.
    """
    key = _DP_PREFIX.sub("", author_key)
    for src, dst in LANET_PREFIX_MAP:
        if key.startswith(src):
            return None if dst is None else dst + key[len(src) :]
    raise KeyError(f"not a LANet checkpoint key: {author_key!r}")


def convert_lanet_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an authors' state_dict to ours, dropping unused keys."""
    out = {}
    for k, v in state_dict.items():
        new = lanet_key_map(k)
        if new is not None:
            out[new] = v
    return out


# --- registry --------------------------------------------------------------------------

LANET = ModelConfig(
    name="lanet",
    description="LANet: ResNet-50 FCN (OS 16) + patch attention + attention embedding",
    tile=512,  # the authors' training crop
    overlap=64,
    in_bands=("red", "green", "blue"),
    # R, G, B entries of the authors' 5-band Potsdam statistics (0-255)
    mean=POTSDAM_MEAN[:3],
    std=POTSDAM_STD[:3],
    input_range=255.0,
    size_multiple=16,
    min_tile=80,  # PAM windows: ceil(H/4) >= 20 and ceil(H/16) >= 4 -> H >= 77 -> 80
    receptive_radius=None,  # patch pooling spans the tile
    paper="LANet (TGRS 2020)",
)


@register_model(LANET, key_map=lanet_key_map)
def lanet(config: ModelConfig, output_stride: int = 16) -> LANet:
    """Build LANet for ``config``'s bands and classes (random weights).

    ``output_stride=32`` gives the paper's Potsdam setting (authors' ``FCN_32s``; same
    checkpoint keys); it then needs tiles that are multiples of 32 and at least 128 px,
    which the registered config (made for 16) does not enforce.
    """
    return LANet(config.num_bands, config.num_classes, output_stride=output_stride)


LANET_LITE = LANET.replace(
    name="lanet-lite",
    description="LANet-lite (demo): ResNet-18 at width 32, 64/32-channel branches",
    demo=True,
)


@register_model(LANET_LITE, key_map=lanet_key_map)
def lanet_lite(config: ModelConfig, output_stride: int = 16) -> LANet:
    """ResNet-18 at width 32 and branches of half the paper's width."""
    return LANet(
        config.num_bands,
        config.num_classes,
        output_stride=output_stride,
        encoder_layers=(2, 2, 2, 2),
        basic_blocks=True,
        encoder_width=32,
        high=64,
        low=32,
    )
