"""The host side of the model call: labels without softmax, fused normalize+pad, fp16 fallback."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rsinfer.backends.torch_backend import PrecisionWarning, TorchBackend
from rsinfer.models import get_config
from rsinfer.stitch import RowBandStitcher, class_labels
from rsinfer.tiling import TileGrid


def test_class_labels_is_argmax_with_its_ties_and_nans():
    x = torch.randint(0, 3, (2, 6, 40, 50)).float()  # many ties
    x[0, 2, :5] = float("nan")
    assert torch.equal(class_labels(x, 1), x.argmax(1).to(torch.uint8))
    part = x[1][:, 3:30, 7:41]  # a strided crop, as the stitcher takes
    assert torch.equal(class_labels(part), part.argmax(0).to(torch.uint8))


@pytest.mark.parametrize(
    "scores",
    [
        torch.randn(3, 6, 33, 47),
        torch.randn(3, 1, 33, 47).expand(-1, 6, -1, -1),  # a broadcast view: every class ties
        torch.randn(2, 40, 9, 11),  # more classes than a label map usually has
        torch.randn(2, 1, 9, 11),  # one class
        torch.tensor([-float("inf"), -float("inf"), -1e30]).view(1, 3, 1, 1),
        torch.tensor([0.0, -0.0, 0.0]).view(1, 3, 1, 1),
        torch.randn(2, 6, 9, 11).half(),
    ],
)
def test_class_labels_on_the_cpu_equals_argmax_for_any_scores(scores):
    assert torch.equal(class_labels(scores, 1), scores.argmax(1).to(torch.uint8))
    assert torch.equal(class_labels(scores[0]), scores[0].argmax(0).to(torch.uint8))


def _backend(model: nn.Module, precision="fp32", size_multiple=32) -> TorchBackend:
    config = get_config("simple-fcn").replace(size_multiple=size_multiple)
    return TorchBackend(model, config, torch.device("cpu"), value_scale=1.3, precision=precision)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_normalize_padded_is_pad_of_normalize_and_leaves_the_batch_alone(dtype):
    backend = _backend(nn.Identity())
    rng = np.random.default_rng(0)
    data = (rng.random((2, 3, 50, 70)) * 200).astype(dtype)
    valid = rng.random((2, 50, 70)) > 0.2
    before = data.copy()
    old = (torch.from_numpy(data).float() * backend._a + backend._b) * torch.from_numpy(valid).unsqueeze(1)
    old = F.pad(old, (0, 96 - 70, 0, 64 - 50), mode="replicate")
    new = backend.normalize_padded(data, valid)
    assert torch.equal(old, new) and torch.equal(torch.signbit(old), torch.signbit(new))
    assert np.array_equal(data, before)


def test_labels_are_the_argmax_of_the_probabilities_and_stitch_the_same():
    torch.manual_seed(0)
    model = nn.Conv2d(3, 6, 3, padding=1)
    backend = _backend(model, size_multiple=1)
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    valid = np.ones((2, 64, 64), bool)
    valid[1, :10] = False
    probs = backend.predict(data, valid)
    labels = backend.predict(data, valid, labels=True)
    assert labels.dtype == torch.uint8 and labels.shape == (2, 64, 64)
    assert torch.equal(labels, probs.argmax(1).to(torch.uint8))
    grid = TileGrid(64, 112, 64, 16)
    outs = []
    for scores in (probs, labels):
        st = RowBandStitcher(grid, 6, "crop")
        rows = [r for i, t in enumerate(grid) for r in st.add(t, scores[i], torch.from_numpy(valid[i]))]
        outs.append(np.concatenate([r.labels for r in rows]))
    assert np.array_equal(*outs)


class _OverflowsInHalf(nn.Module):
    """Finite logits in fp32; +inf where autocast is on (as fp16 attention overflowing)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        if torch.is_autocast_enabled(x.device.type):
            y = y.clone()
            y[:, 0, 0, 0] = float("inf")
        return y


def test_half_precision_non_finite_logits_fall_back_to_fp32_with_one_warning():
    torch.manual_seed(0)
    model = _OverflowsInHalf()
    data = np.random.default_rng(2).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    valid = np.ones((2, 32, 32), bool)
    reference = _backend(model, size_multiple=1).predict(data, valid)
    backend = _backend(model, precision="bf16", size_multiple=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = backend.predict(data, valid)
        second = backend.predict(data, valid)
    assert [w.category for w in caught] == [PrecisionWarning]
    assert backend.fp32_fallbacks == 2
    assert torch.isfinite(first).all() and torch.equal(first, reference) and torch.equal(second, reference)


def test_tensorrt_gets_a_batch_profile_and_an_engine_cache(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from rsinfer.backends.onnx_backend import provider_options, trt_profile_shapes
    from rsinfer.export import export_onnx
    from rsinfer.models import create_model

    monkeypatch.delenv("RSINFER_TRT_CACHE", raising=False)
    config = get_config("simple-fcn").replace(tile=32, overlap=4)
    path = tmp_path / "m.onnx"
    export_onnx(create_model("simple-fcn", config).eval(), config, 32, str(path))
    assert trt_profile_shapes(path, max_batch=16, opt_batch=4, spatial=32) == {
        "trt_profile_min_shapes": "input:1x3x32x32",
        "trt_profile_opt_shapes": "input:4x3x32x32",
        "trt_profile_max_shapes": "input:16x3x32x32",
    }
    opts = provider_options(path, "TensorrtExecutionProvider", torch.device("cuda", 0), 32)
    assert opts["trt_engine_cache_enable"] == "True" and opts["trt_engine_cache_path"] == str(tmp_path / "m.trt")
    assert (tmp_path / "m.trt").is_dir() and "trt_profile_max_shapes" in opts
    assert provider_options(path, "CPUExecutionProvider", torch.device("cpu")) == {}
