"""bench speed: rows other than torch fp32 say how many of torch fp32's labels they keep."""

import pytest

from rsinfer.benchmark import report, worker


def spec(tmp_path, backend="torch", precision="fp32") -> dict:
    return dict(
        kind="speed",
        model="simple-fcn",
        size=64,
        backend=backend,
        precision=precision,
        batch=1,
        device="cpu",
        runs=1,
        warmup=0,
        workdir=str(tmp_path),
    )


def test_speed_rows_carry_label_agreement_with_torch_fp32(tmp_path):
    assert "agree_pct" not in worker.speed(spec(tmp_path))
    bf16 = worker.speed(spec(tmp_path, precision="bf16"))["agree_pct"]
    assert isinstance(bf16, float) and 0 <= bf16 <= 100


def test_the_onnx_row_keeps_the_torch_labels(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    assert worker.speed(spec(tmp_path, backend="onnx"))["agree_pct"] >= 99.9


def test_agreement_input_is_a_normalized_synthetic_tile_for_rgb_models():
    from rsinfer.models import get_config

    x = worker.agreement_input(get_config("simple-fcn"), 64)
    assert x.shape == (1, 3, 64, 64) and -3 < x.mean() < 3 and x.std() > 0.1
    assert x.unique().numel() > 100  # a textured scene, not a constant


def test_the_table_and_the_console_show_agreement(runner, monkeypatch):
    from rsinfer.benchmark import runner as bench_runner
    from rsinfer.cli.main import main

    rows = [
        dict(model="simple-fcn", size=64, backend="torch", precision=p, batch=1, fps=10.0, device="cpu", p50_ms=1.0)
        for p in ("fp32", "bf16")
    ]
    rows[1]["agree_pct"] = 97.123456

    def fake_rows(*args, on_row=None, **kw):
        for r in rows:
            on_row(r)
        return rows

    monkeypatch.setattr(bench_runner, "speed_rows", fake_rows)
    res = runner.invoke(main, ["bench", "speed", "--models", "simple-fcn", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "bf16 b1: 10.00 FPS, 97.12% of torch fp32's labels" in res.output
    assert "fp32 b1: 10.00 FPS\n" in res.output
    lines = report.speed_table(rows)
    assert "agree_pct" not in lines[0] and lines[1]["agree_pct"] == 97.123
    assert "agree_pct" in report.SPEED_COLUMNS
