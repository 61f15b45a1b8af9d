"""What every registered model must do (in the spirit of smp's shared model tests), one build per model."""

import numpy as np
import pytest
import rasterio
import torch

from rsinfer.backends import TorchBackend
from rsinfer.models import get_config, list_models
from rsinfer.models.complexity import model_complexity
from rsinfer.pipeline import SegmentOptions, run_segment


def test_registry_lists_the_models():
    assert "simple-fcn" in list_models() and "lanet" in list_models()
    with pytest.raises(KeyError, match="unknown model"):
        get_config("no-such-model")


def test_config_is_consistent(built_model):
    c = built_model.config
    assert c.name == built_model.name
    assert len(c.mean) == len(c.std) == c.num_bands
    assert len(c.class_colors) == c.num_classes
    assert c.tile % c.size_multiple == 0 and c.tile >= c.min_tile
    assert 0 <= c.overlap < c.tile
    assert c.is_global_local == (c.global_local is not None)


def test_forward_gives_logits_at_input_size(built_model):
    c, side = built_model.config, built_model.small_side
    h, w = side, side + c.size_multiple
    with torch.inference_mode():
        out = built_model.module(torch.randn(2, c.num_bands, h, w, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (2, c.num_classes, h, w)
    assert torch.isfinite(out).all()


def test_backend_pads_sizes_off_the_size_rule_and_crops_back(built_model):
    c = built_model.config
    backend = TorchBackend(built_model.module, c, torch.device("cpu"))
    h, w = built_model.small_side + 3, built_model.small_side + 5  # not multiples of anything
    data = np.random.default_rng(0).integers(0, 255, (1, c.num_bands, h, w), dtype=np.uint8)
    probs = backend.predict(data, data[:, 0] >= 0)
    assert probs.shape == (1, c.num_classes, h, w)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, h, w))


def test_complexity_counts_the_models_parameters(built_model):
    cx = model_complexity(built_model.name)
    assert cx.params == sum(p.numel() for p in built_model.module.parameters())
    assert cx.flops > 0


# A model with a -lite variant (the same classes at smaller widths) runs end to end as that
# variant: the full networks took about 13 s of the suite here, for no code path of their own.
PIPELINE_MODELS = [n for n in list_models() if f"{n}-lite" not in list_models()]


@pytest.mark.parametrize("name", PIPELINE_MODELS)
def test_segment_runs_end_to_end_through_the_pipeline(name, make_raster, tmp_path):
    c = get_config(name)
    tile = c.padded_size(max(c.min_tile, 128))
    data = np.random.default_rng(0).integers(0, 255, (c.num_bands, tile + 70, tile + 31), dtype=np.uint8)
    src = make_raster(data)
    report = run_segment(
        SegmentOptions(
            input=str(src),
            output=str(tmp_path / "l.tif"),
            model=name,
            weights="random",
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
