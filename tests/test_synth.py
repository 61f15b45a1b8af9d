"""rsinfer.synth: georeferenced, deterministic, block-size independent, streamed in bounded memory."""
import tracemalloc

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from rsinfer import synth
from rsinfer.models.config import ISPRS_CLASSES, ISPRS_COLORS
from rsinfer.synth import scene_profile, write_synthetic_scene

# Non-square and a multiple of neither block size, so edge tiles are partial.
W, H = 700, 500


def read(path):
    with rasterio.open(path) as ds:
        return ds.read()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    write_synthetic_scene(d / "a.tif", d / "a_labels.tif", W, H, seed=3, block=256)
    return d


def test_files_are_georeferenced_tiled_compressed_rgb_and_labelled(scene):
    with rasterio.open(scene / "a.tif") as img, rasterio.open(scene / "a_labels.tif") as lab:
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
    write_synthetic_scene(tmp_path / "g.tif", tmp_path / "g_l.tif", 90, 70, seed=1, pixel_size=0.1,
                          origin=(400000.0, 5500000.0), epsg=32633, block=32)
    with rasterio.open(tmp_path / "g_l.tif") as ds:
        assert ds.crs.to_epsg() == 32633
        assert ds.transform == from_origin(400000.0, 5500000.0, 0.1, 0.1)
        assert set(ds.block_shapes) == {(32, 32)}
    profile = scene_profile(90, 70, pixel_size=0.1, origin=(400000.0, 5500000.0), epsg=32633, block=32)
    assert profile["BIGTIFF"] == "IF_SAFER" and profile["blockxsize"] == profile["blockysize"] == 32


def test_success_leaves_only_the_two_files(scene):
    assert sorted(p.name for p in scene.iterdir()) == ["a.tif", "a_labels.tif"]


def test_same_seed_same_pixels_at_any_block_size_and_other_seeds_differ(scene, tmp_path):
    write_synthetic_scene(tmp_path / "b.tif", tmp_path / "b_l.tif", W, H, seed=3, block=512)
    write_synthetic_scene(tmp_path / "c.tif", tmp_path / "c_l.tif", W, H, seed=4, block=256)
    np.testing.assert_array_equal(read(scene / "a.tif"), read(tmp_path / "b.tif"))
    np.testing.assert_array_equal(read(scene / "a_labels.tif"), read(tmp_path / "b_l.tif"))
    assert (read(scene / "a_labels.tif") != read(tmp_path / "c_l.tif")).mean() > 0.2
    assert (read(scene / "a.tif") != read(tmp_path / "c.tif")).mean() > 0.5


def test_a_pixel_is_the_same_whichever_window_draws_it():
    """Stitching windows cut at odd places gives the single big window, bit for bit."""
    whole_rgb, whole_label = synth._render_window(synth._City(9, 0.2), 40, 30, 300, 700)
    rgb = np.empty_like(whole_rgb)
    label = np.empty_like(whole_label)
    rows, cols = (0, 137, 300), (0, 233, 511, 700)
    for r0, r1 in zip(rows, rows[1:]):
        for c0, c1 in zip(cols, cols[1:]):
            # A fresh city each time: cold plan caches must not matter either.
            part_rgb, part_label = synth._render_window(synth._City(9, 0.2), 40 + r0, 30 + c0, r1 - r0, c1 - c0)
            rgb[:, r0:r1, c0:c1] = part_rgb
            label[r0:r1, c0:c1] = part_label
    np.testing.assert_array_equal(rgb, whole_rgb)
    np.testing.assert_array_equal(label, whole_label)


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
    write_synthetic_scene(tmp_path / "p.tif", tmp_path / "p_l.tif", W, H, block=256,
                          progress=lambda done, total: calls.append((done, total)))
    assert calls == [(256, H), (H, H)]


def _peak_traced_bytes(path, width, height):
    tracemalloc.start()
    try:
        write_synthetic_scene(path / f"m{height}.tif", path / f"m{height}_l.tif", width, height, seed=2)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_a_window_not_the_scene(tmp_path):
    """numpy reports its buffers to tracemalloc, so any scene-sized array would show in the peak."""
    write_synthetic_scene(tmp_path / "w.tif", tmp_path / "w_l.tif", 64, 64)  # one-off imports and caches
    short = _peak_traced_bytes(tmp_path, 4000, 1024)
    tall = _peak_traced_bytes(tmp_path, 4000, 4000)
    # A single full-scene label band (16 MB) would already break this bound.
    assert tall < 0.25 * 3 * 4000 * 4000
    assert tall < 1.3 * short  # flat in the scene's height


@pytest.mark.parametrize("targets_exist", [False, True])
def test_a_failure_midway_leaves_no_temporary_and_no_new_target(tmp_path, monkeypatch, targets_exist):
    image, labels = tmp_path / "f.tif", tmp_path / "f_l.tif"
    if targets_exist:
        image.write_bytes(b"old image")
        labels.write_bytes(b"old labels")
    real = synth._render_window

    def fail_on_second_block_row(city, row0, col0, h, w):
        if row0 > 0:
            raise RuntimeError("boom")
        return real(city, row0, col0, h, w)

    monkeypatch.setattr(synth, "_render_window", fail_on_second_block_row)
    with pytest.raises(RuntimeError, match="boom"):
        write_synthetic_scene(image, labels, 600, 600, seed=1, block=256)
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


def test_synth_command(runner, tmp_path):
    from rsinfer.cli.main import main

    out = tmp_path / "scene.tif"
    res = runner.invoke(main, ["synth", str(out), "--size", "300x200", "--seed", "2", "-q"])
    assert res.exit_code == 0, res.output
    assert out.exists() and (tmp_path / "scene_labels.tif").exists()
    res = runner.invoke(main, ["synth", str(out), "--size", "300x200", "-q"])
    assert res.exit_code == 1 and "--overwrite" in res.output
