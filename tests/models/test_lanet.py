"""LANet: shapes, the authors' checkpoint layout, PAM/AEM semantics, registry config."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rsinfer.models import create_model, get_config, list_models
from rsinfer.models.config import ISPRS_CLASSES, ISPRS_COLORS
from rsinfer.models.lanet import (
    LANET,
    POTSDAM_BANDS,
    POTSDAM_MEAN,
    POTSDAM_STD,
    AttentionEmbedding,
    LANet,
    PatchAttention,
    convert_lanet_state_dict,
    lanet_key_map,
)
from rsinfer.weights import load_checkpoint

BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
Layout = list[tuple[str, tuple[int, ...]]]

# The authors' Potsdam model: 5 bands, 6 classes + "invalid" = 7 outputs.
POTSDAM_CONFIG = LANET.replace(
    in_bands=POTSDAM_BANDS,
    mean=POTSDAM_MEAN,
    std=POTSDAM_STD,
    class_names=("invalid",) + ISPRS_CLASSES,
    class_colors=((0, 0, 0),) + ISPRS_COLORS,
)


def _bn(prefix: str, c: int) -> Layout:
    return [(f"{prefix}.{s}", () if s == "num_batches_tracked" else (c,)) for s in BN_SUFFIXES]


def _conv(prefix: str, cout: int, cin: int, k: int = 1, bias: bool = True) -> Layout:
    return [(f"{prefix}.weight", (cout, cin, k, k))] + ([(f"{prefix}.bias", (cout,))] if bias else [])


def author_lanet_layout(in_channels: int, num_classes: int) -> Layout:
    """(key, shape) of the authors' ``LANet(in_channels, num_classes).state_dict()``.

    Written from models/LANet.py + models/FCN_16s.py (FCN_res50): ``FCN.layer0`` =
    (new conv1, resnet bn1, relu); ``FCN.layer1-4`` = torchvision stages; ``FCN.head`` =
    (conv 2048->128 no bias, BN, ReLU); ``FCN.classifier`` = (conv 128->128, BN, ReLU,
    conv 128->C), unused; ``PA0`` = (conv 256->64, BN, ReLU, Patch_Attention(64, r=8));
    ``PA2`` = Patch_Attention(128, r=16); Patch_Attention.SA = (conv, BN, ReLU, conv,
    Sigmoid); ``AE.SE`` = (AvgPool, conv 128->8, BN, ReLU, conv 8->64, Sigmoid).
    """
    keys = _conv("FCN.layer0.0", 64, in_channels, 7, bias=False) + _bn("FCN.layer0.1", 64)
    inplanes = 64
    for stage, (blocks, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), 1):
        for b in range(blocks):
            p = f"FCN.layer{stage}.{b}"
            keys += (
                _conv(f"{p}.conv1", planes, inplanes, 1, False)
                + _bn(f"{p}.bn1", planes)
                + _conv(f"{p}.conv2", planes, planes, 3, False)
                + _bn(f"{p}.bn2", planes)
                + _conv(f"{p}.conv3", planes * 4, planes, 1, False)
                + _bn(f"{p}.bn3", planes * 4)
            )
            if b == 0:
                keys += _conv(f"{p}.downsample.0", planes * 4, inplanes, 1, False) + _bn(
                    f"{p}.downsample.1", planes * 4
                )
            inplanes = planes * 4
    keys += _conv("FCN.head.0", 128, 2048, bias=False) + _bn("FCN.head.1", 128)
    keys += (
        _conv("FCN.classifier.0", 128, 128) + _bn("FCN.classifier.1", 128) + _conv("FCN.classifier.3", num_classes, 128)
    )
    keys += _conv("PA0.0", 64, 256) + _bn("PA0.1", 64)
    keys += _conv("PA0.3.SA.0", 8, 64) + _bn("PA0.3.SA.1", 8) + _conv("PA0.3.SA.3", 64, 8)
    keys += _conv("PA2.SA.0", 8, 128) + _bn("PA2.SA.1", 8) + _conv("PA2.SA.3", 128, 8)
    keys += _conv("AE.SE.1", 8, 128) + _bn("AE.SE.2", 8) + _conv("AE.SE.4", 64, 8)
    keys += _conv("classifier0", num_classes, 64) + _conv("classifier1", num_classes, 128)
    return keys


def random_author_state_dict(in_channels: int, num_classes: int, seed: int = 0) -> dict:
    """Author-keyed tensors with tame magnitudes: logits O(10), gates not saturated, so
    small semantic slips (padding, interpolation) change the output visibly."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in author_lanet_layout(in_channels, num_classes):
        if key.endswith("num_batches_tracked"):
            v = torch.tensor(7)
        elif key.endswith("running_var"):
            v = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) == 4:
            v = torch.randn(shape, generator=g) * (1.0 / (shape[1] * shape[2] * shape[3])) ** 0.5
        elif key.endswith(".weight"):  # BN gamma
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:  # biases, running means
            v = 0.1 * torch.randn(shape, generator=g)
        sd[key] = v
    return sd


