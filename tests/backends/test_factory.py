"""--backend auto: what it picks, the fallbacks, the resume fingerprint; the refused combinations."""

import logging
import sys

import numpy as np
import pytest
import rasterio
import torch

from rsinfer.backends import OnnxBackend, TorchBackend
from rsinfer.backends.factory import auto_choice, make_backend, resolve_backend, verified_graph
from rsinfer.errors import ModelError
from rsinfer.loading import load_model
from rsinfer.pipeline import SegmentOptions, job_fingerprint, prepare_segment, run_segment
from rsinfer.synth import write_synthetic_scene

CPU = torch.device("cpu")


@pytest.fixture
def scene(tmp_path, monkeypatch):
    """A 256² synthetic scene, and an ONNX cache of the test's own."""
    monkeypatch.setenv("RSINFER_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "scene.tif"
    write_synthetic_scene(path, tmp_path / "scene_labels.tif", 256, 256, block=128)
    return path


@pytest.fixture
def no_onnxruntime(monkeypatch):
    """onnxruntime as if it were not installed (its import fails)."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)


def lanet(scene, out, backend, **kw) -> SegmentOptions:
    return SegmentOptions(
        str(scene), str(out), model="lanet-lite", tile=128, overlap=16, device="cpu", backend=backend, **kw
    )


def test_auto_on_a_cpu_runs_onnx_runtime_with_the_torch_labels(scene, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch_report = run_segment(lanet(scene, tmp_path / "torch.tif", "torch"))
    auto_report = run_segment(lanet(scene, tmp_path / "auto.tif", "auto"))
    assert torch_report.backend == "torch" and auto_report.backend == "onnx CPUExecutionProvider"
    with rasterio.open(tmp_path / "torch.tif") as a, rasterio.open(tmp_path / "auto.tif") as b:
        same = (a.read(1) == b.read(1)).mean()
    assert same >= 0.999


def test_the_resume_fingerprint_records_the_backend_auto_resolved_to(scene, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    setup = prepare_segment(lanet(scene, tmp_path / "a.tif", "auto"))
    assert job_fingerprint(setup.opts, setup.info, setup.loaded, setup.mode)["backend"] == "onnx"
    bf16 = prepare_segment(lanet(scene, tmp_path / "b.tif", "auto", precision="bf16"), loaded=setup.loaded)
    assert job_fingerprint(bf16.opts, bf16.info, bf16.loaded, bf16.mode)["backend"] == "torch"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert job_fingerprint(setup.opts, setup.info, setup.loaded, setup.mode)["backend"] == "torch"


def test_auto_without_onnxruntime_runs_torch_and_asks_for_no_extra(scene, tmp_path, runner, no_onnxruntime):
    from rsinfer.cli.main import main

    out = tmp_path / "labels.tif"
    args = ["segment", str(scene), "-o", str(out), "-m", "simple-fcn", "-w", "random", "--tile", "128"]
    res = runner.invoke(main, [*args, "--device", "cpu", "--backend", "auto"])
    assert res.exit_code == 0, res.output
    assert "(torch)" in res.output and "pip install" not in res.output
    res = runner.invoke(main, [*args, "--backend", "onnx", "--overwrite"])
    assert res.exit_code == 1 and "--backend onnx needs onnxruntime" in res.output


def test_auto_falls_back_to_torch_with_one_line_when_the_export_fails(tmp_path, monkeypatch, caplog):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RSINFER_CACHE", str(blocker / "cache"))  # the graph has nowhere to go
    loaded = load_model("simple-fcn", "random", tile=64, overlap=8)
    with caplog.at_level(logging.INFO, logger="rsinfer"):
        backend = make_backend(loaded, "auto", CPU, 1.0)
        again = resolve_backend("auto", loaded, CPU)  # e.g. the resume fingerprint: not tried twice
    assert isinstance(backend, TorchBackend) and again == "torch"
    (record,) = [r for r in caplog.records if "--backend auto" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("--backend auto: torch, as the ONNX export of simple-fcn failed")
    assert "cannot create the ONNX cache folder" in record.getMessage()


def test_a_graph_that_cannot_be_traced_is_not_verified(tmp_path, monkeypatch, caplog):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setenv("RSINFER_CACHE", str(tmp_path))
    # glnet-lite's demo weights run the streaming procedure with the windowed l2g pass,
    # which sizes windows from box values: it cannot be traced.
    loaded = load_model("glnet-lite", tile=64, overlap=16)
    mode = loaded.set_mode(None)
    with caplog.at_level(logging.INFO, logger="rsinfer"):
        assert verified_graph(loaded, mode) is None
    assert "glnet-lite failed" in caplog.records[-1].getMessage() and "l2g" in caplog.records[-1].getMessage()


def test_auto_runs_global_local_models_on_torch_without_exporting(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RSINFER_CACHE", str(tmp_path))
    loaded = load_model("glnet-lite", "random", tile=64, overlap=16)
    with caplog.at_level(logging.DEBUG, logger="rsinfer"):
        backend = make_backend(loaded, "auto", CPU, 1.0, mode=loaded.set_mode(None))
    assert isinstance(backend, TorchBackend) and list(tmp_path.iterdir()) == []
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]  # quietly


def test_auto_runs_torch_on_cuda_in_half_precision_and_without_onnxruntime(no_onnxruntime):
    loaded = load_model("simple-fcn", "random")
    assert auto_choice(loaded, torch.device("cuda"), "fp32")[0] == "torch"
    assert auto_choice(loaded, CPU, "bf16")[0] == "torch"
    assert auto_choice(loaded, CPU, "fp32") == ("torch", "onnxruntime or onnx is not installed")
    assert isinstance(make_backend(loaded, "auto", CPU, 1.0), TorchBackend)


def test_auto_builds_onnx_runtime_on_a_cpu(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setenv("RSINFER_CACHE", str(tmp_path))
    loaded = load_model("simple-fcn", "random", tile=64, overlap=8)
    backend = make_backend(loaded, "auto", CPU, 1.0)
    assert isinstance(backend, OnnxBackend) and backend.provider == "CPUExecutionProvider"
    data = np.random.default_rng(0).integers(0, 256, (1, 3, 64, 64), dtype=np.uint8)
    ref = make_backend(loaded, "torch", CPU, 1.0).predict(data, np.ones((1, 64, 64), bool))
    assert (backend.predict(data, np.ones((1, 64, 64), bool)) - ref).abs().max() <= 1e-3


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(backend="onnx", precision="bf16"), "--precision bf16 needs --backend torch"),
        (dict(backend="onnx", precision="fp16"), "--precision fp16 needs --backend torch"),
        (dict(backend="auto", onnx="m.onnx"), "--onnx FILE needs --backend onnx"),
    ],
)
def test_options_the_onnx_backend_cannot_honour_are_refused(kw, message):
    with pytest.raises(ModelError, match=message):
        SegmentOptions("in.tif", "out.tif", **kw)
