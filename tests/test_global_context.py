"""Global-local inference in the pipeline: regions, decimated global views, patch footprints."""

import numpy as np
import pytest
import torch

from rsinfer.global_context import RegionPlan, read_global_view
from rsinfer.io.source import inspect_raster
from rsinfer.models.config import GlobalLocalSpec, ModelConfig
from rsinfer.models.global_local import GlobalLocalModel, crop_global
from rsinfer.models.registry import _REGISTRY, register_model
from rsinfer.pipeline import SegmentOptions, run_segment
from rsinfer.tiling import TileGrid


class RampProbe(GlobalLocalModel):
    """Logits [band 0, 0]: in global mode read from the global view, in patch mode from the patch,
    in global-local mode their difference (zero where crops line up with patches)."""

    global_size = 64

    def __init__(self):
        super().__init__()
        self.views = 0

    def forward_global(self, image):
        self.views += 1
        return {"image": image}

    def forward_global_logits(self, context):
        return self._logits(context["image"][:, :1])

    def forward_patch(self, patches):
        return self._logits(patches[:, :1])

    def forward_local(self, patches, context, boxes):
        crop = crop_global(context["image"][:, :1], boxes, tuple(patches.shape[-2:]))
        return self._logits(patches[:, :1] - crop)

    @staticmethod
    def _logits(v):
        return torch.cat([v, torch.zeros_like(v)], 1)


PROBE = ModelConfig(
    name="test-ramp-probe",
    tile=96,
    overlap=16,
    mean=(0.0,) * 3,
    std=(1.0,) * 3,
    input_range=1.0,
    class_names=("a", "b"),
    class_colors=((0, 0, 0), (1, 1, 1)),
    global_local=GlobalLocalSpec(global_size=64, region=300),
)


@pytest.fixture(scope="module", autouse=True)
def probe_model():
    register_model(PROBE)(lambda config: RampProbe())
    yield
    del _REGISTRY[PROBE.name]


@pytest.fixture
def ramp(make_raster):
    """A non-square float raster whose value is a smooth ramp of the pixel position."""
    h, w = 500, 730
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    v = (xx / w - 0.5) * 8 + (yy / h - 0.5) * 4
    return make_raster(np.stack([v, v, v]).astype(np.float32)), v


def run(path, tmp_path, mode, name):
    report = run_segment(
        SegmentOptions(
            input=str(path),
            output=str(tmp_path / name),
            model=PROBE.name,
            device="cpu",
            mode=mode,
            probs=True,
            blend="crop",
        )
    )
    import zarr

    probs = zarr.open_group(str(tmp_path / name), mode="r")["probs"][0] / 255.0
    return report, probs


def test_regions_cover_their_tiles_and_boxes_stay_inside_views():
    grid = TileGrid(1000, 2600, 256, 32)
    plan = RegionPlan(grid, 1024)
    assert len(plan.y.views) == 1 and len(plan.x.views) == 3
    for t in grid:
        rows, cols = plan.view(plan.region_of(t))
        assert rows.start <= t.rows.start and t.rows.stop <= rows.stop
        assert cols.start <= t.cols.start and t.cols.stop <= cols.stop
        y0, x0, y1, x1 = plan.box(t)
        assert 0 <= y0 < y1 <= 1 and 0 <= x0 < x1 <= 1
    small = RegionPlan(TileGrid(300, 200, 256, 32), 1024)
    assert small.view((0, 0))[0].size == 300 and small.view((0, 0))[1].size == 200


def test_global_view_is_a_decimated_read_of_the_region(ramp):
    path, v = ramp
    info = inspect_raster(path, ("red", "green", "blue"), value_scale=1.0)
    from rsinfer.tiling import Span

    view = read_global_view(info, Span(100, 400), Span(0, 600), 64)
    assert view.data.shape == (3, 32, 64)
    # each global pixel is the average of its footprint of the ramp
    np.testing.assert_allclose(
        view.data[0, 10, 20],
        v[100 + 10 * 300 // 32 : 100 + 11 * 300 // 32 + 1, 20 * 600 // 64 : 21 * 600 // 64 + 1].mean(),
        atol=0.02,
    )


def test_global_mode_output_follows_the_scene_across_regions(ramp, tmp_path):
    path, v = ramp
    report, probs = run(path, tmp_path, "global", "g.zarr")
    expected = 1 / (1 + np.exp(-v))  # softmax of [v, 0]
    # the global view is 1/5 of the scene per region: within a few global pixels' worth of the ramp
    err = np.abs(probs - expected)
    assert np.percentile(err, 99) < 0.004 and err.max() < 0.03
    assert report.tiles_predicted == report.tiles


def test_global_crops_line_up_with_their_patches(ramp, tmp_path):
    path, v = ramp
    _, probs = run(path, tmp_path, "global-local", "gl.zarr")
    # logits are patch - crop: zero (probability 0.5) wherever the crop is aligned, edges included;
    # what is left is uint8 quantization, plus decimation error in a few edge pixels
    err = np.abs(probs - 0.5)
    assert np.percentile(err, 99) < 0.004 and err.max() < 0.03
    # a crop off by half a global pixel (3 px) would leave about 0.008 everywhere: the check has teeth
    shifted = 1 / (1 + np.exp(-(v - np.roll(v, 3, axis=1))))
    assert np.percentile(np.abs(shifted - 0.5)[:, 3:], 1) > 0.006


def test_patch_mode_reads_no_global_view(ramp, tmp_path):
    path, v = ramp
    _, probs = run(path, tmp_path, "patch", "p.zarr")
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-v)), atol=0.01)


def test_mode_needs_a_global_local_model(real_data, tmp_path):
    from rsinfer.errors import ModelError

    with pytest.raises(ModelError, match="no global branch"):
        run_segment(
            SegmentOptions(input=str(real_data / "RGB.byte.tif"), output=str(tmp_path / "o.tif"), mode="global")
        )
