"""ONNX export and the ONNX Runtime backend: parity with PyTorch for every registered model (CPU)."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from rsinfer.backends import OnnxBackend, TorchBackend  # noqa: E402
from rsinfer.errors import ModelError  # noqa: E402
from rsinfer.export import export_onnx, global_graph_path  # noqa: E402
from rsinfer.models import create_model, get_config, list_models  # noqa: E402
from rsinfer.models.global_local import GlobalLocalModel  # noqa: E402
from rsinfer.models.registry import get_entry  # noqa: E402

# exported and checked against ONNX Runtime one by one in tests/models/test_baselines.py
BASELINE_NAMES = {n for n in list_models() if get_entry(n).build.__module__.endswith(".baselines")}


def parity_tile(config) -> int:
    return config.padded_size(max(config.min_tile, 64))


# GLNet's authors' procedure (cell crops sized from the box values, a fusion pass over the
# region's patches) cannot be traced; its exportable variant is the streaming procedure
# without the local->global pass: the G->L ensemble (the authors' mode 2). See test below.
# Hi-ResNet and FCN-8s keep their paper widths and every kind of op, with fewer repeats
# (one module per layer; narrower fc6/fc7): the full graphs take a minute to trace, and
# hiresnet-lite and the baselines' own export test cover the rest.
EXPORT_KWARGS = {
    "glnet": {"l2g": False},
    "glnet-lite": {"l2g": False},
    "hiresnet": {"blocks": (2, 2), "num_modules": (1, 1)},
    "fcn8s": {"fc_channels": 256},
}


# Every model whose code differs, through export_onnx and the ONNX Runtime backend. Left out:
# glcanet and glnet (the classes of their -lite variants, with bottleneck blocks, which lanet's
# and ammunet's encoders export too) and the baselines, each exported and checked against ONNX
# Runtime by tests/models/test_baselines.py. Together they took about 35 s of the suite.
PARITY_MODELS = [n for n in list_models() if n not in {"glcanet", "glnet", *BASELINE_NAMES}]


@pytest.mark.slow
@pytest.mark.parametrize("name", PARITY_MODELS)
def test_onnx_matches_torch_on_the_same_tiles(name, tmp_path):
    config = get_config(name)
    tile = parity_tile(config)
    config = config.replace(tile=tile, overlap=min(config.overlap, tile // 4))
    if name.startswith("glnet"):
        config = config.replace(procedure="streaming")
    torch.manual_seed(0)
    model = create_model(name, config, **EXPORT_KWARGS.get(name, {}))
    path = tmp_path / f"{name}.onnx"
    result = export_onnx(model, config, tile, path)
    assert result.max_abs_diff <= 1e-3
    data = np.random.default_rng(1).integers(0, 256, (3, config.num_bands, tile, tile), dtype=np.uint8)
    valid = np.ones((3, tile, tile), bool)
    valid[0, :5] = False
    boxes = None
    ref = TorchBackend(model, config, torch.device("cpu"), activation="none")
    glob = global_graph_path(path)
    ort = OnnxBackend(
        path,
        config,
        torch.device("cpu"),
        activation="none",
        global_path=glob if glob.exists() else None,
        sessions=result.sessions,
    )
    assert ort.session is result.sessions[str(path)]  # the verified session is reused, not rebuilt
    assert ort.provider == "CPUExecutionProvider"
    if isinstance(model, GlobalLocalModel):
        from rsinfer.global_context import GlobalView

        view = GlobalView(data[0, :, : tile // 2], valid[0, : tile // 2])
        ctx_t, ctx_o = ref.compute_context(view), ort.compute_context(view)
        boxes = np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0.25, 0, 0.75, 1]], np.float32)
        a = ref.predict(data, valid, [ctx_t] * 3, boxes)
        b = ort.predict(data, valid, [ctx_o] * 3, boxes)
    else:
        a = ref.predict(data, valid)
        b = ort.predict(data, valid)
    assert a.shape == b.shape == (3, config.num_classes, tile, tile)
    assert (a - b).abs().max().item() <= 1e-3
    assert (a.argmax(1) == b.argmax(1)).float().mean().item() >= 0.999


def test_segment_with_the_onnx_backend_gives_the_torch_labels(real_data, make_raster, tmp_path, monkeypatch):
    import rasterio

    from rsinfer.models import DEFAULT_MODEL
    from rsinfer.pipeline import SegmentOptions, run_segment

    monkeypatch.setenv("RSINFER_CACHE", str(tmp_path / "cache"))
    outs = {}
    for backend in ("torch", "onnx"):  # the default model with its bundled weights
        report = run_segment(
            SegmentOptions(
                input=str(real_data / "RGB.byte.tif"),
                output=str(tmp_path / f"{backend}.tif"),
                backend=backend,
                device="cpu",
                blend="linear",
            )
        )
        with rasterio.open(tmp_path / f"{backend}.tif") as ds:
            outs[backend] = ds.read(1)
    assert report.backend == "onnx CPUExecutionProvider"
    assert (outs["torch"] == outs["onnx"]).mean() >= 0.999
    graphs = list((tmp_path / "cache" / "onnx").glob(f"{DEFAULT_MODEL}-*.onnx"))
    assert len(graphs) == 1

    # The graph's spatial axes are dynamic (verified at export): rasters smaller than a tile on
    # one or both axes, and a single pixel, run as they are, with the torch labels.
    import onnxruntime

    from rsinfer.export import graph_input_size

    assert graph_input_size(onnxruntime.InferenceSession(str(graphs[0]), providers=["CPUExecutionProvider"])) is None
    rng = np.random.default_rng(3)
    for h, w in ((300, 300), (90, 700), (1, 1)):
        src = make_raster(rng.integers(0, 255, (3, h, w), dtype=np.uint8), name=f"small{h}x{w}.tif")
        for backend in ("torch", "onnx"):
            out = tmp_path / f"{h}x{w}-{backend}.tif"
            run_segment(SegmentOptions(input=str(src), output=str(out), backend=backend, device="cpu"))
            with rasterio.open(out) as ds:
                outs[backend] = ds.read(1)
        assert outs["torch"].shape == (h, w) and (outs["torch"] == outs["onnx"]).mean() >= 0.999
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx")) == graphs  # one export served every size


def test_a_graph_with_fixed_spatial_axes_takes_short_tiles_padded_to_its_size(tmp_path, monkeypatch):
    import rsinfer.export as export

    monkeypatch.setattr(export, "SPATIAL_AXES", export.BATCH_AXIS)  # as if the trace froze the tile's size
    config = get_config("simple-fcn").replace(tile=64, overlap=8)
    torch.manual_seed(0)
    model = create_model("simple-fcn", config)
    path = tmp_path / "fixed.onnx"
    result = export.export_onnx(model, config, 64, path)
    ort = OnnxBackend(path, config, torch.device("cpu"), activation="none", sessions=result.sessions)
    assert ort.graph_size == (64, 64)
    ref = TorchBackend(model, config, torch.device("cpu"), activation="none")
    data = np.random.default_rng(2).integers(0, 256, (2, 3, 40, 23), dtype=np.uint8)  # an edge tile
    valid = np.ones((2, 40, 23), bool)
    b = ort.predict(data, valid)
    assert b.shape == (2, config.num_classes, 40, 23)
    # The graph saw the tile edge-padded to 64 x 64 (more padding than the size rule asks, so
    # labels near the padding may differ from torch's own run): the same as torch on that input.
    padded = np.pad(data, ((0, 0), (0, 0), (0, 24), (0, 41)), mode="edge")
    a = ref.predict(padded, np.ones((2, 64, 64), bool))[..., :40, :23]
    assert (a - b).abs().max().item() <= 1e-3


def test_a_graph_that_does_not_match_is_not_written(tmp_path, monkeypatch):
    import rsinfer.export as export

    monkeypatch.setattr(export, "TOLERANCE", -1.0)
    config = get_config("simple-fcn")
    with pytest.raises(ModelError, match="differs from PyTorch"):
        export_onnx(create_model("simple-fcn", config), config, 64, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_command(runner, tmp_path):
    from rsinfer.cli.main import main

    out = tmp_path / "m.onnx"
    res = runner.invoke(main, ["export", "--model", "simple-fcn", "--tile", "64", "-o", str(out)])
    assert res.exit_code == 0, res.output
    import onnx

    model = onnx.load(str(out))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"] and dims[1].dim_value == 3
    res = runner.invoke(main, ["export", "--model", "simple-fcn", "--tile", "64", "-o", str(out)])
    assert res.exit_code == 1 and "--overwrite" in res.output


def test_glnet_with_the_windowed_l2g_pass_refuses_export_with_a_clear_error(tmp_path):
    config = get_config("glnet").replace(tile=64, overlap=16)
    with pytest.raises(ModelError, match="cannot export glnet.*l2g=False"):
        export_onnx(create_model("glnet", config), config, 64, tmp_path / "g.onnx")
    assert list(tmp_path.iterdir()) == []
