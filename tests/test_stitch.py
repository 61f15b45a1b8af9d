"""Stitching: tiled output equals whole-image output for a model whose receptive field fits the margin."""

import numpy as np
import pytest
import torch

from rsinfer.backends import TorchBackend
from rsinfer.io.labelmap import NODATA_LABEL
from rsinfer.models import create_model, get_config
from rsinfer.stitch import RowBandStitcher
from rsinfer.tiling import TileGrid


@pytest.fixture(scope="module")
def backend():
    torch.manual_seed(0)
    config = get_config("simple-fcn")
    return TorchBackend(create_model("simple-fcn", config), config, torch.device("cpu"), activation="none")


def tiled_scores(backend, image, valid, tile, overlap, blend, order=None, batch=3):
    """Run ``image`` tile by tile through ``backend`` and stitch the raw logits."""
    h, w = image.shape[1:]
    grid = TileGrid(h, w, tile, overlap)
    k = backend.config.num_classes
    st = RowBandStitcher(grid, k, blend, keep_scores=True, quantize=False)
    tiles = list(grid)
    if order is not None:
        tiles = order(tiles)
    labels = np.zeros((h, w), np.uint8)
    scores = np.zeros((k, h, w), np.float32)
    rows_seen = []
    for i in range(0, len(tiles), batch):
        chunk = tiles[i : i + batch]
        data = np.stack([image[:, t.rows.start : t.rows.stop, t.cols.start : t.cols.stop] for t in chunk])
        vmask = np.stack([valid[t.rows.start : t.rows.stop, t.cols.start : t.cols.stop] for t in chunk])
        out = backend.predict(data, vmask)
        for t, o, v in zip(chunk, out, vmask):
            for fin in st.add(t, o, torch.from_numpy(v)):
                rows_seen.append((fin.rows.start, fin.rows.stop))
                labels[fin.rows.start : fin.rows.stop] = fin.labels
                scores[:, fin.rows.start : fin.rows.stop] = fin.scores
    assert st.done
    # finished rows arrive top to bottom, without gaps or repeats
    assert rows_seen[0][0] == 0 and rows_seen[-1][1] == h
    assert all(a[1] == b[0] for a, b in zip(rows_seen, rows_seen[1:]))
    return labels, scores, st


def whole_image(backend, image, valid):
    out = backend.predict(image[None], valid[None])[0].numpy()
    return out.argmax(0).astype(np.uint8), out


@pytest.mark.parametrize("blend", ["crop", "linear", "gaussian"])
@pytest.mark.parametrize("shape", [(300, 417), (64, 200), (97, 33)])
def test_tiled_logits_equal_whole_image_logits(random_image, backend, blend, shape):
    image = random_image(*shape, seed=1)
    valid = np.ones(shape, bool)
    tile, overlap = 64, 16  # margins: crop 8, linear/gaussian 4; simple-fcn sees 3 px each side
    grid = TileGrid(*shape, tile, overlap)
    assert grid.exact_margin(blend) >= backend.config.receptive_radius
    labels, scores, _ = tiled_scores(backend, image, valid, tile, overlap, blend)
    ref_labels, ref_scores = whole_image(backend, image, valid)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(labels, ref_labels)


def test_without_margin_tiling_differs_so_the_equality_test_can_fail(random_image, backend):
    image = random_image(200, 200, seed=2)
    valid = np.ones((200, 200), bool)
    _, scores, _ = tiled_scores(backend, image, valid, 64, 2, "crop")  # margin 1 < receptive radius 3
    _, ref = whole_image(backend, image, valid)
    assert np.abs(scores - ref).max() > 1e-3


def test_tiles_may_arrive_out_of_order_within_the_rows_in_flight(random_image, backend):
    image = random_image(250, 300, seed=3)
    valid = np.ones((250, 300), bool)

    def shuffle_pairs_of_rows(tiles):
        out = []
        rows = sorted({t.row for t in tiles})
        for r in range(0, len(rows), 2):
            group = [t for t in tiles if t.row in rows[r : r + 2]]
            out += group[::-1]
        return out

    a, sa, _ = tiled_scores(backend, image, valid, 64, 16, "linear")
    b, sb, _ = tiled_scores(backend, image, valid, 64, 16, "linear", order=shuffle_pairs_of_rows)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(sa, sb, atol=1e-6)


def test_memory_is_a_band_of_strips_not_the_image(random_image, backend):
    image = random_image(1000, 120, seed=4)
    valid = np.ones((1000, 120), bool)
    _, _, st = tiled_scores(backend, image, valid, 64, 16, "linear", batch=2)
    n_strips = len(st.grid.y.starts)
    assert n_strips > 15
    assert st.peak_strips <= 3  # a tile spans two strips; a batch adds at most one more


def test_invalid_pixels_are_nodata_and_empty_tiles_are_not_predicted(random_image, backend):
    shape = (200, 200)
    image = random_image(*shape, seed=5)
    valid = np.ones(shape, bool)
    valid[:, :90] = False  # the left tiles are entirely invalid
    valid[150, 150] = False
    grid = TileGrid(*shape, 64, 16)
    st = RowBandStitcher(grid, 6, "linear")
    labels = np.zeros(shape, np.uint8)
    predicted = 0
    for t in grid:
        v = valid[t.rows.start : t.rows.stop, t.cols.start : t.cols.stop]
        if not v.any():
            fins = st.add(t, None, None)
        else:
            predicted += 1
            d = image[None, :, t.rows.start : t.rows.stop, t.cols.start : t.cols.stop]
            fins = st.add(t, backend.predict(d, v[None])[0].softmax(0), torch.from_numpy(v))
        for f in fins:
            labels[f.rows.start : f.rows.stop] = f.labels
    assert predicted < len(grid)
    assert (labels[~valid] == NODATA_LABEL).all()
    assert (labels[valid] < 6).all()