@pytest.fixture(scope="module")
def rgb_model() -> LANet:
    torch.manual_seed(0)
    return LANet(in_channels=3, num_classes=6).eval()


# --- shapes and sizes ------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 3, 96, 128), (2, 3, 80, 80), (1, 3, 160, 224), (1, 3, 224, 96)])
def test_output_shape(rgb_model, shape):
    with torch.no_grad():
        out = rgb_model(torch.randn(shape))
    assert out.shape == (shape[0], 6, *shape[2:])
    assert torch.isfinite(out).all()


def test_min_tile_rule(rgb_model):
    cfg = get_config("lanet")
    assert cfg.min_tile == 80 and cfg.size_multiple == 16 and cfg.min_tile % cfg.size_multiple == 0
    assert cfg.padded_size(1) == 80 and cfg.padded_size(81) == 96
    with torch.no_grad():
        rgb_model(torch.zeros(1, 3, cfg.min_tile, cfg.min_tile))  # smallest accepted works
        with pytest.raises(ValueError, match="pooling window"):
            rgb_model(torch.zeros(1, 3, cfg.min_tile - cfg.size_multiple, 128))


def test_encoder_is_output_stride_16(rgb_model):
    with torch.no_grad():
        high, low = rgb_model.forward_features(torch.randn(1, 3, 96, 128))
    assert high.shape == (1, 128, 6, 8) and low.shape == (1, 64, 24, 32)
    l4 = rgb_model.encoder.layer4[0]
    assert l4.conv2.stride == (1, 1) and l4.conv2.dilation == (1, 1)


# --- the authors' checkpoint ----------------------------------------------------------


def test_author_layout_maps_one_to_one():
    layout = author_lanet_layout(5, 7)
    mapped = [lanet_key_map(k) for k, _ in layout]
    dropped = [k for (k, _), m in zip(layout, mapped) if m is None]
    assert dropped == [k for k, _ in layout if k.startswith("FCN.classifier.")]
    assert len(dropped) == 9
    kept = [m for m in mapped if m is not None]
    assert len(kept) == len(set(kept))  # injective
    ours = LANet(5, 7).state_dict()
    assert set(kept) == set(ours)
    shapes = dict(layout)
    for (k, _), m in zip(layout, mapped):
        if m is not None:
            assert tuple(ours[m].shape) == shapes[k], k


def test_key_map_examples():
    assert lanet_key_map("FCN.layer0.0.weight") == "encoder.conv1.weight"
    assert lanet_key_map("FCN.layer0.1.running_var") == "encoder.bn1.running_var"
    assert lanet_key_map("FCN.layer4.0.downsample.1.weight") == "encoder.layer4.0.downsample.1.weight"
    assert lanet_key_map("PA0.3.SA.3.bias") == "low_pam.gate.3.bias"
    assert lanet_key_map("PA0.1.num_batches_tracked") == "low_reduce.1.num_batches_tracked"
    assert lanet_key_map("AE.SE.4.weight") == "aem.gate.3.weight"
    assert lanet_key_map("module.classifier1.weight") == "classifier_high.weight"
    assert lanet_key_map("FCN.classifier.3.weight") is None
    with pytest.raises(KeyError):
        lanet_key_map("decode_head.conv_seg.weight")


