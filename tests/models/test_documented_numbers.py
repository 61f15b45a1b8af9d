"""Every number the model docstrings and docs/models/*.md quote about our networks, measured.

Parameters are counted exactly on the ``meta`` device (no weights are allocated). FLOPs come
from ``rsinfer.models.complexity.model_complexity``; where it cannot express the setting
(builder kwargs, one branch of a global-local model, another band count) they come from the
same counter used the same way: ``FlopCounterMode``, 2 FLOPs per multiply-add, on ``meta``
tensors. Each figure is compared to the precision it is quoted with, and :func:`pin` also
checks that the text still quotes it, so the text and this file cannot drift apart.
"""

from __future__ import annotations

import functools
import importlib
import re
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import rsinfer.models.glnet as glnet_module
from rsinfer.models import complexity, create_model, get_config
from rsinfer.models.ammunet import ConvBNReLU, SkipFusion
from rsinfer.models.config import ISPRS_CLASSES, ISPRS_COLORS
from rsinfer.models.hiresnet import IABlock
from rsinfer.models.lanet import POTSDAM_BANDS, POTSDAM_MEAN, POTSDAM_STD
from rsinfer.models.resnet import Bottleneck, ResNet, resnet18_lite, resnet50, resnet50_v1c

DOCS = Path(__file__).resolve().parents[2] / "docs" / "models"
META = torch.device("meta")


# --- helpers ---------------------------------------------------------------------------------


@functools.cache
def text(name: str) -> str:
    """docs/models/NAME.md (if any) and the docstring of models/NAME.py, whitespace collapsed."""
    doc = DOCS / f"{name}.md"
    parts = [doc.read_text() if doc.exists() else "", importlib.import_module(f"rsinfer.models.{name}").__doc__]
    return " ".join(" ".join(parts).split())


def pin(doc: str, value: float, quoted: str) -> None:
    """``value`` is what the text of ``doc`` quotes as ``quoted``, to the precision quoted.

    ``"23,793,108"`` (digits and commas) must match exactly; ``"65.96"`` must equal ``value``
    rounded to two decimals.
    """
    assert quoted in text(doc), f"docs/models/{doc}.md or models/{doc}.py no longer quotes {quoted!r}"
    if re.fullmatch(r"\d{1,3}(,\d{3})*", quoted):
        assert value == int(quoted.replace(",", "")), f"{doc}: measured {value:,}, text says {quoted}"
    else:
        decimals = len(quoted.partition(".")[2])
        assert abs(value - float(quoted)) <= 0.5 * 10**-decimals + 1e-9, f"{doc}: measured {value}, text {quoted}"


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta(name: str, config=None, **kwargs) -> nn.Module:
    with META:
        return create_model(name, config, **kwargs)


