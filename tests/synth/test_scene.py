"""rsinfer.synth.scene: georeferenced, deterministic, block-size independent, streamed in bounded memory."""

import os
import tracemalloc

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from rsinfer.io.outputs import partial_path
from rsinfer.models.config import ISPRS_CLASSES, ISPRS_COLORS
from rsinfer.synth import scene, scene_profile, write_synthetic_scene

# Non-square and a multiple of neither block size, so edge tiles are partial.
W, H = 700, 500


def read(path):
    with rasterio.open(path) as ds:
        return ds.read()


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    write_synthetic_scene(d / "a.tif", d / "a_labels.tif", W, H, seed=3, block=256)
    return d


def test_files_are_georeferenced_tiled_compressed_rgb_and_labelled(scene_dir):
    with rasterio.open(scene_dir / "a.tif") as img, rasterio.open(scene_dir / "a_labels.tif") as lab:
        assert (img.width, img.height, img.count, img.dtypes) == (W, H, 3, ("uint8",) * 3)
        assert (lab.width, lab.height, lab.count, lab.dtypes) == (W, H, 1, ("uint8",))
        for ds in (img, lab):
            assert ds.crs.to_epsg() == 32632
            assert ds.transform == from_origin(500000.0, 5400000.0, 0.2, 0.2)
            assert ds.profile["tiled"] and set(ds.block_shapes) == {(256, 256)}
            assert ds.compression.name.lower() == "deflate"
        assert img.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        assert lab.nodata is None  # every pixel is a class
        cmap = lab.colormap(1)
        assert [cmap[k][:3] for k in range(6)] == [tuple(c) for c in ISPRS_COLORS]
        assert lab.tags(1)["classes"].split(",") == list(ISPRS_CLASSES)


def test_georeferencing_follows_the_arguments(tmp_path):
    write_synthetic_scene(
        tmp_path / "g.tif",
        tmp_path / "g_l.tif",
        90,
        70,
        seed=1,
        pixel_size=0.1,
        origin=(400000.0, 5500000.0),
        epsg=32633,
        block=32,
    )
    with rasterio.open(tmp_path / "g_l.tif") as ds:
        assert ds.crs.to_epsg() == 32633
        assert ds.transform == from_origin(400000.0, 5500000.0, 0.1, 0.1)
        assert set(ds.block_shapes) == {(32, 32)}
    profile = scene_profile(90, 70, pixel_size=0.1, origin=(400000.0, 5500000.0), epsg=32633, block=32)
    assert profile["BIGTIFF"] == "IF_SAFER" and profile["blockxsize"] == profile["blockysize"] == 32


def test_success_leaves_only_the_two_files(scene_dir):
    assert sorted(p.name for p in scene_dir.iterdir()) == ["a.tif", "a_labels.tif"]


