"""The rsinfer group: -q/-v, --log-file, progress lines without a terminal, --config, segment --report."""

from __future__ import annotations

import json

import pytest

from rsinfer.cli.main import main
from rsinfer.cli.progress import RateWindow

FAST = ["--device", "cpu", "--tile", "96", "--overlap", "16"]


@pytest.fixture
def small(random_image, make_raster):
    return make_raster(random_image(96, 160))


def test_the_groups_quiet_silences_the_command(small, runner, tmp_path):
    res = runner.invoke(main, ["-q", "segment", str(small), "-o", str(tmp_path / "l.tif"), *FAST])
    assert res.exit_code == 0 and res.output == ""


def test_without_a_terminal_progress_is_log_lines_and_the_log_file_has_them_with_times(small, runner, tmp_path):
    log = tmp_path / "run.log"
    args = ["--log-interval", "0.1", "--log-file", str(log), "segment", str(small), "-o", str(tmp_path / "l.tif")]
    res = runner.invoke(main, [*args, *FAST])
    assert res.exit_code == 0, res.output
    lines = res.stderr.splitlines()
    assert lines[0].startswith("rsinfer: loading model")  # said before the model loads
    assert any(line.startswith("rsinfer: segment: 2/2 tiles,") and "Mpx/s" in line for line in lines)
    logged = log.read_text().splitlines()
    assert any("INFO rsinfer: loading model" in line for line in logged)
    assert any("segment: 2/2 tiles" in line for line in logged) and logged[0][:2] == "20"  # timestamped


def test_segment_report_is_json_and_follows_the_overwrite_policy(small, runner, tmp_path):
    report = tmp_path / "r.json"
    args = ["segment", str(small), "-o", str(tmp_path / "l.tif"), *FAST, "-q", "--report", str(report)]
    assert runner.invoke(main, args).exit_code == 0
    data = json.loads(report.read_text())
    assert data["width"] == 160 and data["height"] == 96 and data["tiles"] == 2 and data["device"] == "cpu"
    assert data["outputs"][0].endswith("l.tif") and data["mpx_per_s"] > 0
    again = runner.invoke(main, args)  # the label map exists: refused before any work, report untouched
    assert again.exit_code == 1 and "exists" in again.output
    assert json.loads(report.read_text()) == data

    to_stdout = runner.invoke(main, [*args[:3], str(tmp_path / "m.tif"), *FAST, "-q", "--report", "-"])
    assert to_stdout.exit_code == 0 and json.loads(to_stdout.stdout)["tiles"] == 2


def test_a_config_file_gives_option_defaults_and_the_command_line_wins(small, runner, tmp_path):
    config = tmp_path / "rsinfer.toml"
    config.write_text('[segment]\nquiet = true\ntile = 96\noverlap = 16\ndevice = "cpu"\nbatch-size = "2"\n')
    res = runner.invoke(main, ["--config", str(config), "segment", str(small), "-o", str(tmp_path / "a.tif")])
    assert res.exit_code == 0 and res.output == ""
    res = runner.invoke(
        main,
        ["--config", str(config), "segment", str(small), "-o", str(tmp_path / "b.tif"), "--overlap", "99"],
    )
    assert res.exit_code == 1 and "overlap 99" in res.output  # the command line's value, not the file's

    config.write_text("[segment]\ntiel = 512\n")  # a typo is an error, not ignored
    res = runner.invoke(main, ["--config", str(config), "segment", str(small), "-o", str(tmp_path / "c.tif")])
    assert res.exit_code == 1 and "unknown option `segment.tiel`" in res.output and res.output.count("\n") == 1

    config.write_text("[segment\n")
    res = runner.invoke(main, ["--config", str(config), "segment", str(small), "-o", str(tmp_path / "c.tif")])
    assert res.exit_code == 1 and "not a valid TOML config file" in res.output and res.output.count("\n") == 1


def test_a_missing_input_is_one_line(runner, tmp_path):
    res = runner.invoke(main, ["segment", str(tmp_path / "none.tif"), "-o", str(tmp_path / "l.tif")])
    assert res.exit_code == 1 and res.output == f"rsinfer: error: {tmp_path / 'none.tif'}: no such file\n"


def test_demo_weights_on_imagery_unlike_theirs_are_flagged(real_data, runner, tmp_path):
    res = runner.invoke(main, ["segment", str(real_data / "RGB.byte.tif"), "-o", str(tmp_path / "l.tif"), *FAST])
    assert res.exit_code == 0, res.output
    assert "300 m pixels, but the demo weights lanet-lite.synthetic learnt synthetic 0.2 m scenes" in res.output


def test_the_rate_follows_the_last_seconds_of_work():
    rate = RateWindow(seconds=10)
    assert rate.add(0.0, 0.0) is None and rate.add(0.5, 100.0) is None  # under a second: no rate yet
    assert rate.add(2.0, 100.0) == pytest.approx(50.0)
    for t in range(3, 30):
        got = rate.add(float(t), 100.0 + (t - 2) * 1.0)  # then 1 Mpx/s
    assert got == pytest.approx(1.0, rel=0.15)  # the first burst has left the window


def test_a_missing_optional_package_is_one_line_naming_the_extra_before_any_work(small, runner, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else find_spec(name, *a))
    out = tmp_path / "l.tif"
    res = runner.invoke(main, ["segment", str(small), "-o", str(out), *FAST, "--backend", "onnx"])
    assert res.exit_code == 1 and res.output.count("\n") == 1
    assert "--backend onnx needs onnx: pip install 'rsinfer[cpu]'" in res.output
    assert [p.name for p in tmp_path.iterdir()] == [small.name]  # nothing written, no cache folder


def test_bench_names_the_extra_it_misses_before_measuring(runner, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    hidden = {"onnxruntime", "matplotlib"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in hidden else find_spec(name, *a))
    res = runner.invoke(main, ["bench", "speed", "--models", "lanet-lite", "--backends", "torch,onnx"])
    assert res.exit_code == 1 and "--backend onnx needs onnxruntime" in res.output and res.output.count("\n") == 1
    res = runner.invoke(main, ["bench", "memory", "--models", "lanet-lite", "--png", str(tmp_path / "m.png")])
    assert res.exit_code == 1 and "--png needs matplotlib: pip install 'rsinfer[bench]'" in res.output
    assert not list(tmp_path.iterdir())
