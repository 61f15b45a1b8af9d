import numpy as np
import pytest

from rsinfer.tiling import BLENDS, AxisTiling, TileGrid

SIZES = [
    (1, 1),
    (1, 5000),
    (5000, 1),
    (10, 15),
    (255, 256),
    (256, 256),
    (257, 256),
    (700, 1000),
    (1537, 513),
    (2448, 2448),
]


def coverage(grid: TileGrid, blend: str | None = None) -> np.ndarray:
    acc = np.zeros((grid.height, grid.width))
    for t in grid:
        if blend is None:
            acc[t.rows.start : t.rows.stop, t.cols.start : t.cols.stop] += 1
        else:
            wy, wx = grid.axis_weights(t, blend)
            acc[t.rows.start : t.rows.stop, t.cols.start : t.cols.stop] += np.outer(wy, wx)
    return acc


@pytest.mark.parametrize("height,width", SIZES)
def test_grid_covers_every_pixel_with_full_size_tiles_inside_the_raster(height, width):
    grid = TileGrid(height, width, tile=256, overlap=32)
    assert (coverage(grid) >= 1).all()
    for t in grid:
        assert t.shape == grid.tile_shape == (min(256, height), min(256, width))
        assert 0 <= t.rows.start and t.rows.stop <= height
        assert 0 <= t.cols.start and t.cols.stop <= width


@pytest.mark.parametrize("height,width", SIZES)
def test_cores_partition_the_raster(height, width):
    grid = TileGrid(height, width, tile=256, overlap=32)
    owners = np.zeros((height, width), dtype=int)
    for t in grid:
        owners[t.core_rows.start : t.core_rows.stop, t.core_cols.start : t.core_cols.stop] += 1
        # a core lies inside its tile
        assert t.rows.start <= t.core_rows.start <= t.core_rows.stop <= t.rows.stop
    assert (owners == 1).all()


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("height,width", SIZES)
def test_blend_weights_cover_every_pixel(height, width, blend):
    grid = TileGrid(height, width, tile=256, overlap=64)
    cov = coverage(grid, blend)
    assert (cov > 0).all()
    if blend != "gaussian":  # crop and linear weights sum to exactly one
        np.testing.assert_allclose(cov, 1.0, atol=1e-6)


def test_last_tile_is_shifted_inward_not_past_the_edge():
    axis = AxisTiling.build(1000, 512, 64)
    assert axis.starts == (0, 448, 488)
    assert axis.starts[-1] + axis.tile == 1000


def test_stride_is_tile_minus_overlap_and_overlap_is_at_least_requested():
    axis = AxisTiling.build(5000, 500, 50)
    steps = np.diff(axis.starts)
    assert (steps[:-1] == 450).all() and steps[-1] <= 450


@pytest.mark.parametrize("blend,expected", [("crop", 32), ("linear", 16), ("gaussian", 16)])
def test_exact_margin_is_the_zero_weight_band_next_to_interior_edges(blend, expected):
    grid = TileGrid(1000, 1000, tile=256, overlap=64)
    assert grid.exact_margin(blend) == expected
    m = grid.exact_margin(blend)
    for i in range(len(grid.x)):
        w = grid.x.weights(i, blend)
        if i > 0:
            assert (w[:m] == 0).all()
        if i < len(grid.x) - 1:
            assert (w[-m:] == 0).all()
    # and the margin is tight: the first interior tile has weight right after it
    assert grid.x.weights(1, blend)[m] > 0


def test_bad_tile_or_overlap_is_refused():
    with pytest.raises(ValueError):
        TileGrid(100, 100, tile=64, overlap=64)
    with pytest.raises(ValueError):
        TileGrid(100, 100, tile=0, overlap=0)
