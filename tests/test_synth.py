"""rsinfer synth: deterministic, block-size independent, georeferenced, streamed."""
import numpy as np
import pytest
import rasterio

from rsinfer import synth
from rsinfer.models.config import ISPRS_COLORS
from rsinfer.synth import write_synthetic_scene


def read(path):
    with rasterio.open(path) as ds:
        return ds.read()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    write_synthetic_scene(d / "a.tif", d / "a_labels.tif", 700, 500, seed=3, block=512)
    return d


def test_files_are_georeferenced_tiled_and_the_labels_have_a_colour_table(scene):
    with rasterio.open(scene / "a.tif") as img, rasterio.open(scene / "a_labels.tif") as lab:
        assert (img.width, img.height, img.count, img.dtypes[0]) == (700, 500, 3, "uint8")
        assert (lab.count, lab.dtypes[0]) == (1, "uint8")
        for ds in (img, lab):
            assert ds.crs.to_epsg() == 32632
            assert ds.transform.a == pytest.approx(0.2) and ds.transform.e == pytest.approx(-0.2)
            assert ds.profile["tiled"]
        assert lab.colormap(1)[1][:3] == ISPRS_COLORS[1]


def test_same_seed_same_scene_any_block_size_and_other_seeds_differ(scene, tmp_path):
    write_synthetic_scene(tmp_path / "b.tif", tmp_path / "b_labels.tif", 700, 500, seed=3, block=256)
    write_synthetic_scene(tmp_path / "c.tif", tmp_path / "c_labels.tif", 700, 500, seed=4, block=512)
    np.testing.assert_array_equal(read(scene / "a.tif"), read(tmp_path / "b.tif"))
    np.testing.assert_array_equal(read(scene / "a_labels.tif"), read(tmp_path / "b_labels.tif"))
    assert (read(scene / "a_labels.tif") != read(tmp_path / "c_labels.tif")).mean() > 0.2


def test_every_class_appears_in_plausible_proportions(tmp_path):
    write_synthetic_scene(tmp_path / "s.tif", tmp_path / "s_labels.tif", 1500, 1500, seed=1)
    share = np.bincount(read(tmp_path / "s_labels.tif").ravel(), minlength=6) / 1500**2
    assert share.size == 6 and (share > 0.002).all()
    assert 0.1 < share[0] < 0.5 and share[4] < 0.06  # roads are common, cars are rare


def test_a_window_is_drawn_the_same_inside_a_larger_scene(tmp_path):
    """Pixels are a function of position: a scene's top-left corner is a smaller scene."""
    write_synthetic_scene(tmp_path / "big.tif", tmp_path / "big_l.tif", 900, 700, seed=7)
    write_synthetic_scene(tmp_path / "small.tif", tmp_path / "small_l.tif", 300, 200, seed=7)
    np.testing.assert_array_equal(read(tmp_path / "big_l.tif")[:, :200, :300], read(tmp_path / "small_l.tif"))


def test_memory_stays_at_a_window_not_the_scene(tmp_path):
    import tracemalloc

    def peak_bytes(width, height):
        tracemalloc.start()
        write_synthetic_scene(tmp_path / f"m{width}.tif", tmp_path / f"m{width}_l.tif", width, height, seed=2)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return peak

    small, large = peak_bytes(600, 600), peak_bytes(3000, 2000)  # 17x the pixels
    assert large < 1.3 * small
    assert large < 32 * 2**20  # a window of float temporaries, whatever the scene


def test_a_failure_midway_leaves_no_file(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synth._render_window

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "_render_window", failing)
    with pytest.raises(RuntimeError, match="boom"):
        write_synthetic_scene(tmp_path / "f.tif", tmp_path / "f_l.tif", 1200, 1200, seed=1)
    assert list(tmp_path.iterdir()) == []


def test_synth_command(runner, tmp_path):
    from rsinfer.cli.main import main

    out = tmp_path / "scene.tif"
    res = runner.invoke(main, ["synth", str(out), "--size", "300x200", "--seed", "2", "-q"])
    assert res.exit_code == 0, res.output
    assert out.exists() and (tmp_path / "scene_labels.tif").exists()
    res = runner.invoke(main, ["synth", str(out), "--size", "300x200", "-q"])
    assert res.exit_code == 1 and "--overwrite" in res.output