def test_existing_files_are_replaced(tmp_path):
    image, labels = tmp_path / "r.tif", tmp_path / "r_l.tif"
    image.write_bytes(b"old image")
    labels.write_bytes(b"old labels")
    write_synthetic_scene(image, labels, 64, 48, seed=1)
    assert read(image).shape == (3, 48, 64) and read(labels).shape == (1, 48, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.tif", "r_l.tif"]


def test_same_seed_same_pixels_at_any_block_size_and_other_seeds_differ(scene_dir, tmp_path):
    write_synthetic_scene(tmp_path / "b.tif", tmp_path / "b_l.tif", W, H, seed=3, block=512)
    write_synthetic_scene(tmp_path / "c.tif", tmp_path / "c_l.tif", W, H, seed=4, block=256)
    np.testing.assert_array_equal(read(scene_dir / "a.tif"), read(tmp_path / "b.tif"))
    np.testing.assert_array_equal(read(scene_dir / "a_labels.tif"), read(tmp_path / "b_l.tif"))
    assert (read(scene_dir / "a_labels.tif") != read(tmp_path / "c_l.tif")).mean() > 0.2
    assert (read(scene_dir / "a.tif") != read(tmp_path / "c.tif")).mean() > 0.5


def test_a_scene_is_the_corner_of_a_larger_one(tmp_path):
    write_synthetic_scene(tmp_path / "big.tif", tmp_path / "big_l.tif", 900, 700, seed=7)
    write_synthetic_scene(tmp_path / "small.tif", tmp_path / "small_l.tif", 300, 200, seed=7)
    np.testing.assert_array_equal(read(tmp_path / "big.tif")[:, :200, :300], read(tmp_path / "small.tif"))
    np.testing.assert_array_equal(read(tmp_path / "big_l.tif")[:, :200, :300], read(tmp_path / "small_l.tif"))


# Loose bounds around the ISPRS-like targets (impervious 20-30 %, building 15-25 %, low
# vegetation 20-30 %, tree 10-20 %, car 1-3 %, clutter 2-8 %): a 300 m scene holds ~25 blocks.
SHARE_BOUNDS = {
    "impervious_surfaces": (0.15, 0.40),
    "building": (0.10, 0.32),
    "low_vegetation": (0.15, 0.40),
    "tree": (0.06, 0.25),
    "car": (0.008, 0.05),
    "clutter": (0.01, 0.12),
}


def test_every_class_appears_in_plausible_proportions(tmp_path):
    write_synthetic_scene(tmp_path / "s.tif", tmp_path / "s_l.tif", 1500, 1500, seed=0, pixel_size=0.2)
    labels = read(tmp_path / "s_l.tif")
    assert labels.max() < len(ISPRS_CLASSES)
    share = np.bincount(labels.ravel(), minlength=len(ISPRS_CLASSES)) / labels.size
    for k, name in enumerate(ISPRS_CLASSES):
        lo, hi = SHARE_BOUNDS[name]
        assert lo < share[k] < hi, f"{name}: {share[k]:.3f} outside ({lo}, {hi})"


def test_progress_is_reported_after_each_band_of_blocks(tmp_path):
    calls = []
    write_synthetic_scene(
        tmp_path / "p.tif",
        tmp_path / "p_l.tif",
        W,
        H,
        block=256,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(256, H), (H, H)]


def _peak_traced_bytes(path, width, height):
    tracemalloc.start()
    try:
        write_synthetic_scene(path / f"m{height}.tif", path / f"m{height}_l.tif", width, height, seed=2)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_memory_is_bounded_by_a_window_not_the_scene(tmp_path):
    """numpy reports its buffers to tracemalloc, so any scene-sized array would show in the peak."""
    write_synthetic_scene(tmp_path / "w.tif", tmp_path / "w_l.tif", 64, 64)  # one-off imports and caches
    short = _peak_traced_bytes(tmp_path, 4000, 1024)
    tall = _peak_traced_bytes(tmp_path, 4000, 4000)
    # A single full-scene label band (16 MB) would already break this bound.
    assert tall < 0.25 * 3 * 4000 * 4000
    assert tall < 1.3 * short  # flat in the scene's height


@pytest.mark.parametrize("targets_exist", [False, True])
def test_a_failure_midway_leaves_no_partial_and_no_new_target(tmp_path, monkeypatch, targets_exist):
    image, labels = tmp_path / "f.tif", tmp_path / "f_l.tif"
    if targets_exist:
        image.write_bytes(b"old image")
        labels.write_bytes(b"old labels")
    real = scene.render_window
    seen = []

    def fail_on_second_block_row(city, row0, col0, h, w):
        if row0 > 0:
            seen.extend(sorted(os.listdir(tmp_path)))
            raise RuntimeError("boom")
        return real(city, row0, col0, h, w)

    monkeypatch.setattr(scene, "render_window", fail_on_second_block_row)
    with pytest.raises(RuntimeError, match="boom"):
        write_synthetic_scene(image, labels, 600, 600, seed=1, block=256)
    # Until then both files were written under the output policy's partial names.
    partials = sorted(os.path.basename(partial_path(p)) for p in (image, labels))
    assert set(partials) <= set(seen)
    if targets_exist:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tif", "f_l.tif"]
        assert image.read_bytes() == b"old image" and labels.read_bytes() == b"old labels"
    else:
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs", [{"block": 100}, {"width": 0}, {"pixel_size": 0.0}, {"same_paths": True}])
def test_bad_arguments_are_refused_before_writing(tmp_path, kwargs):
    args = {"width": 64, "height": 64, **kwargs}
    same = args.pop("same_paths", False)
    labels = tmp_path / ("x.tif" if same else "x_l.tif")
    with pytest.raises(ValueError):
        write_synthetic_scene(tmp_path / "x.tif", labels, **args)
    assert list(tmp_path.iterdir()) == []