def _author_reference(sd: dict, c2: torch.Tensor, c5: torch.Tensor, size) -> torch.Tensor:
    """The authors' decoder, written functionally over their own key names."""

    def conv(x, p):
        return F.conv2d(x, sd[f"{p}.weight"], sd.get(f"{p}.bias"))

    def bn(x, p):
        return F.batch_norm(
            x,
            sd[f"{p}.running_mean"],
            sd[f"{p}.running_var"],
            sd[f"{p}.weight"],
            sd[f"{p}.bias"],
            training=False,
            eps=1e-5,
        )

    def up(x, s):
        return F.interpolate(x, size=s, mode="bilinear", align_corners=False)

    def patch_attention(x, p, win):
        h, w = x.shape[-2:]
        a = F.adaptive_avg_pool2d(x, (h // win, w // win))
        a = torch.sigmoid(conv(F.relu(bn(conv(a, f"{p}.0"), f"{p}.1")), f"{p}.3"))
        return x * up(a, (h, w)) + x

    x2 = F.relu(bn(conv(c5, "FCN.head.0"), "FCN.head.1"))
    x2 = patch_attention(x2, "PA2.SA", 4)
    x0 = F.relu(bn(conv(c2, "PA0.0"), "PA0.1"))
    x0 = patch_attention(x0, "PA0.3.SA", 20)
    a = F.avg_pool2d(x2, 7, stride=1, padding=3)  # count_include_pad=True, as nn.AvgPool2d
    a = torch.sigmoid(conv(F.relu(bn(conv(a, "AE.SE.1"), "AE.SE.2")), "AE.SE.4"))
    x0 = x0 * up(a, x0.shape[-2:])  # add_input=False
    return up(conv(x0, "classifier0"), size) + up(conv(x2, "classifier1"), size)


def test_author_checkpoint_loads_strictly_and_gives_same_logits():
    author = random_author_state_dict(5, 7)
    model = create_model("lanet", POTSDAM_CONFIG)
    model.load_state_dict(convert_lanet_state_dict(author), strict=True)
    assert model.encoder.conv1.weight.shape == (64, 5, 7, 7)
    assert torch.equal(model.aem.gate[0].weight, author["AE.SE.1.weight"])
    assert torch.equal(model.high_pam.gate[0].weight, author["PA2.SA.0.weight"])

    x = torch.randn(1, 5, 160, 224)  # PAM grids 2x2 (1/4) and 2x3 (1/16)
    with torch.no_grad():
        out = model(x)
        c2, _, _, c5 = model.encoder(x)
        ref = _author_reference(author, c2, c5, x.shape[-2:])
    assert out.shape == (1, 7, 160, 224)
    assert 1.0 < ref.abs().max() < 1e3  # the random checkpoint is in a meaningful range
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)


# --- bands, classes, registry ----------------------------------------------------------


def test_five_band_config_gives_five_channel_conv1():
    cfg = get_config("lanet", in_bands=POTSDAM_BANDS, mean=POTSDAM_MEAN, std=POTSDAM_STD)
    model = create_model("lanet", cfg)
    assert model.encoder.conv1.in_channels == 5
    assert model.encoder.conv1.weight.shape == (64, 5, 7, 7)
    with torch.no_grad():
        assert model(torch.randn(1, 5, 80, 96)).shape == (1, 6, 80, 96)


def test_registered_config():
    assert "lanet" in list_models()
    cfg = get_config("lanet")
    assert cfg.tile == 512 and 0 < cfg.overlap < cfg.tile
    assert cfg.in_bands == ("red", "green", "blue")
    assert cfg.mean == (85.8, 91.7, 84.9) and cfg.std == (35.8, 35.2, 36.5)
    assert cfg.input_range == 255.0 and cfg.num_classes == 6
    assert cfg.receptive_radius is None and cfg.paper == "LANet (TGRS 2020)"


# --- module semantics -----------------------------------------------------------------


def test_patch_attention_hand_computed():
    pam = PatchAttention(channels=1, reduction=1, window=2).eval()
    conv_a, bn, _, conv_b, _ = pam.gate
    with torch.no_grad():
        conv_a.weight.fill_(1.0), conv_a.bias.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # BN becomes the identity
        conv_b.weight.fill_(2.0), conv_b.bias.fill_(-1.0)
        x = torch.arange(16.0).reshape(1, 1, 4, 4)
        out = pam(x)
    # 2x2 patch means of arange(16) reshaped 4x4, then sigmoid(2 * relu(z) - 1)
    z = torch.tensor([[2.5, 4.5], [10.5, 12.5]])
    g = torch.sigmoid(2 * z - 1)
    # bilinear 2 -> 4, align_corners=False: rows are v0, .75v0+.25v1, .25v0+.75v1, v1
    m = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    attn = m @ g @ m.T
    torch.testing.assert_close(out[0, 0], x[0, 0] * attn + x[0, 0])


def test_attention_embedding_has_no_residual_and_zero_padded_pool():
    aem = AttentionEmbedding(high_channels=16, low_channels=2).eval()
    ones = torch.ones(1, 16, 7, 7)
    pooled = aem.pool(ones)
    assert pooled[0, 0, 0, 0].item() == pytest.approx(16 / 49)  # corner: 4x4 of 7x7 inside
    assert pooled[0, 0, 3, 3].item() == pytest.approx(1.0)
    with torch.no_grad():
        aem.gate[3].weight.zero_(), aem.gate[3].bias.fill_(0.3)  # constant gate sigmoid(0.3)
        low = torch.randn(1, 2, 28, 28)
        out = aem(torch.randn(1, 16, 7, 7), low)
    torch.testing.assert_close(out, low * torch.sigmoid(torch.tensor(0.3)))


def test_forward_returns_sum_of_branch_logits(rgb_model):
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        high, low = rgb_model.forward_branches(x)
        out = rgb_model(x)
    assert high.shape == low.shape == out.shape == (1, 6, 96, 128)
    torch.testing.assert_close(out, high + low)
    assert not torch.allclose(out, high) and not torch.allclose(out, low)


def test_low_branch_loss_does_not_train_high_branch(rgb_model):
    # the AEM reads detached high features (authors' code)
    rgb_model.zero_grad(set_to_none=True)
    try:
        _, low = rgb_model.forward_branches(torch.randn(1, 3, 80, 80))
        low.sum().backward()
        assert rgb_model.aem.gate[0].weight.grad is not None
        assert rgb_model.encoder.layer1[0].conv1.weight.grad is not None
        for module in (rgb_model.head, rgb_model.high_pam, rgb_model.encoder.layer4):
            assert all(p.grad is None for p in module.parameters())
    finally:
        rgb_model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("h,w,oh,ow", [(128, 128, 6, 6), (37, 53, 5, 7), (20, 20, 1, 1), (32, 24, 8, 6)])
def test_exportable_adaptive_pool_equals_torchs(h, w, oh, ow):
    import torch.nn.functional as F

    from rsinfer.models.lanet import adaptive_avg_pool2d

    x = torch.randn(2, 3, h, w)
    torch.testing.assert_close(
        adaptive_avg_pool2d(x, (oh, ow)), F.adaptive_avg_pool2d(x, (oh, ow)), atol=1e-5, rtol=1e-5
    )


def test_lanet_raw_state_dict_with_module_prefix_loads(tmp_path):
    from rsinfer.models import get_config
    from rsinfer.models.config import ISPRS_CLASSES, ISPRS_COLORS
    from rsinfer.models.lanet import POTSDAM_BANDS, POTSDAM_MEAN, POTSDAM_STD

    authors = {"module." + k: v for k, v in random_author_state_dict(5, 7).items()}
    torch.save(authors, tmp_path / "LANet.pth")
    config = get_config("lanet").replace(
        in_bands=POTSDAM_BANDS,
        mean=POTSDAM_MEAN,
        std=POTSDAM_STD,
        class_names=("invalid",) + ISPRS_CLASSES,
        class_colors=((0, 0, 0),) + ISPRS_COLORS,
    )
    model = create_model("lanet", config)
    load_checkpoint("lanet", model, tmp_path / "LANet.pth")
    assert torch.equal(model.state_dict()["head.0.weight"], authors["module.FCN.head.0.weight"])


def test_potsdam_checkpoint_shapes_give_its_bands_and_classes():
    """convert-weights reads 5 bands and 7 classes off the authors' Potsdam layout (meta tensors: shapes only)."""
    from rsinfer.weights import infer_shapes

    state = {k: torch.empty(s, device="meta") for k, s in author_lanet_layout(5, 7)}
    assert infer_shapes("lanet", get_config("lanet"), state) == {"bands": 5, "classes": 7}
    assert infer_shapes("lanet", POTSDAM_CONFIG, state) == {}
