"""GLNet as its authors evaluate it (mode 3, "G⇔L") on a 2×2-patch image, against a dense reference.

The reference below is written from the paper and the authors' evaluation procedure
(VITA-Group/GLNet ``helper.py`` ``Evaluator.eval_test``, ``collect_local_fm``,
``_crop_global``, ``_merge_local``), step by step on whole tensors: every global map is
sliced to the cells under the patch and resized; every patch's local maps are resized onto
its cells of a whole-image grid, summed, and divided by the patch count (a full-resolution
template, resized); the ``_ext`` pass runs once; each patch's ensemble reads its slice of that
pass's ps3; logits are nearest-upsampled to the patch. Only the network's layers are shared
with the model under test, never its crop/merge code.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasterio.transform import from_origin

from rsinfer.models import create_model, get_config
from rsinfer.models.config import GlobalLocalSpec
from rsinfer.models.glnet import GLNET, GLNet
from rsinfer.models.global_local import global_view_size

SMALL = dict(global_size=64, encoder_layers=(1, 1, 1, 1), fpn_width=32, smooth_width=16)
SIZE, PATCH = 112, 64  # a 112 px image, 2×2 patches of 64 px starting at 0 and 48 (16 px overlap)
STARTS = (0, SIZE - PATCH)


def loud(model: torch.nn.Module) -> torch.nn.Module:
    """Convs outside the encoders re-drawn with std 1/sqrt(fan_in): O(1) logits (the authors'
    N(0, 0.01) init would make every tolerance toothless)."""
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d) and "encoder" not in name:
            torch.nn.init.normal_(m.weight, std=m.weight[0].numel() ** -0.5)
    return model


def small_glnet(seed: int = 0, **kwargs) -> GLNet:
    torch.manual_seed(seed)
    return loud(GLNet(**{**SMALL, **kwargs})).eval()


def up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def crop(f: torch.Tensor, top_left: tuple[float, float], ratio: float) -> torch.Tensor:
    """``_crop_global``: cells ``round(top·H) : +round(H·ratio)`` of the (1, C, H, W) map."""
    h, w = f.shape[-2:]
    top, left = round(top_left[0] * h), round(top_left[1] * w)
    return f[:, :, top : top + round(h * ratio), left : left + round(w * ratio)]


def authors_mode3(model: GLNet, view: torch.Tensor, patches: torch.Tensor, size: int) -> torch.Tensor:
    """Logits (4, K, p, p) of the four patches of a ``size`` px image, ``patches`` in row-major order."""
    ratio = PATCH / size
    top_lefts = [(t / size, left / size) for t in STARTS for left in STARTS]
    c_g = model.global_encoder(view)[::-1]  # c5..c2
    fpn = model.global_fpn
    _, ps0_g, ps1_g, ps2_g, _ = (None, *fpn.pyramid(fpn.laterals(c_g)))
    globals_ = [c_g, list(ps0_g), list(ps1_g), list(ps2_g)]
    # pass 1: local maps of every patch, merged onto the global grids
    template = torch.zeros(1, 1, size, size)
    for t, left in [(t, left) for t in STARTS for left in STARTS]:
        template[:, :, t : t + PATCH, left : left + PATCH] += 1
    merged = [[torch.zeros_like(g) for g in kind] for kind in globals_]
    local_ps3 = []
    for i in range(4):
        x = patches[i : i + 1]
        c_l = model.local_encoder(x)[::-1]
        crops = [[up(crop(kind[k], top_lefts[i], ratio), c_l[k].shape[-2:]) for kind in globals_] for k in range(4)]
        ps0, ps1, ps2, ps3 = model.local_fpn(c_l, crops)
        local_ps3.append(ps3)
        for kind, local in zip(merged, (c_l, ps0, ps1, ps2)):
            for k in range(4):
                h, w = kind[k].shape[-2:]
                top, left = round(h * top_lefts[i][0]), round(w * top_lefts[i][1])
                rows, cols = round(h * ratio), round(w * ratio)
                kind[k][:, :, top : top + rows, left : left + cols] += up(local[k], (rows, cols))
    for kind in merged:
        for k in range(4):
            kind[k] /= up(template, kind[k].shape[-2:])
    # the l2g model's global branch with the merged local maps, once
    ps3_g = fpn.forward_l2g(c_g, merged)
    # pass 2: per patch, the ensemble of its local ps3 and its crop of ps3_g
    out = []
    for i in range(4):
        fl = local_ps3[i]
        fg = up(crop(ps3_g, top_lefts[i], ratio), fl.shape[-2:])
        logits = model.ensemble_conv(torch.cat((fl, fg), 1))
        out.append(F.interpolate(logits, size=(PATCH, PATCH), mode="nearest"))
    return torch.cat(out)


def boxes_of(size: int) -> torch.Tensor:
    return torch.tensor(
        [[t / size, left / size, (t + PATCH) / size, (left + PATCH) / size] for t in STARTS for left in STARTS]
    )


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).abs().max() / ref.abs().max())


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(10)
    image = torch.rand(1, 3, SIZE, SIZE)
    patches = torch.cat([image[:, :, t : t + PATCH, left : left + PATCH] for t in STARTS for left in STARTS])
    view = F.interpolate(image, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
    return image, patches, view


def test_patches_equal_the_authors_evaluation(case):
    _, patches, view = case
    model = small_glnet(1)
    assert model.procedure == "authors"
    with torch.inference_mode():
        ref = authors_mode3(model, view, patches, SIZE)
        context = model.forward_global(view)
        assert model.needs_region_pass(context)
        # pass 1 in two batches, in the order the pipeline reads them
        model.fuse_region(context, [(patches[:3], boxes_of(SIZE)[:3]), (patches[3:], boxes_of(SIZE)[3:])], (SIZE, SIZE))
        assert not model.needs_region_pass(context)
        got = model.predict_patches(patches, context, boxes_of(SIZE))
        one_by_one = torch.cat(
            [model.predict_patches(patches[i : i + 1], context, boxes_of(SIZE)[i : i + 1]) for i in range(4)]
        )
        streaming = small_glnet(1, procedure="streaming", upsample="nearest")
        other = streaming.predict_patches(patches, streaming.forward_global(view), boxes_of(SIZE))
    assert ref.abs().max() > 0.1
    assert relative_error(got, ref) < 1e-4
    assert relative_error(one_by_one, ref) < 1e-4
    # the streaming variant is another procedure: not within any tolerance of the authors'
    assert relative_error(other, ref) > 1e-2


def test_predicting_before_the_region_pass_is_refused(case):
    _, patches, view = case
    model = small_glnet(2)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="fuse_region"):
        model.predict_patches(patches[:1], model.forward_global(view), boxes_of(SIZE)[:1])


def test_global_size_comes_from_the_config():
    config = GLNET.replace(global_size=508)
    assert config.global_local == GlobalLocalSpec(global_size=508, region=4096, procedure="authors")
    small = {k: v for k, v in SMALL.items() if k != "global_size"}
    assert create_model("glnet", config, **small).global_size == 508
    assert create_model("glnet", GLNET.replace(procedure="streaming"), **small).procedure == "streaming"
    with pytest.raises(ValueError, match="procedure"):
        GLNET.replace(procedure="fast")

    with pytest.raises(ValueError, match="global-local models only"):
        get_config("lanet").replace(global_size=508)


def test_the_pipeline_runs_the_authors_procedure(tmp_path):
    """Through GlobalLocalPredictor: a 112 px raster, 64 px tiles (a 2×2 grid), one region."""
    from rsinfer.backends import TorchBackend
    from rsinfer.batching import Batch
    from rsinfer.global_context import read_global_view
    from rsinfer.io.reader import TileData, TileReader
    from rsinfer.io.source import inspect_raster
    from rsinfer.loading import LoadedModel
    from rsinfer.predictors import make_predictor
    from rsinfer.tiling import TileGrid

    rng = np.random.default_rng(3)
    path = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8", crs="EPSG:32633")
    with rasterio.open(path, "w", transform=from_origin(500000, 0, 1, 1), **profile) as dst:
        dst.write(rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8))
    config = GLNET.replace(tile=PATCH, overlap=PATCH - STARTS[1], global_size=64, min_tile=32)
    model = small_glnet(4)
    info = inspect_raster(str(path), config.in_bands, None, config.input_range, None)
    backend = TorchBackend(model, config, torch.device("cpu"), value_scale=info.value_scale)
    grid = TileGrid(SIZE, SIZE, PATCH, config.overlap)
    assert [t.rows.start for t in grid][::2] == list(STARTS)
    predictor = make_predictor(LoadedModel(config, model, "random"), backend, info, grid, "global-local")
    reader = TileReader(info, workers=1)
    tiles = [reader.read(t) for t in grid]
    reader.close()
    # the pipeline, in batches of 3 and 1
    probs = torch.cat(
        [
            predictor(Batch(part, np.stack([t.data for t in part]), np.stack([t.valid for t in part])))
            for part in (tiles[:3], tiles[3:])
        ]
    )
    view = read_global_view(info, *predictor.plan.view((0, 0)), 64)
    assert view.data.shape[-2:] == global_view_size(SIZE, SIZE, 64)
    with torch.inference_mode():
        x = backend.normalize(np.stack([t.data for t in tiles]), np.stack([t.valid for t in tiles]))
        ref = authors_mode3(model, backend.normalize(view.data[None], view.valid[None]), x, SIZE).softmax(1)
    assert isinstance(tiles[0], TileData)
    torch.testing.assert_close(probs, ref, atol=1e-5, rtol=0)
