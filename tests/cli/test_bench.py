"""rsinfer bench memory / speed on CPU with small sizes."""

import csv
import json

import pytest

from rsinfer.cli.main import main


@pytest.mark.slow
def test_bench_memory_rows_parse_and_global_needs_more_than_patches(runner, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "m"
    res = runner.invoke(
        main,
        [
            "bench",
            "memory",
            "--models",
            "simple-fcn",
            "--size",
            "768",
            "--patch",
            "128",
            "--overlap",
            "16",
            "--device",
            "cpu",
            "--json",
            f"{out}.json",
            "--csv",
            f"{out}.csv",
            "--markdown",
            f"{out}.md",
            "--png",
            f"{out}.png",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "m.json").read_text())
    (row,) = data["rows"]
    assert row["model"] == "simple-fcn" and row["patch_mb"] > 0 and row["global_mb"] > 0
    # a 768² image in one pass holds 36x the activations of a 128² patch
    assert row["global_mb"] > row["patch_mb"]
    assert data["meta"]["unit"] == "peak RSS MB" and "cores" in data["meta"]["machine"]
    assert list(csv.DictReader(open(tmp_path / "m.csv")))[0]["model"] == "simple-fcn"
    assert "| simple-fcn |" in (tmp_path / "m.md").read_text()
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_memory_puts_the_papers_figures_beside_ours():
    from rsinfer.benchmark.report import memory_table

    rows = [
        dict(model="pspnet", setting=s, peak_rss_mb=100.0 + i, idle_rss_mb=50.0, seconds=1.0, device="cpu")
        for i, s in enumerate(("patch", "global"))
    ]
    (line,) = memory_table(rows)
    assert line["patch_mb"] == 100.0 and line["global_mb"] == 101.0
    assert line["paper_patch_mb"] == 1513 and line["paper_global_mb"] == 6289


@pytest.mark.slow
def test_bench_speed_torch_and_onnx(runner, tmp_path):
    pytest.importorskip("onnxruntime")
    res = runner.invoke(
        main,
        [
            "bench",
            "speed",
            "--models",
            "simple-fcn",
            "--sizes",
            "64",
            "--backends",
            "torch,onnx",
            "--precisions",
            "fp32",  # bf16 rows: tests/benchmark/test_agreement.py (emulated, slow on CPUs without bf16)
            "--batches",
            "2",
            "--runs",
            "3",
            "--warmup",
            "1",
            "--device",
            "cpu",
            "--json",
            str(tmp_path / "s.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    # torch fp32, onnx fp32 (one batch size: each row is a process of its own)
    assert len(rows) == 2 and {(r["backend"], r["precision"], r["batch"]) for r in rows} == {
        ("torch", "fp32", 2),
        ("onnx", "fp32", 2),
    }
    assert all(r["fps"] > 0 and r["p95_ms"] >= r["p50_ms"] > 0 and r["params_m"] > 0 and r["gflops"] > 0 for r in rows)


def test_bench_speed_puts_the_papers_rows_beside_ours():
    from rsinfer.benchmark.report import speed_table

    rows = speed_table(
        [
            dict(
                model="ammunet",
                size=512,
                backend="torch",
                precision="fp32",
                batch=1,
                params_m=30.4,
                gflops=108.6,
                p50_ms=10.0,
                p95_ms=12.0,
                fps=100.0,
                mpx_per_s=26.2,
                device="cuda",
            )
        ]
    )
    paper = [r for r in rows if "paper" in r["model"]]
    assert len(rows) == 2 and paper[0]["fps"] == 64.10 and paper[0]["params_m"] == 32.35


def test_bench_names_an_unknown_model(runner):
    res = runner.invoke(main, ["bench", "memory", "--models", "nope", "--size", "64", "--patch", "32"])
    assert res.exit_code == 1 and "unknown model" in res.output


@pytest.mark.parametrize("command", [["memory", "--models", "simple-fcn"], ["speed", "--models", "simple-fcn"]])
def test_bench_refuses_existing_report_files_before_measuring(runner, tmp_path, command):
    from rsinfer.cli.main import main

    existing = tmp_path / "rows.json"
    existing.write_text("{}")
    res = runner.invoke(main, ["bench", *command, "--json", str(existing)])
    assert res.exit_code == 1 and "output exists; pass --overwrite" in res.output
    assert existing.read_text() == "{}"


def test_bench_pipeline_sets_the_pipeline_against_decoding_in_one_run(runner, tmp_path):
    out = tmp_path / "ceiling.json"
    args = ["bench", "pipeline", "--size", "600", "--tile", "256", "--overlap", "32", "--workdir", str(tmp_path)]
    res = runner.invoke(main, [*args, "--json", str(out)])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(out.read_text())["rows"]
    assert row["size"] == 600 and row["pipeline_s"] > 0 and row["decode_s"] > 0
    assert row["ratio"] == pytest.approx(row["decode_s"] / row["pipeline_s"], rel=0.05)
    assert not list(tmp_path.glob("rsinfer-ceiling-*"))  # the outputs are cleaned up


def test_zero_cost_model_gives_the_first_band_as_every_class_without_copying():
    import torch

    from rsinfer.benchmark.pipeline import ZeroCostModel

    x = torch.randn(2, 3, 8, 8)
    y = ZeroCostModel(6)(x)
    assert y.shape == (2, 6, 8, 8) and y.stride(1) == 0 and y.data_ptr() == x.data_ptr()
