"""rsinfer segment through click's CliRunner: outputs, summary, errors, overwrite policy."""

import os

import rasterio

from rsinfer.cli.main import main


def test_segment_writes_geotiff_and_reports_a_summary(random_image, runner, make_raster, tmp_path):
    src = make_raster(random_image(300, 400))
    out = tmp_path / "labels.tif"
    res = runner.invoke(
        main,
        [
            "segment",
            str(src),
            "-o",
            str(out),
            "--device",
            "cpu",
            "--tile",
            "128",
            "--overlap",
            "32",
            "--blend",
            "linear",
            "--probs",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Mpx/s" in res.output and "peak RSS" in res.output
    with rasterio.open(out) as ds:
        assert (ds.width, ds.height) == (400, 300)
        assert ds.read(1).max() < 6
    assert os.path.exists(tmp_path / "labels_probs.tif")


def test_segment_quiet_prints_nothing(random_image, runner, make_raster, tmp_path):
    src = make_raster(random_image(64, 64))
    res = runner.invoke(main, ["segment", str(src), "-o", str(tmp_path / "l.zarr"), "-q"])
    assert res.exit_code == 0 and res.output == ""


def test_bad_input_is_one_line_with_nonzero_exit(runner, tmp_path, real_data):
    cases = [
        (["segment", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "o.tif")], "missing.tif: no such file"),
        (["segment", str(real_data / "corrupt.tif"), "-o", str(tmp_path / "o.tif")], "corrupt.tif: cannot read"),
        (["segment", str(real_data / "RGB.byte.tif"), "-o", str(tmp_path / "o.tif"), "--bands", "1,2"], "takes 3"),
        (
            ["segment", str(real_data / "RGB.byte.tif"), "-o", str(tmp_path / "o.tif"), "--model", "nope"],
            "unknown model",
        ),
        (
            [
                "segment",
                str(real_data / "RGB.byte.tif"),
                "-o",
                str(tmp_path / "o.tif"),
                "--tile",
                "64",
                "--overlap",
                "64",
            ],
            "overlap 64",
        ),
        (["segment", str(real_data / "RGB.byte.tif"), "-o", str(tmp_path / "o.png")], "unknown output format"),
    ]
    for args, needle in cases:
        res = runner.invoke(main, args + ["-q"])
        errors = [line for line in res.output.splitlines() if line.startswith("rsinfer: error:")]
        assert res.exit_code == 1, (args, res.output)
        assert len(errors) == 1 and needle in errors[0], (args, res.output)
    assert not any(p.name.startswith("o.") for p in tmp_path.iterdir())


def test_existing_output_is_kept_without_overwrite(random_image, runner, make_raster, tmp_path):
    src = make_raster(random_image(64, 64))
    out = tmp_path / "l.tif"
    out.write_bytes(b"precious")
    res = runner.invoke(main, ["segment", str(src), "-o", str(out), "-q"])
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert out.read_bytes() == b"precious"


def test_bands_option_is_validated(random_image, runner, make_raster, tmp_path):
    src = make_raster(random_image(64, 64))
    res = runner.invoke(main, ["segment", str(src), "-o", str(tmp_path / "l.tif"), "--bands", "a,b"])
    assert res.exit_code == 2 and "comma-separated" in res.output


def test_outputs_record_the_weights_they_were_made_with(random_image, runner, make_raster, tmp_path):
    import rasterio
    import zarr

    from rsinfer.models import DEFAULT_MODEL
    from rsinfer.weights import default_weights

    src = make_raster(random_image(96, 96))
    res = runner.invoke(main, ["segment", str(src), "-o", str(tmp_path / "l.tif")])
    assert res.exit_code == 0, res.output
    expected = default_weights(DEFAULT_MODEL)
    assert expected and f"({expected} weights)" in res.output  # the summary line says what ran
    with rasterio.open(tmp_path / "l.tif") as ds:
        assert ds.tags()["MODEL"] == DEFAULT_MODEL and ds.tags()["WEIGHTS"] == expected
    res = runner.invoke(main, ["segment", str(src), "-o", str(tmp_path / "r.zarr"), "--weights", "random", "-q"])
    assert res.exit_code == 0, res.output
    assert zarr.open_group(str(tmp_path / "r.zarr"), mode="r").attrs["rsinfer"]["weights"] == "random"


def test_creation_options_reach_the_cog_and_bad_ones_are_refused_before_work(
    random_image, runner, make_raster, tmp_path
):
    src = make_raster(random_image(96, 96))
    fast = ["--device", "cpu", "--tile", "96", "--overlap", "16", "-q"]
    out = tmp_path / "zstd.tif"
    res = runner.invoke(main, ["segment", str(src), "-o", str(out), *fast, "--co", "compress=zstd"])
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.compression.name == "zstd"
    for args, message in (
        (["-o", str(tmp_path / "a.tif"), "--co", "FOO=1"], "does not support creation option FOO"),
        (["-o", str(tmp_path / "b.tif"), "--co", "COMPRESS"], "expected KEY=VALUE"),
        (["-o", str(tmp_path / "c.zarr"), "--co", "COMPRESS=ZSTD"], "a zarr output takes none"),
    ):
        res = runner.invoke(main, ["segment", str(src), *args, *fast])
        assert res.exit_code == 1 and message in res.output and res.output.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.tif", "zstd.tif", "zstd.tif.aux.xml", "zstd.qml"])


def test_global_size_reaches_global_local_models_and_is_refused_for_others(random_image, runner, make_raster, tmp_path):
    from rsinfer.pipeline import SegmentOptions, job_fingerprint, prepare_segment

    src = make_raster(random_image(96, 96))
    setups = [
        prepare_segment(SegmentOptions(str(src), str(tmp_path / f"{g}.tif"), model="glcanet-lite", global_size=g))
        for g in (None, 300)
    ]
    default, chosen = (s.loaded.config.global_local for s in setups)
    assert chosen.global_size == 300 != default.global_size
    prints = [job_fingerprint(s.opts, s.info, s.loaded, s.mode) for s in setups]
    assert prints[0]["global_size"] != prints[1]["global_size"]  # a resume never mixes the two
    res = runner.invoke(main, ["segment", str(src), "-o", str(tmp_path / "l.tif"), "--global-size", "300", "-q"])
    assert res.exit_code == 1 and "has no global view" in res.output and not (tmp_path / "l.tif").exists()
