"""Batch size: halving on CUDA out-of-memory without losing tiles, auto sizing, memory budgets."""

import numpy as np
import pytest
import torch

from rsinfer.batching import Batch, BatchSize, auto_batch_size, batch_tiles, parse_memory, predict_halving_on_oom
from rsinfer.errors import ModelError, RsinferError
from rsinfer.io.reader import TileData
from rsinfer.tiling import TileGrid


def fake_predict(limit, seen):
    def predict(batch):
        seen.append([td.tile.index for td in batch.tiles])
        if len(batch) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return torch.from_numpy(batch.data.astype(np.float32)).mean(1, keepdim=True)

    return predict


def make_batch(n, bands=2, side=3):
    grid = TileGrid(side, side * n, side, 0)
    data = np.arange(n * bands * side * side, dtype=np.uint8).reshape(n, bands, side, side)
    return Batch([TileData(t, data[i], None) for i, t in enumerate(grid)], data, np.ones((n, side, side), bool))


def test_out_of_memory_halves_the_batch_and_keeps_every_tile():
    batch = make_batch(8)
    size, seen = BatchSize(8), []
    out = predict_halving_on_oom(fake_predict(3, seen), size, batch)
    np.testing.assert_array_equal(out.numpy(), batch.data.astype(np.float32).mean(1, keepdims=True))
    assert size.value == 2 and [len(s) for s in seen] == [8, 4, 2, 2, 2, 2]
    # the slices keep each tile with its own data, in order
    assert seen[2:] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_one_tile_that_does_not_fit_is_a_clear_error():
    with pytest.raises(ModelError, match="batch of one tile"):
        predict_halving_on_oom(fake_predict(0, []), BatchSize(4), make_batch(2))


def test_later_batches_use_the_shrunk_size():
    grid = TileGrid(10, 100, 10, 0)
    tiles = [TileData(t, np.zeros((1, 10, 10)), np.ones((10, 10), bool)) for t in grid]
    size = BatchSize(4)
    sizes = []
    for batch in batch_tiles(tiles, size):
        sizes.append(len(batch))
        size.shrink(2)
    assert sizes == [4, 2, 2, 2] and sum(sizes) == len(tiles)


def test_segment_recovers_from_out_of_memory_with_identical_output(random_image, make_raster, tmp_path, monkeypatch):
    import rasterio

    from rsinfer.backends import TorchBackend
    from rsinfer.pipeline import SegmentOptions, run_segment

    src = make_raster(random_image(300, 500))
    torch.manual_seed(0)
    run_segment(SegmentOptions(input=str(src), output=str(tmp_path / "ref.tif"), device="cpu", batch_size=1, tile=128))
    real, seen = TorchBackend.predict, []

    def flaky(self, data, valid, contexts=None, boxes=None, labels=False):
        seen.append(data.shape[0])
        if data.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, data, valid, contexts, boxes, labels=labels)

    monkeypatch.setattr(TorchBackend, "predict", flaky)
    torch.manual_seed(0)
    report = run_segment(
        SegmentOptions(input=str(src), output=str(tmp_path / "oom.tif"), device="cpu", batch_size=8, tile=128)
    )
    assert max(seen) == 8 and report.tiles_predicted == report.tiles
    assert seen[:2] == [8, 4] and all(n <= 2 for n in seen[2:])  # after the failures, batches stay small
    with rasterio.open(tmp_path / "ref.tif") as a, rasterio.open(tmp_path / "oom.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


@pytest.mark.parametrize("text,expected", [("500MB", 500_000_000), ("2GiB", 2 * 2**30), ("1.5 GB", 1_500_000_000)])
def test_memory_budgets(text, expected):
    assert parse_memory(text) == expected


def test_bad_memory_budget():
    with pytest.raises(RsinferError, match="max-gpu-mem"):
        parse_memory("lots")


def test_auto_batch_size_on_cpu_is_the_default():
    assert auto_batch_size(lambda b: None, torch.device("cpu"), None, cpu_default=6) == 6


def test_bf16_autocast_on_cpu_mostly_agrees_with_fp32(random_image, make_raster, tmp_path):
    import rasterio

    from rsinfer.pipeline import SegmentOptions, run_segment

    src = make_raster(random_image(200, 260))
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        run_segment(
            SegmentOptions(input=str(src), output=str(tmp_path / f"{precision}.tif"), device="cpu", precision=precision)
        )
    with rasterio.open(tmp_path / "fp32.tif") as a, rasterio.open(tmp_path / "bf16.tif") as b:
        agree = (a.read(1) == b.read(1)).mean()
    assert agree > 0.95


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_segment_matches_cpu(random_image, make_raster, tmp_path, precision):
    import rasterio

    from rsinfer.pipeline import SegmentOptions, run_segment

    src = make_raster(random_image(700, 900))
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        run_segment(
            SegmentOptions(
                input=str(src),
                output=str(tmp_path / f"{device}.tif"),
                device=device,
                model="lanet",
                tile=256,
                blend="linear",
                precision="fp32" if device == "cpu" else precision,
            )
        )
    with rasterio.open(tmp_path / "cpu.tif") as a, rasterio.open(tmp_path / "cuda.tif") as b:
        agree = (a.read(1) == b.read(1)).mean()
    assert agree >= (0.999 if precision == "fp32" else 0.98)


@pytest.mark.gpu
@cuda
def test_cuda_auto_batch_size_fits_the_budget(random_image, make_raster, tmp_path):
    from rsinfer.pipeline import SegmentOptions, run_segment

    src = make_raster(random_image(600, 600))
    report = run_segment(
        SegmentOptions(
            input=str(src),
            output=str(tmp_path / "a.tif"),
            device="cuda",
            model="lanet",
            tile=256,
            batch_size="auto",
            max_gpu_mem="2GiB",
        )
    )
    assert report.tiles_predicted == report.tiles
    assert torch.cuda.max_memory_allocated() < 3 * 2**30


@pytest.mark.gpu
@cuda
def test_onnxruntime_cuda_provider_matches_torch(random_image, make_raster, tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu's CUDA provider is not available")
    import rasterio

    from rsinfer.pipeline import SegmentOptions, run_segment

    monkeypatch.setenv("RSINFER_CACHE", str(tmp_path / "cache"))
    src = make_raster(random_image(600, 700))
    for backend in ("torch", "onnx"):
        torch.manual_seed(0)
        report = run_segment(
            SegmentOptions(
                input=str(src),
                output=str(tmp_path / f"{backend}.tif"),
                device="cuda",
                model="lanet",
                tile=256,
                backend=backend,
            )
        )
    assert "CUDA" in report.backend or "Tensorrt" in report.backend
    with rasterio.open(tmp_path / "torch.tif") as a, rasterio.open(tmp_path / "onnx.tif") as b:
        assert (a.read(1) == b.read(1)).mean() >= 0.999