def counted(fn, *args) -> FlopCounterMode:
    """Run ``fn(*args)`` under the counter, as ``model_complexity`` does; the output is ``.result``."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        counter.result = fn(*args)
    return counter


class Measured(NamedTuple):
    cx: complexity.Complexity
    counts: dict[str, dict]  # FlopCounterMode.get_flop_counts(): per module, per op
    model: nn.Module  # the meta-device model model_complexity built


@functools.cache
def measured(name: str) -> Measured:
    """``model_complexity(name)``, with the per-module counts and the model of that same pass."""
    seen: dict = {}

    class Recording(FlopCounterMode):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["counter"] = self

    def recording_create_model(*args, **kwargs):
        seen["model"] = create_model(*args, **kwargs)
        return seen["model"]

    with (
        mock.patch.object(complexity, "FlopCounterMode", Recording),
        mock.patch.object(complexity, "create_model", recording_create_model),
    ):
        cx = complexity.model_complexity(name)
    return Measured(cx, seen["counter"].get_flop_counts(), seen["model"])


def total(counts: dict[str, dict], *modules: str) -> int:
    return sum(sum(counts[m].values()) for m in modules)


def by_op(counts: dict[str, dict]) -> dict[str, int]:
    return {str(op): n for op, n in counts["Global"].items()}


def image(side: int, bands: int = 3) -> torch.Tensor:
    return torch.empty(1, bands, side, side, device=META)


def sides(feats) -> list[tuple[int, int]]:
    """(channels, side) of each feature map."""
    return [(f.shape[1], f.shape[-1]) for f in feats]


# --- LANet ---------------------------------------------------------------------------------------

POTSDAM = dict(
    in_bands=POTSDAM_BANDS,
    mean=POTSDAM_MEAN,
    std=POTSDAM_STD,
    class_names=("invalid",) + ISPRS_CLASSES,
    class_colors=((0, 0, 0),) + ISPRS_COLORS,
)


def test_lanet_registered_config():
    cx, counts, model = measured("lanet")
    pin("lanet", params(model), "23,793,108")
    pin("lanet", params(model) * 4 / 1e6, "95.2")
    with META:
        pin("lanet", params(resnet50()), "23,508,032")
    pin("lanet", params(model.encoder) / 1e6, "23.51")
    assert cx.params == params(model)
    pin("lanet", cx.flops / 1e9, "65.96")
    pin("lanet", cx.flops / 2e9, "32.98")
    ops = by_op(counts)
    pin("lanet", ops["aten.convolution"] / 1e9, "65.94")
    pin("lanet", (cx.flops - ops["aten.convolution"]) / 1e9, "0.02")  # the PAM pooling matrices

    with torch.no_grad():
        high, low = model.forward_features(image(512))
    assert (high.shape[1:], low.shape[1:]) == ((128, 32, 32), (64, 128, 128))  # 1/16 and 1/4
    assert (model.head[0].in_channels, model.low_reduce[0].in_channels) == (2048, 256)
    assert (model.high_pam.window, model.low_pam.window) == (4, 20)
    assert get_config("lanet").min_tile == 80
    with torch.no_grad():
        model.forward_features(image(80))  # ceil(80/4) = 20 and 80/16 = 5: the smallest that works
        with pytest.raises(ValueError, match="smaller than"):
            model.forward_features(image(76))  # ceil(76/4) = 19 < 20


def test_lanet_potsdam_setting():
    config = get_config("lanet", **POTSDAM)
    stride32, stride16 = meta("lanet", config, output_stride=32), meta("lanet", config)
    pin("lanet", params(stride32), "23,799,574")
    assert params(stride16) == params(stride32)
    counter32 = counted(stride32, image(512, 5))
    pin("lanet", counter32.get_total_flops() / 1e9, "44.23")
    pin("lanet", counter32.get_total_flops() / 2e9, "22.11")
    pin("lanet", by_op(counter32.get_flop_counts())["aten.convolution"] / 1e9, "44.22")  # the old, conv-only figure
    counter16 = counted(stride16, image(512, 5))
    pin("lanet", counter16.get_total_flops() / 1e9, "66.78")
    pin("lanet", counter16.get_total_flops() / 2e9, "33.39")
    pin("lanet", by_op(counter16.get_flop_counts())["aten.convolution"] / 1e9, "66.77")
    with torch.no_grad():
        high, _ = stride32.forward_features(image(512, 5))
    assert high.shape[1:] == (128, 16, 16)  # 1/32


def test_lanet_lite():
    model = meta("lanet-lite")
    pin("lanet", params(model), "2,819,604")
    assert model.encoder.out_channels == (32, 64, 128, 256)
    assert (model.classifier_high.in_channels, model.classifier_low.in_channels) == (64, 32)
    assert model.high_pam.gate[0].out_channels == model.aem.gate[0].out_channels == 8  # gates stay 8 wide


# --- AMMUNet -------------------------------------------------------------------------------------


def test_ammunet_parameters_against_the_authors_model():
    model = measured("ammunet").model
    pin("ammunet", params(model), "30,430,718")
    pin("ammunet", params(model) / 1e6, "30.43")
    pin("ammunet", params(model.backbone) / 1e6, "23.53")
    pin("ammunet", params(model.decoder) / 1e6, "6.90")

    # The modules the authors' mmseg model stores but never calls (from their code's shapes).
    with META:
        p0 = params(SkipFusion(3, 256)) + 2  # a WF on the RGB input, with its weight pair
        fr = params(
            nn.Sequential(
                nn.Conv2d(256, 256, 3, padding=1, groups=256),  # pa
                nn.Conv2d(256, 16, 1),
                nn.Conv2d(16, 256, 1),  # ca
                nn.Conv2d(256, 256, 1, bias=False),
                nn.BatchNorm2d(256),  # shortcut
                nn.Conv2d(256, 256, 3, padding=1, groups=256, bias=False),
                nn.BatchNorm2d(256),
                nn.Conv2d(256, 256, 1),  # proj (separable)
            )
        )
        aux = params(
            nn.Sequential(nn.Conv2d(1024, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256), nn.Conv2d(256, 6, 1))
        )
        head = ConvBNReLU(256, 256, 3)
    pin("ammunet", p0, "1,181,186")
    pin("ammunet", p0 / 1e6, "1.18")
    pin("ammunet", fr, "145,680")
    pin("ammunet", fr / 1e6, "0.15")
    decode = params(model) + p0 + fr + 6  # + p1..p3 .weights
    pin("ammunet", decode, "31,757,590")
    pin("ammunet", decode / 1e6, "31.76")
    pin("ammunet", aux, "2,361,350")
    pin("ammunet", aux / 1e6, "2.36")
    pin("ammunet", decode + aux, "34,118,940")
    pin("ammunet", (decode + aux) / 1e6, "34.12")
    pin("ammunet", params(head), "590,336")
    pin("ammunet", params(head) / 1e6, "0.59")
    pin("ammunet", decode + params(head), "32,347,926")
    pin("ammunet", (decode + params(head)) / 1e6, "32.35")
    pin("ammunet", counted(head, torch.empty(1, 256, 128, 128, device=META)).get_total_flops() / 2e9, "9.66")


def test_ammunet_flops():
    cx, counts, _ = measured("ammunet")
    pin("ammunet", cx.flops / 1e9, "108.63")
    gmac = cx.flops / 2e9
    pin("ammunet", gmac, "54.32")
    ops = by_op(counts)
    pin("ammunet", ops["aten.convolution"] / 2e9, "50.01")
    pin("ammunet", ops["aten.addmm"] / 2e9, "4.23")  # linear layers
    pin("ammunet", ops["aten.bmm"] / 2e9, "0.08")  # attention matmuls
    pin("ammunet", total(counts, "AMMUNet.backbone") / 2e9, "22.61")
    pin("ammunet", total(counts, "AMMUNet.decoder.p1.post_conv") / 2e9, "19.33")
    skips = total(counts, *(f"AMMUNet.decoder.p{i}.pre_conv" for i in (1, 2, 3)))
    pin("ammunet", skips / 2e9, "1.88")
    assert "52.50" in text("ammunet")  # Table III
    pin("ammunet", (1 - 52.50 / round(gmac, 2)) * 100, "3.4")
    pin("ammunet", gmac - 52.50, "1.8")


def test_ammunet_windows_and_widths():
    model = measured("ammunet").model
    attn = [model.decoder.b4.attn, model.decoder.b3.attn, model.decoder.b2.attn]
    assert [a.window for a in attn] == [16, 32, 64]
    assert [a.num_groups for a in attn] == [1, 256, 1024]
    assert [tuple(a.relative_position_bias_table.shape) for a in attn] == [(31 * 31, 8), (9, 8), (9, 8)]
    assert model.decoder.pre_conv.conv.out_channels == 256 and attn[0].num_heads == 8
    assert model.decoder.b4.ffn.fc1.out_features == 1024
    with torch.no_grad():
        feats = model.backbone(image(64))
    assert sides(feats) == [(256, 16), (512, 8), (1024, 4), (2048, 2)]  # 1/4..1/32
    assert get_config("ammunet").size_multiple == 32

    lite = meta("ammunet-lite")
    pin("ammunet", params(lite), "3,205,506")
    lite_attn = lite.decoder.b4.attn
    assert (lite.decoder.pre_conv.conv.out_channels, lite_attn.num_heads, lite_attn.window) == (64, 4, 8)
    assert lite.backbone.out_channels == (32, 64, 128, 256)


# --- Hi-ResNet -----------------------------------------------------------------------------------

BRANCH_BLOCK = re.compile(r"^HiResNet\.layer\d\.\d+\.branches\.\d+$")


def _hiresnet_parts(model: nn.Module) -> dict[str, int]:
    parts: dict[str, int] = {}
    for name, p in model.named_parameters():
        first = name.split(".")[0]
        if ".branches." in name:
            kind = name.split(".branches.")[1].split(".")[2]  # se, attn, dwconv, pwconv, norm1, norm2
            parts[f"ia.{kind}"] = parts.get(f"ia.{kind}", 0) + p.numel()
            first = "ia"
        elif first.startswith("layer"):
            first = "fusion"
        elif first.startswith("transition"):
            first = "transitions"
        parts[first] = parts.get(first, 0) + p.numel()
    return parts


def test_hiresnet_budget_table():
    cx, counts, model = measured("hiresnet")
    pin("hiresnet", params(model), "25,352,498")
    pin("hiresnet", params(model) / 1e6, "25.35")
    parts = _hiresnet_parts(model)
    pin("hiresnet", parts["funnel"], "317,766")
    pin("hiresnet", parts["transitions"], "249,280")
    pin("hiresnet", parts["ia"], "22,886,784")
    pin("hiresnet", parts["ia.se"], "9,524,160")
    pin("hiresnet", parts["ia.attn"], "9,540,864")
    pin("hiresnet", parts["ia.dwconv"], "1,369,728")
    pin("hiresnet", parts["ia.pwconv"], "2,385,216")
    pin("hiresnet", parts["ia.norm1"] + parts["ia.norm2"], "66,816")
    pin("hiresnet", parts["fusion"], "1,425,312")
    pin("hiresnet", parts["head"], "473,356")
    assert sum(1 for m in model.modules() if isinstance(m, IABlock)) == 152
    assert "152 IA blocks" in text("hiresnet")

    pin("hiresnet", cx.flops / 1e9, "116.89")
    pin("hiresnet", cx.flops / 2e9, "58.45")

    def gmac(pattern: str) -> float:
        return sum(sum(c.values()) for name, c in counts.items() if re.search(pattern, name)) / 2e9

    pin("hiresnet", gmac(r"^HiResNet\.funnel$"), "5.28")
    pin("hiresnet", gmac(r"^HiResNet\.transition(1\.\d+|2)$"), "0.85")
    pin("hiresnet", gmac(BRANCH_BLOCK.pattern), "43.49")
    pin("hiresnet", gmac(r"branches\.\d+\.\d+\.se$"), "0.01")
    qkv_proj = gmac(r"branches\.\d+\.\d+\.attn\.(qkv|proj)$")
    pin("hiresnet", qkv_proj, "22.95")
    pin("hiresnet", gmac(r"branches\.\d+\.\d+\.attn$") - qkv_proj, "9.06")
    pin("hiresnet", gmac(r"branches\.\d+\.\d+\.dwconv$"), "5.73")
    pin("hiresnet", gmac(r"branches\.\d+\.\d+\.pwconv$"), "5.74")
    pin("hiresnet", gmac(r"^HiResNet\.layer\d\.\d+\.fuse\.\d+\.\d+$"), "2.42")  # the FusionLinks
    pin("hiresnet", gmac(r"^HiResNet\.head$"), "6.41")
    pin("hiresnet", qkv_proj + gmac(r"branches\.\d+\.\d+\.pwconv$"), "28.7")  # more than 57 / 2
    # Against the paper's 26.0 M and 57 G (read as multiply-adds).
    pin("hiresnet", (1 - params(model) / 26.0e6) * 100, "2.5")
    pin("hiresnet", (cx.flops / 2e9 / 57 - 1) * 100, "2.5")


def test_hiresnet_widths_and_strides():
    model = measured("hiresnet").model
    layer2 = model.layer2[0].branches
    blocks = [branch[0] for branch in layer2]
    assert [b.se.reduce.in_channels for b in blocks] == [48, 96, 192]
    assert [b.attn.heads for b in blocks] == [2, 4, 8]
    assert [b.se.reduce.out_channels for b in blocks] == [96, 192, 384]  # SE hidden 2C
    assert {b.dwconv.kernel_size for b in blocks} == {(9, 9)} and {b.attn.window for b in blocks} == {8}
    assert [len(branch) for branch in layer2] == [12, 12, 12] and len(model.layer2) == 4
    assert [len(branch) for branch in model.layer1[0].branches] == [4, 4] and len(model.layer1) == 1
    assert model.head.coarse[0][0].in_channels == model.head.pixels[0].in_channels == 48 + 96 + 192 == 336
    head = model.head  # the light head: all 1×1, 256 wide, OCR keys 128
    assert (head.coarse[0][0].out_channels, head.pixels[0].out_channels) == (256, 256)
    assert head.coarse[0][0].kernel_size == head.pixels[0].kernel_size == (1, 1)
    assert head.ocr.pixel_key[0][0].out_channels == 128
    # Funnel: two stride-2 convs (1/4), 64 wide, IB blocks 64 -> 256 -> 64.
    assert [unit[1].stride for unit in model.funnel.down] == [(2, 2), (2, 2)]
    assert {(b.expand.in_channels, b.expand.out_channels) for b in model.funnel.stem} == {(64, 256)}
    # Branches at 1/4, 1/8 (stride 2) and 1/16 (stride 2 from the 1/8 one).
    assert [t[1].stride for t in model.transition1] == [(1, 1), (2, 2)] and model.transition2[1].stride == (2, 2)
    assert get_config("hiresnet").size_multiple == 16
    # One parameter of a conv at 1/4, 1/8, 1/16 of a 512 tile is applied once per pixel of that map.
    assert [(512 // stride) ** 2 for stride in (4, 8, 16)] == [16_384, 4_096, 1_024]
    assert all(f in text("hiresnet") for f in ("16,384", "4,096", "1,024"))

    lite = meta("hiresnet-lite")
    pin("hiresnet", params(lite), "340,594")
    lite_blocks = [branch[0] for branch in lite.layer2[0].branches]
    assert [b.se.reduce.in_channels for b in lite_blocks] == [16, 32, 64]
    assert [b.attn.heads for b in lite_blocks] == [1, 2, 4]


def test_hiresnet_heavy_variant_is_ours_not_the_authors():
    """Our network with the authors' funnel width, an HRNet-OCR head and classic SE: 24.3 M, not the authors' 54.3 M."""
    heavy = meta(
        "hiresnet",
        funnel_channels=256,
        coarse_channels=336,
        ocr_channels=512,
        ocr_key_channels=256,
        head_kernel=3,
        se_ratio=0.25,
    )
    pin("hiresnet", params(heavy), "24,318,722")
    pin("hiresnet", params(heavy) / 1e6, "24.3")
    pin("hiresnet", params(heavy.funnel) / 1e6, "4.07")
    with META:  # HRNet's stage 1: four bottlenecks 64 -> 256
        down = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256))
        stage1 = nn.Sequential(Bottleneck(64, 64, downsample=down), *[Bottleneck(256, 64) for _ in range(3)])
    pin("hiresnet", params(stage1) / 1e6, "0.29")
    pin("hiresnet", (params(heavy.funnel) - params(stage1)) / 1e6, "3.8")
    pin("hiresnet", params(heavy.head) / 1e6, "3.76")
    # Still IA blocks (window attention, SE, depthwise conv), so not the authors' public model.
    assert sum(1 for m in heavy.modules() if isinstance(m, IABlock)) == 152
    assert "54,337,120" in text("hiresnet") and params(heavy) < 54_337_120 / 2
    assert "one call" not in text("hiresnet")  # no call of ours gives the authors' network

    # Only the funnel, transition1 (its input width), the head and the SE gates differ from the
    # registered model, so the variant's total is the registered total with those parts recounted
    # (one full meta pass of the variant would cost seconds).
    cx, counts, _ = measured("hiresnet")
    changed = re.compile(r"^HiResNet\.(funnel|transition1\.\d+|head|layer\d\.\d+\.branches\.\d+\.\d+\.se)$")
    flops = cx.flops - sum(sum(c.values()) for name, c in counts.items() if changed.match(name))
    funnel = counted(heavy.funnel, image(512))
    head = counted(heavy.head, torch.empty(1, 336, 128, 128, device=META))
    flops += funnel.get_total_flops() + head.get_total_flops()
    flops += sum(counted(t, funnel.result).get_total_flops() for t in heavy.transition1)
    se_widths = [m.se.reduce.in_channels for m in heavy.modules() if isinstance(m, IABlock)]
    for width in set(se_widths):  # SE acts on the pooled 1×1 map, whatever the side
        se = next(m.se for m in heavy.modules() if isinstance(m, IABlock) and m.se.reduce.in_channels == width)
        flops += se_widths.count(width) * counted(se, torch.empty(1, width, 1, 1, device=META)).get_total_flops()
    pin("hiresnet", flops / 2e9, "171.70")
    pin("hiresnet", flops / 2e9, "171.7")
    pin("hiresnet", funnel.get_total_flops() / 2e9, "66.8")
    pin("hiresnet", head.get_total_flops() / 2e9, "56.2")
    assert flops == 343_396_066_304  # what a full FlopCounterMode pass of the variant gives


# --- GLNet ---------------------------------------------------------------------------------------


def footprint_of_side(side: float):
    """``footprint_cells`` for boxes of this side (meta boxes hold no values to read)."""

    def cells(boxes, grids):
        return [tuple((max(1, round(side * h)), max(1, round(side * w))) for h, w in grids)] * boxes.shape[0]

    return cells


def mib(tensors) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def test_glnet_parameters():
    model = measured("glnet").model
    pin("glnet", params(model), "79,182,482")
    pin("glnet", params(model) * 4 / 1e6, "316.7")
    pin("glnet", params(model.global_encoder), "23,508,032")
    assert params(model.local_encoder) == params(model.global_encoder)
    fpn = model.global_fpn
    plain = sum(params(m) for m in (fpn.lateral, fpn.smooth_a, fpn.smooth_b, fpn.classify))
    pin("glnet", params(fpn), "18,317,830")
    pin("glnet", plain, "4,552,198")
    pin("glnet", params(fpn) - plain, "13,765,632")
    pin("glnet", params(model.local_fpn), "13,793,286")
    pin("glnet", params(model.ensemble_conv), "55,302")
    pin("glnet", params(model.global_encoder) + plain, "28,060,230")
    pin("glnet", params(model) - params(model.global_encoder) - plain, "51,122,252")
    frozen = meta("glnet", frozen_global=True)
    assert params(frozen) - params(model) == params(model.global_encoder) + plain
    pin("glnet", params(frozen), "107,242,712")
    assert [c.out_channels for c in fpn.lateral] == [256] * 4 and [c.out_channels for c in fpn.smooth_b] == [128] * 4
    assert (fpn.classify.in_channels, model.ensemble_conv.in_channels) == (512, 1024)


def test_glnet_flops_and_context(monkeypatch):
    # A 500-px patch covers 2×2 cells of the 1/32 grid of a 500-px view of a 4096-px region; of 2448 px, 3×3.
    for scene, cells in ((4096, 2), (2448, 3)):
        side = 500 / scene
        footprint = glnet_module.footprint_cells(torch.tensor([[0.0, 0.0, side, side]]), [(16, 16)])
        assert footprint == [((cells, cells),)]
    whole, _, model = measured("glnet")
    view, patch, box = image(500), image(500), torch.empty(1, 4, device=META)
    counter = counted(model.forward_global, view)
    pin("glnet", counter.get_total_flops() / 1e9, "83.64")
    encoder = total(counter.get_flop_counts(), "ResNet")
    pin("glnet", encoder / 1e9, "41.94")
    pin("glnet", (counter.get_total_flops() - encoder) / 1e9, "41.69")
    context = counter.result
    assert [context[f"level{k}"].shape[1] for k in "2345"] == [896, 1152, 1664, 2688]
    assert [context[f"level{k}"].shape[-1] for k in "2345"] == [125, 63, 32, 16]  # 1/4..1/32 of 500
    pin("glnet", mib(context.values()), "80.3")

    # authors' procedure (the default): whole-image forward = global view + pass 1 + one l2g pass + pass 2.
    pin("glnet", whole.flops / 1e9, "709.14")
    assert model.procedure == "authors"

    def pass1(p):
        feats = model.local_encoder(p)[::-1]
        crops = model._crops(feats, context, box)
        return model.local_fpn.levels(model.local_fpn.laterals(feats, crops), crops)

    pin("glnet", counted(pass1, patch).get_total_flops() / 1e9, "123.60")
    maps = model._l2g_maps(context)
    ext = [[torch.empty(1, ch[i], *m.shape[-2:], device=META) for m, ch in zip(maps, model.channels)] for i in range(4)]
    l2g = counted(model.global_fpn.forward_l2g, maps, ext)
    pin("glnet", l2g.get_total_flops() / 1e9, "229.12")
    pin(
        "glnet",
        counted(model.forward_local, patch, {**context, "l2g_ps3": l2g.result}, box).get_total_flops() / 1e9,
        "272.79",
    )

    # streaming procedure: whole-image forward = global view + the view as its own patch (full-grid l2g).
    model = meta("glnet", procedure="streaming")
    with mock.patch.object(
        complexity, "create_model", lambda *a, **k: create_model(*a, **{**k, "procedure": "streaming"})
    ):
        streaming = complexity.model_complexity("glnet")
    pin("glnet", streaming.flops / 1e9, "585.54")
    pin("glnet", (streaming.flops - counter.get_total_flops()) / 1e9, "501.90")
    # Meta boxes hold no values, so footprint_cells is substituted with the footprint of each case.
    patch_mode = counted(model.forward_patch, patch)
    pin("glnet", patch_mode.get_total_flops() / 1e9, "271.92")
    pin("glnet", total(patch_mode.get_flop_counts(), "LocalFPN.fuse") / 1e9, "147.5")
    monkeypatch.setattr(glnet_module, "footprint_cells", footprint_of_side(500 / 4096))
    region = counted(model.forward_local, patch, context, box).get_total_flops() / 1e9
    pin("glnet", region, "276.12")
    pin("glnet", region - patch_mode.get_total_flops() / 1e9, "4.2")

    g2l = meta("glnet", l2g=False)
    with torch.no_grad():
        g2l_context = g2l.forward_global(view)
    pin("glnet", counted(g2l.forward_local, patch, g2l_context, box).get_total_flops() / 1e9, "272.79")
    assert g2l_context["ps3"].shape[1:] == (512, 125, 125)
    pin("glnet", mib([g2l_context["ps3"]]), "30.5")
    # frozen_global: the context also holds the l2g model's own c2..c5, shaped like the context's c_k.
    pin("glnet", mib(context[f"level{k}"][:, :c] for k, c in zip("5432", (2048, 1024, 512, 256), strict=True)), "29.0")


# --- GLCANet -------------------------------------------------------------------------------------


def test_glcanet():
    whole, _, model = measured("glcanet")
    pin("glcanet", params(model), "66,008,978")
    pin("glcanet", params(model) * 4 / 1e6, "264.0")
    pin("glcanet", params(model.global_encoder), "23,508,032")
    pin("glcanet", params(model.global_fpn), "4,552,198")
    pin("glcanet", params(model.local_fpn), "13,793,286")
    attention = [model.global_attention, model.local_from_global, model.global_from_local]
    assert {params(a) for a in attention} == {197_376}
    pin("glcanet", params(attention[0]), "197,376")
    pin("glcanet", params(model.aggregate), "55,302")
    global_branch = params(model.global_encoder) + params(model.global_fpn) + params(model.global_attention)
    pin("glcanet", global_branch, "28,257,606")
    pin("glcanet", params(model) - global_branch, "37,751,372")
    fpn = model.global_fpn
    assert (fpn.smooth_a[0].out_channels, fpn.smooth_b[0].out_channels) == (256, 128)  # p5 smoothing 256→256→128
    assert (fpn.classify.in_channels, model.aggregate.in_channels) == (512, 1024)  # ps3, f_agg

    view, box = image(500), torch.empty(1, 4, device=META)
    counter = counted(model.forward_global, view)
    global_flops, context = counter.get_total_flops(), counter.result
    pin("glcanet", global_flops / 1e9, "83.80")
    # Whole-image forward at 500² = the global view + the view as its own patch (global-local mode).
    pin("glcanet", whole.flops / 1e9, "357.38")
    pin("glcanet", (whole.flops - global_flops) / 1e9, "273.58")
    assert context["tokens"].shape[1:] == (256, 16, 16)
    local_p5 = torch.empty(1, 256, 16, 16, device=META)
    pin("glcanet", counted(model.cross_attention, local_p5, context["tokens"], box).get_total_flops() / 1e9, "0.34")
    pin("glcanet", counted(model.forward_patch, view).get_total_flops() / 1e9, "271.96")

    lite = meta("glcanet-lite")
    pin("glcanet", params(lite), "6,714,898")
    pin("glnet", params(meta("glnet-lite")), "7,476,946")
    assert lite.global_encoder.out_channels == (32, 64, 128, 256)
    assert (lite.global_fpn.lateral[0].out_channels, lite.global_fpn.smooth_b[0].out_channels) == (64, 32)


# --- baselines -----------------------------------------------------------------------------------

BASELINES = {  # name: (parameters, GFLOPs at 512², total stride), as docs/models/baselines.md quotes them
    "unet": ("31,037,958", "385.51", 16),
    "icnet": ("24,579,494", "17.62", 32),
    "pspnet": ("46,584,902", "354.30", 8),
    "segnet": ("29,442,758", "321.62", 32),
    "deeplabv3plus": ("40,348,326", "138.32", 16),
    "fcn8s": ("134,300,114", "221.67", 32),
}


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_cost(name):
    from rsinfer.models.baselines import COMPLEXITY_512

    quoted_params, quoted_gflops, stride = BASELINES[name]
    cx = measured(name).cx
    pin("baselines", cx.params, quoted_params)
    pin("baselines", cx.flops / 1e9, quoted_gflops)
    assert COMPLEXITY_512[name] == (int(quoted_params.replace(",", "")), float(quoted_gflops))
    assert f"| {name} | {quoted_params} | {quoted_gflops} |" in text("baselines")
    assert cx.config.size_multiple == cx.config.min_tile == stride


def test_baseline_strides_and_widths():
    from rsinfer.models.baselines import dilated_resnet50

    prose = text("baselines")
    for model, stride in (
        ("UNet", 16),
        ("ICNet", 32),
        ("PSPNet", 8),
        ("SegNet", 32),
        ("DeepLabv3+", 16),
        ("FCN-8s", 32),
    ):
        section = prose.split(f"### {model} (")[1].split("###")[0]
        assert f"Total stride {stride}." in section, model
    unet, segnet, fcn = (measured(name).model for name in ("unet", "segnet", "fcn8s"))
    assert [block[0][0].out_channels for block in unet.down] == [64, 128, 256, 512, 1024]  # 4 pools: 16
    pools = [m for m in segnet.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and len([m for m in fcn.features if isinstance(m, nn.MaxPool2d)]) == 5  # 32
    assert (fcn.fc6[0].kernel_size, fcn.fc6[0].out_channels, fcn.fc7[0].out_channels) == ((7, 7), 4096, 4096)
    with META, torch.no_grad():
        os8 = dilated_resnet50(3, output_stride=8)(image(64))
        os16 = dilated_resnet50(3, output_stride=16)(image(64))
    assert sides(os8)[-1] == (2048, 8) and sides(os16)[-1] == (2048, 4)
    icnet, psp, deeplab = (measured(name).model for name in ("icnet", "pspnet", "deeplabv3plus"))
    pin("baselines", params(icnet.backbone) / 1e6, "23.5")
    pin("baselines", (params(icnet) - params(icnet.backbone)) / 1e6, "1.07")
    assert [m[0].out_channels for m in icnet.sub1] == [32, 32, 64] and icnet.cff_sub12.low[0].out_channels == 128
    assert psp.ppm.bins == (1, 2, 3, 6) and {s[0].out_channels for s in psp.ppm.stages} == {512}
    assert [b[0].dilation for b in deeplab.aspp.branches[1:]] == [(6, 6), (12, 12), (18, 18)]
    assert (deeplab.aspp.project[0].out_channels, deeplab.low_project[0].out_channels) == (256, 48)


# --- ResNet (models/resnet.py's docstring) -------------------------------------------------------


def test_resnet_widths_and_strides():
    with META:
        r50, v1c, r18_32, r18_64 = resnet50(), resnet50_v1c(), resnet18_lite(32), resnet18_lite(64)
        with torch.no_grad():
            feats = r50(image(64))
    assert sides(feats) == [(256, 16), (512, 8), (1024, 4), (2048, 2)]  # 1/4..1/32
    class_doc = " ".join(ResNet.__doc__.split())
    assert "256/512/1024/2048" in class_doc and "32/64/128/256 channels, a quarter of the weights" in class_doc
    assert r18_32.out_channels == (32, 64, 128, 256)
    assert round(params(r18_32) / params(r18_64), 2) == 0.25
    stem = [(m.in_channels, m.out_channels, m.stride) for m in v1c.stem if isinstance(m, nn.Conv2d)]
    assert stem == [(3, 32, (2, 2)), (32, 32, (1, 1)), (32, 64, (1, 1))]
    assert "3→32 s2, 32→32, 32→64" in text("resnet")
    assert [i for i, m in enumerate(v1c.stem) if not isinstance(m, nn.ReLU)] == [0, 1, 3, 4, 6, 7]
