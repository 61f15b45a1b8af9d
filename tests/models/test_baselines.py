"""The Table 1 baselines (UNet, ICNet, PSPNet, SegNet, DeepLabv3+, FCN-8s): shapes, ONNX parity,
SegNet unpooling, exportable pyramid pooling, parameter counts. Small inputs only; 512² only on meta."""

import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rsinfer.models import baselines, create_model, get_config
from rsinfer.models.complexity import model_complexity

NAMES = ("unet", "icnet", "pspnet", "segnet", "deeplabv3plus", "fcn8s")


@pytest.mark.parametrize("name", NAMES)
def test_logits_at_input_size_for_two_sizes(name):
    c = get_config(name)
    assert (c.tile, c.overlap, c.num_classes, c.num_bands) == (512, 64, 6, 3)
    torch.manual_seed(0)
    model = create_model(name)
    for h, w in ((64, 96), (96, 32)):  # non-square, multiples of 32 (the largest size_multiple)
        assert h % c.size_multiple == 0 and w % c.size_multiple == 0
        with torch.inference_mode():
            out = model(torch.randn(1, 3, h, w))
        assert out.shape == (1, 6, h, w)
        assert torch.isfinite(out).all()


@pytest.mark.slow
def test_each_exports_to_onnx_and_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    for name in NAMES:
        torch.manual_seed(0)
        # FCN-8s: fc6/fc7 narrowed from 4096 only to keep the test quick; the ops are the same.
        model = create_model(name, **({"fc_channels": 256} if name == "fcn8s" else {}))
        x = torch.randn(1, 3, 32, 64)  # 1/8 map of PSPNet is 4×8: pyramid bins 3 and 6 do not divide it
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                buf,
                dynamo=False,
                opset_version=17,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
        xb = torch.randn(2, 3, 32, 64)  # another batch size through the dynamic axis
        got = sess.run(None, {"input": xb.numpy()})[0]
        with torch.inference_mode():
            ref = model(xb).numpy()
        assert got.shape == ref.shape == (2, 6, 32, 64), name
        assert np.abs(got - ref).max() <= 1e-4, name


def test_segnet_unpooling_puts_values_back_at_the_argmax_positions():
    x = torch.tensor([[1.0, 5.0, 0.0, 2.0], [3.0, 2.0, 7.0, 1.0], [0.0, 0.0, 1.0, 1.0], [9.0, 0.0, 1.0, 4.0]])[
        None, None
    ]
    pooled, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    assert pooled.flatten().tolist() == [5.0, 7.0, 9.0, 4.0]
    out = baselines.max_unpool2d(pooled * 10, idx, (4, 4))
    expected = torch.zeros(4, 4)
    expected[0, 1], expected[1, 2], expected[3, 0], expected[3, 3] = 50.0, 70.0, 90.0, 40.0
    assert torch.equal(out[0, 0], expected)
    # and equals torch's own unpooling (which has no ONNX export) on a random batch
    y = torch.randn(2, 3, 8, 12)
    p, i = F.max_pool2d(y, 2, 2, return_indices=True)
    assert torch.equal(baselines.max_unpool2d(p, i, (8, 12)), F.max_unpool2d(p, i, 2, 2))


def test_segnet_decoder_uses_the_encoder_pool_indices(monkeypatch):
    calls = []
    real = baselines.max_unpool2d

    def spy(x, idx, size):
        calls.append((tuple(idx.shape), tuple(size)))
        return real(x, idx, size)

    monkeypatch.setattr(baselines, "max_unpool2d", spy)
    with torch.inference_mode():
        create_model("segnet")(torch.randn(1, 3, 64, 32))
    assert calls == [
        ((1, 512, 2, 1), (4, 2)),
        ((1, 512, 4, 2), (8, 4)),
        ((1, 256, 8, 4), (16, 8)),
        ((1, 128, 16, 8), (32, 16)),
        ((1, 64, 32, 16), (64, 32)),
    ]


def test_pspnet_pyramid_pooling_is_the_exportable_form_and_equals_adaptive_pooling(monkeypatch):
    x = torch.randn(2, 5, 8, 12)  # 8 and 12 are not multiples of 3 / 6 (8)
    expected = [F.adaptive_avg_pool2d(x, b) for b in baselines.PSP_BINS]
    for got, want in zip(baselines.pyramid_pooled(x, baselines.PSP_BINS), expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # PSPNet's module pools through lanet.adaptive_avg_pool2d (MatMuls in ONNX), one call per bin
    seen = []
    real = baselines.adaptive_avg_pool2d
    monkeypatch.setattr(baselines, "adaptive_avg_pool2d", lambda t, size: seen.append(tuple(size)) or real(t, size))
    from rsinfer.models.lanet import adaptive_avg_pool2d

    assert real is adaptive_avg_pool2d
    ppm = baselines.PyramidPooling(16).eval()
    with torch.inference_mode():
        out = ppm(torch.randn(1, 16, 8, 12))
    assert seen == [(1, 1), (2, 2), (3, 3), (6, 6)]
    assert out.shape == (1, 16 + 4 * 4, 8, 12)


def test_fcn8s_upsamplers_start_as_bilinear_interpolation():
    model = create_model("fcn8s", fc_channels=64)
    x = torch.randn(1, 6, 8, 8)
    with torch.inference_mode():
        got = model.upscore2(x)
        want = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert got.shape == want.shape == (1, 6, 16, 16)
    # equal away from the border (zero padding there vs edge clamping in interpolate)
    torch.testing.assert_close(got[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1])


# Loose ranges around the usual figures (our builds: 6 classes, 3 bands):
#   UNet 31.0 M: the widths 64..1024 with BN and transposed-conv up give ~31.0 M in common ports.
#   ICNet ~24.6 M: ResNet-50 without fc is 23.51 M, plus ~1.1 M (sub-1 convs, 2048->256, two CFFs).
#   PSPNet 46-49 M: ResNet-50 23.5 M + PPM 4.2 M + 3x3 4096->512 18.9 M = 46.6 M; 49 M with an aux head.
#   SegNet ~29.4 M: the paper's 29.46 M (VGG16 encoder 14.7 M mirrored by the decoder).
#   DeepLabv3+ ~40 M: ResNet-50 23.5 M + ASPP 15.1 M + decoder 1.3 M.
#   FCN-8s ~134 M: VGG16's 138.4 M minus fc8 (4.1 M), fc6/fc7 as convs, plus tiny score layers.
PARAM_RANGES_M = {
    "unet": (30.5, 31.5),
    "icnet": (24.0, 25.5),
    "pspnet": (46.0, 49.0),
    "segnet": (29.0, 30.0),
    "deeplabv3plus": (39.0, 41.5),
    "fcn8s": (133.5, 135.0),
}


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_and_meta_complexity_at_512(name):
    cx = model_complexity(name)  # meta device, 512² tile
    lo, hi = PARAM_RANGES_M[name]
    assert lo * 1e6 <= cx.params <= hi * 1e6
    params, gflops = baselines.COMPLEXITY_512[name]  # the figures the docstrings quote
    assert cx.params == params
    assert cx.flops == pytest.approx(gflops * 1e9, rel=1e-3)
