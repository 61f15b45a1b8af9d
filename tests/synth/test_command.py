"""``rsinfer synth``: the command follows the shared output policy."""

from rsinfer.cli.main import main


def test_synth_command(runner, tmp_path):
    out = tmp_path / "scene.tif"
    res = runner.invoke(main, ["synth", str(out), "--size", "300x200", "--seed", "2", "-q"])
    assert res.exit_code == 0, res.output
    assert out.exists() and (tmp_path / "scene_labels.tif").exists()
    res = runner.invoke(main, ["synth", str(out), "--size", "300x200", "-q"])
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = runner.invoke(main, ["synth", str(out), "--size", "300x200", "-q", "--overwrite"])
    assert res.exit_code == 0, res.output


def test_an_existing_label_raster_is_refused_before_any_work(runner, tmp_path):
    labels = tmp_path / "mine.tif"
    labels.write_bytes(b"keep me")
    res = runner.invoke(main, ["synth", str(tmp_path / "s.tif"), "--labels", str(labels), "--size", "64x64", "-q"])
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.tif"] and labels.read_bytes() == b"keep me"


def test_a_missing_output_folder_is_refused(runner, tmp_path):
    res = runner.invoke(main, ["synth", str(tmp_path / "no" / "s.tif"), "--size", "64x64", "-q"])
    assert res.exit_code == 1 and "does not exist" in res.output
    assert list(tmp_path.iterdir()) == []
