"""Hi-ResNet: shapes, window partition, coarse + refined rule, size budget, funnel, ONNX."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import rsinfer.models.hiresnet  # noqa: F401  (registers "hiresnet" whatever models/__init__ imports)
from rsinfer.models import create_model, get_config
from rsinfer.models.complexity import model_complexity
from rsinfer.models.config import IMAGENET_MEAN_255, IMAGENET_STD_255, ISPRS_CLASSES
from rsinfer.models.hiresnet import (
    BRANCH_CHANNELS,
    HiResNet,
    IABlock,
    InvertedBottleneck,
    NormConv,
    WindowAttention,
    window_merge,
    window_partition,
)

PAPER_PARAMS = 26.0e6  # Tables VII and X
PAPER_GMAC = 57.0  # Table XIII, 512² crops, read as multiply-adds (module docstring)
# Our measured numbers, quoted in the module docstring.
PARAMS = 25_352_498
GFLOP_COUNTED_512 = 116.89  # FlopCounterMode, 2 per multiply-add


@pytest.fixture(scope="module")
def model() -> HiResNet:
    torch.manual_seed(0)
    return create_model("hiresnet")


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


# --- config and shapes ------------------------------------------------------------------------


def test_registered_config():
    c = get_config("hiresnet")
    assert (c.tile, c.overlap, c.size_multiple, c.min_tile) == (512, 64, 16, 16)
    assert c.receptive_radius is None
    assert c.in_bands == ("red", "green", "blue") and c.class_names == ISPRS_CLASSES
    assert (c.mean, c.std, c.input_range) == (IMAGENET_MEAN_255, IMAGENET_STD_255, 255.0)
    assert c.paper == "Hi-ResNet (JSTARS 2024)"


@pytest.mark.parametrize("batch, h, w", [(2, 64, 96), (1, 128, 128), (1, 96, 48), (1, 16, 32)])
def test_logits_at_input_size(model, batch, h, w):
    with torch.inference_mode():
        out = model(torch.randn(batch, 3, h, w))
    assert out.shape == (batch, 6, h, w)
    assert torch.isfinite(out).all()


def test_branches_at_quarter_eighth_sixteenth(model):
    with torch.inference_mode():
        feats = model.forward_features(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(48, 16, 24), (96, 8, 12), (192, 4, 6)]


def test_bands_and_classes_follow_the_config():
    cfg = get_config("hiresnet").replace(
        in_bands=("red", "green", "blue", "nir"),
        mean=(0.0,) * 4,
        std=(1.0,) * 4,
        class_names=("a", "b", "c"),
        class_colors=((0, 0, 0),) * 3,
    )
    net = create_model("hiresnet", cfg, blocks=(1, 1), num_modules=(1, 1))
    with torch.inference_mode():
        assert net(torch.randn(1, 4, 32, 48)).shape == (1, 3, 32, 48)


# --- IA block ---------------------------------------------------------------------------------


@pytest.mark.parametrize("h, w", [(16, 24), (13, 19)])  # the second needs padding to 16×24
def test_window_partition_round_trip(h, w):
    L, b, c = 8, 2, 5
    x = torch.randn(b, c, h, w)
    windows, padded = window_partition(x, L)
    assert padded == (16, 24)
    nh, nw = 2, 3
    assert windows.shape == (b * nh * nw, L * L, c)
    # Window (b, r, k) holds that L×L block of the zero-padded map, tokens in raster order.
    xp = F.pad(x, (0, 24 - w, 0, 16 - h))
    for i, (bi, r, k) in enumerate((bi, r, k) for bi in range(b) for r in range(nh) for k in range(nw)):
        block = xp[bi, :, r * L : (r + 1) * L, k * L : (k + 1) * L]
        assert torch.equal(windows[i], block.flatten(1).T)
    assert torch.equal(window_merge(windows, L, padded, (h, w)), x)


def test_window_attention_mixes_only_inside_windows():
    torch.manual_seed(0)
    attn = WindowAttention(dim=8, heads=2, window=4).eval()
    x = torch.randn(1, 8, 10, 7)  # padded to 12×8 inside
    y = x.clone()
    y[..., 5, 2] += 1.0  # in window row 1, column 0: rows 4-7, columns 0-3
    with torch.no_grad():
        changed = (attn(y) - attn(x)).abs().amax(1)[0] > 0
    inside = torch.zeros(10, 7, dtype=torch.bool)
    inside[4:8, 0:4] = True
    assert changed[inside].all() and not changed[~inside].any()


def test_ia_block_skip_connections():
    torch.manual_seed(0)
    block = IABlock(dim=48, heads=2, window=8, kernel=9, se_hidden=96).eval()
    x = torch.randn(1, 48, 12, 20)
    with torch.no_grad():
        # Zero attention output and depthwise conv: the skips around them pass SE(x) through.
        for conv in (block.attn.proj, block.dwconv):
            conv.weight.zero_()
            conv.bias.zero_()
        expected = x + block.pwconv(block.act(block.norm2(block.se(x))))
        torch.testing.assert_close(block(x), expected)
        # Zero the final 1×1 conv: the whole-block skip leaves the input unchanged.
        block.pwconv.weight.zero_()
        block.pwconv.bias.zero_()
        assert torch.equal(block(x), x)


# --- feature refinement -----------------------------------------------------------------------


def test_output_is_coarse_plus_refined(model):
    x = torch.randn(1, 3, 64, 96)
    size = x.shape[-2:]
    with torch.inference_mode():
        feats = model.forward_features(x)
        cat = torch.cat([feats[0]] + [_up(f, feats[0].shape[-2:]) for f in feats[1:]], 1)
        assert cat.shape[1] == sum(BRANCH_CHANNELS)
        head = model.head
        coarse = head.coarse(cat)
        refined = head.classifier(head.ocr(head.pixels(cat), coarse))
        coarse_up, refined_up = _up(coarse, size), _up(refined, size)
        out = model(x)
        heads = model.forward_heads(x)
    assert coarse_up.abs().amax() > 0 and refined_up.abs().amax() > 0
    torch.testing.assert_close(heads[0], coarse_up)
    torch.testing.assert_close(heads[1], refined_up)
    torch.testing.assert_close(out, coarse_up + refined_up, rtol=1e-5, atol=1e-5)


# --- size against the paper -------------------------------------------------------------------


def test_parameters_and_flops_near_the_paper():
    cx = model_complexity("hiresnet")  # meta device, 512² tile
    assert abs(cx.params - PAPER_PARAMS) / PAPER_PARAMS < 0.10
    assert cx.params == PARAMS
    gmac = cx.flops / 2e9
    assert abs(gmac - PAPER_GMAC) / PAPER_GMAC < 0.10
    assert cx.flops / 1e9 == pytest.approx(GFLOP_COUNTED_512, abs=0.01)


# --- funnel -----------------------------------------------------------------------------------


def test_funnel_structure(model):
    down = model.funnel.down
    assert len(down) == 2
    for unit in down:
        assert isinstance(unit, NormConv)
        bn, conv = unit[0], unit[1]  # BN first: the paper puts it before the convolution
        assert isinstance(bn, nn.BatchNorm2d) and isinstance(conv, nn.Conv2d)
        assert bn.num_features == conv.in_channels
        assert conv.kernel_size == (3, 3) and conv.stride == (2, 2)

    stem = model.funnel.stem
    assert len(stem) == 4 and all(isinstance(b, InvertedBottleneck) for b in stem)
    for block in stem:
        width = block.conv.out_channels
        assert block.conv.kernel_size == (3, 3) and block.conv.stride == (1, 1)
        assert block.expand.kernel_size == (1, 1) and block.expand.out_channels == 4 * width
        assert block.reduce.kernel_size == (1, 1) and block.reduce.out_channels == width

    # Residual with a linear output: block(x) = x + branch(x), nothing applied after the sum.
    block = stem[1]
    x = torch.randn(1, block.conv.in_channels, 8, 8)
    with torch.no_grad():
        branch = block.reduce(block.act(block.expand(block.norm(block.conv(x)))))
        torch.testing.assert_close(block(x), x + branch)


# --- export -----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
def test_exports_to_onnx(tmp_path):
    """Reduced depth (same block types, 2-level down links) keeps the export to ~1 s."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    net = HiResNet(blocks=(1, 1), num_modules=(1, 2)).eval()
    path = tmp_path / "hiresnet.onnx"
    # 64×96: the 1/8 and 1/16 maps (8×12, 4×6) need window padding.
    torch.onnx.export(
        net,
        (torch.randn(1, 3, 64, 96),),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "logits": {0: "b", 2: "h", 3: "w"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 64, 96), (2, 3, 48, 80)]:
        x = torch.randn(shape)
        with torch.no_grad():
            expected = net(x)
        got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
