"""ResNet-50 encoder: torchvision / mmseg V1c key layouts, strides and dilations.

torchvision is not installed, so its ResNet-50 layout is written out here from its
structure: 7×7 conv1 + bn1, stages of (3, 4, 6, 3) Bottlenecks (conv1/bn1 1×1, conv2/bn2
3×3, conv3/bn3 1×1, expansion 4), a (1×1 conv, BN) ``downsample`` on each stage's first
block, and ``fc`` (left out here).
"""

from __future__ import annotations

import pytest
import torch

from rsinfer.models.resnet import ResNet, resnet50, resnet50_v1c

BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.{s}", () if s == "num_batches_tracked" else (c,)) for s in BN_SUFFIXES]


def torchvision_resnet50_layout(in_channels: int = 3) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of torchvision ``resnet50().state_dict()`` without ``fc.*``, in order."""
    keys = [("conv1.weight", (64, in_channels, 7, 7)), *_bn("bn1", 64)]
    inplanes = 64
    for stage, (blocks, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), 1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            keys += [
                (f"{p}.conv1.weight", (planes, inplanes, 1, 1)),
                *_bn(f"{p}.bn1", planes),
                (f"{p}.conv2.weight", (planes, planes, 3, 3)),
                *_bn(f"{p}.bn2", planes),
                (f"{p}.conv3.weight", (planes * 4, planes, 1, 1)),
                *_bn(f"{p}.bn3", planes * 4),
            ]
            if b == 0:
                keys += [
                    (f"{p}.downsample.0.weight", (planes * 4, inplanes, 1, 1)),
                    *_bn(f"{p}.downsample.1", planes * 4),
                ]
            inplanes = planes * 4
    return keys


def test_torchvision_layout_count():
    # 6 stem tensors + 16 blocks × 18 + 4 downsamples × 6 = 318
    assert len(torchvision_resnet50_layout()) == 318


def test_resnet50_keys_and_shapes_match_torchvision():
    sd = resnet50().state_dict()
    expected = torchvision_resnet50_layout()
    assert list(sd) == [k for k, _ in expected]
    assert {k: tuple(v.shape) for k, v in sd.items()} == dict(expected)
    assert not any(k.startswith("fc.") for k in sd)


def test_resnet50_param_count():
    # torchvision resnet50: 25,557,032 parameters, of which fc is 2048*1000 + 1000
    n = sum(p.numel() for p in resnet50().parameters())
    assert n == 25_557_032 - 2_049_000


def test_torchvision_checkpoint_loads_strictly():
    ckpt = {k: torch.randn(s) if s else torch.tensor(0) for k, s in torchvision_resnet50_layout()}
    model = resnet50()
    model.load_state_dict(ckpt, strict=True)
    assert torch.equal(model.layer3[5].conv2.weight, ckpt["layer3.5.conv2.weight"])


def test_in_channels_changes_only_conv1():
    sd = resnet50(in_channels=5).state_dict()
    assert sd["conv1.weight"].shape == (64, 5, 7, 7)
    assert sd["layer1.0.conv1.weight"].shape == (64, 64, 1, 1)


def test_v1c_stem_keys():
    sd = resnet50_v1c().state_dict()
    stem = [k for k in sd if k.startswith("stem.")]
    expected = []
    for conv, bn, cin, cout in ((0, 1, 3, 32), (3, 4, 32, 32), (6, 7, 32, 64)):
        expected += [(f"stem.{conv}.weight", (cout, cin, 3, 3)), *_bn(f"stem.{bn}", cout)]
    assert stem == [k for k, _ in expected]
    assert {k: tuple(sd[k].shape) for k in stem} == dict(expected)
    assert "conv1.weight" not in sd and "bn1.weight" not in sd
    body = [k for k, _ in torchvision_resnet50_layout()][6:]  # same residual stages
    assert [k for k in sd if not k.startswith("stem.")] == body
    assert len(sd) == 318 - 6 + 18


def test_v1c_stem_strides():
    m = resnet50_v1c()
    assert [m.stem[i].stride for i in (0, 3, 6)] == [(2, 2), (1, 1), (1, 1)]
    assert m.forward_stem(torch.zeros(1, 3, 64, 96)).shape == (1, 64, 16, 24)


@pytest.mark.parametrize("factory", [resnet50, resnet50_v1c])
def test_default_output_strides(factory):
    feats = factory().eval()(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, 256, 16, 24), (1, 512, 8, 12), (1, 1024, 4, 6), (1, 2048, 2, 3)]


def test_lanet_strides_give_os16():
    # LANet / FCN_16s: layer4 stride 1, no dilation
    m = resnet50(strides=(1, 2, 2, 1)).eval()
    c2, c3, c4, c5 = m(torch.randn(1, 3, 96, 128))
    assert c4.shape[-2:] == c5.shape[-2:] == (6, 8)
    assert c2.shape[-2:] == (24, 32)
    assert m.layer4[0].conv2.stride == (1, 1) and m.layer4[0].conv2.dilation == (1, 1)
    assert m.layer4[0].downsample[0].stride == (1, 1)  # kept for the 1024->2048 channels


def test_os8_dilated_shapes():
    m = resnet50_v1c(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True).eval()
    feats = m(torch.randn(1, 3, 64, 96))
    assert [f.shape[-2:] for f in feats] == [(16, 24), (8, 12), (8, 12), (8, 12)]


def test_dilation_on_3x3_convs_only():
    m = resnet50(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4))
    for stage, d in ((m.layer3, 2), (m.layer4, 4)):
        for block in stage:
            assert block.conv2.dilation == (d, d) and block.conv2.padding == (d, d)
            assert block.conv1.dilation == (1, 1) and block.conv3.dilation == (1, 1)
    assert m.layer2[0].conv2.dilation == (1, 1) and m.layer2[0].conv2.stride == (2, 2)


def test_contract_dilation_first_block_only():
    # mmseg ResLayer: first block of a stage with dilation d > 1 uses d // 2
    m = resnet50_v1c(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True)
    assert m.layer3[0].conv2.dilation == (1, 1) and m.layer3[0].conv2.padding == (1, 1)
    assert all(b.conv2.dilation == (2, 2) and b.conv2.padding == (2, 2) for b in m.layer3[1:])
    assert m.layer4[0].conv2.dilation == (2, 2) and m.layer4[0].conv2.padding == (2, 2)
    assert all(b.conv2.dilation == (4, 4) for b in m.layer4[1:])
    # stages with d == 1 are untouched
    assert m.layer1[0].conv2.dilation == (1, 1) and m.layer2[0].conv2.dilation == (1, 1)


def test_bad_stage_arguments():
    with pytest.raises(ValueError):
        ResNet(strides=(1, 2, 2))


def test_resnet18_layout_and_param_count():
    """ResNet-18 (basic blocks) at width 64 is torchvision's resnet18 minus fc: 11,176,512 params."""
    from rsinfer.models.resnet import resnet18_lite

    net = resnet18_lite(width=64)
    assert sum(p.numel() for p in net.parameters()) == 11_176_512
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["layer1.0.conv2.weight"] == (64, 64, 3, 3)
    assert "layer1.0.downsample.0.weight" not in shapes  # no projection where nothing changes
    assert shapes["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert not any(".conv3." in k for k in shapes)


@pytest.mark.parametrize("width", [32, 64])
def test_width_scales_every_stage(width):
    from rsinfer.models.resnet import resnet18_lite

    net = resnet18_lite(width=width).eval()
    assert net.out_channels == tuple(width * m for m in (1, 2, 4, 8))
    with torch.inference_mode():
        feats = net(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (c, 64 // s, 64 // s) for c, s in zip(net.out_channels, (4, 8, 16, 32))
    ]
    assert resnet50().out_channels == (256, 512, 1024, 2048)
