"""Checks every registered model passes (in the spirit of smp's shared model tests)."""

import pytest
import torch

from rsinfer.backends import TorchBackend
from rsinfer.models import create_model, get_config, list_models
from rsinfer.models.complexity import model_complexity

MODELS = list_models()


def small_side(config) -> int:
    """The smallest tile the model takes, rounded to its size rule, plus a bit so it is not square."""
    return config.padded_size(max(config.min_tile, 64))


def test_registry_lists_the_models():
    assert "simple-fcn" in MODELS and "lanet" in MODELS
    with pytest.raises(KeyError, match="unknown model"):
        get_config("no-such-model")


@pytest.mark.parametrize("name", MODELS)
def test_config_is_consistent(name):
    c = get_config(name)
    assert c.name == name
    assert len(c.mean) == len(c.std) == c.num_bands
    assert len(c.class_colors) == c.num_classes
    assert c.tile % c.size_multiple == 0 and c.tile >= c.min_tile
    assert 0 <= c.overlap < c.tile


@pytest.mark.parametrize("name", MODELS)
def test_forward_gives_logits_at_input_size(name):
    c = get_config(name)
    torch.manual_seed(0)
    model = create_model(name, c)
    h, w = small_side(c), small_side(c) + c.size_multiple
    with torch.inference_mode():
        out = model(torch.randn(2, c.num_bands, h, w))
    assert out.shape == (2, c.num_classes, h, w)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_backend_pads_sizes_off_the_size_rule_and_crops_back(name):
    c = get_config(name)
    torch.manual_seed(0)
    backend = TorchBackend(create_model(name, c), c, torch.device("cpu"))
    h, w = small_side(c) + 3, small_side(c) + 5  # not multiples of anything
    data = torch.randint(0, 255, (1, c.num_bands, h, w), dtype=torch.uint8).numpy()
    probs = backend.predict(data, (data[:, 0] >= 0))
    assert probs.shape == (1, c.num_classes, h, w)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, h, w))


@pytest.mark.parametrize("name", MODELS)
def test_complexity_counts_without_real_weights(name):
    cx = model_complexity(name)
    real = sum(p.numel() for p in create_model(name).parameters())
    assert cx.params == real
    assert cx.flops > 0


@pytest.mark.parametrize("name", MODELS)
def test_segment_runs_end_to_end_through_the_pipeline(name, make_raster, tmp_path):
    import numpy as np
    import rasterio

    from rsinfer.pipeline import SegmentOptions, run_segment

    c = get_config(name)
    tile = c.padded_size(max(c.min_tile, 128))
    data = np.random.default_rng(0).integers(0, 255, (c.num_bands, tile + 70, tile + 31), dtype=np.uint8)
    src = make_raster(data)
    report = run_segment(
        SegmentOptions(
            input=str(src),
            output=str(tmp_path / "l.tif"),
            model=name,
            device="cpu",
            tile=tile,
            overlap=min(c.overlap, tile // 4),
            batch_size=2,
        )
    )
    assert report.tiles == 4 and report.tiles_predicted == 4
    with rasterio.open(tmp_path / "l.tif") as ds:
        labels = ds.read(1)
    assert labels.shape == data.shape[1:] and labels.max() < c.num_classes
