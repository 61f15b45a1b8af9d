"""rsinfer.job: a job is data, and running some rows of a grid is a call that gives those rows' exact bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import zarr

from rsinfer.backends import TorchBackend
from rsinfer.io.labelmap import FinishedRows
from rsinfer.io.source import inspect_raster
from rsinfer.io.writers import create_output, open_writer
from rsinfer.job import SegmentJob, WriterThread, run_job
from rsinfer.loading import load_model
from rsinfer.pipeline import SegmentOptions, output_spec, run_segment
from rsinfer.predictors import GlobalLocalPredictor, make_predictor
from rsinfer.tiling import Span, TileGrid

TILE, OVERLAP = 128, 32


def job_parts(path, model="simple-fcn", tile=TILE, overlap=OVERLAP):
    torch.manual_seed(0)
    loaded = load_model(model, "random", tile=tile, overlap=overlap)
    mode = loaded.set_mode(None)
    info = inspect_raster(str(path), loaded.config.in_bands, None, loaded.config.input_range, None)
    backend = TorchBackend(loaded.module, loaded.config, torch.device("cpu"), value_scale=info.value_scale)
    grid = TileGrid(info.height, info.width, tile, overlap)
    return loaded, info, grid, make_predictor(loaded, backend, info, grid, mode)


def chunk_files(store: Path, array: str) -> dict[str, bytes]:
    root = store / array / "c"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "model,blend,probs",
    [
        ("simple-fcn", "crop", False),
        ("simple-fcn", "linear", True),
        ("simple-fcn", "gaussian", False),
        ("glcanet-lite", "crop", True),
    ],
)
def test_rows_of_a_grid_into_an_existing_zarr_equal_the_whole_job(
    make_raster, random_image, tmp_path, model, blend, probs
):
    src = make_raster(random_image(700, 300, seed=7))
    torch.manual_seed(0)
    run_segment(
        SegmentOptions(
            input=str(src),
            output=str(tmp_path / "whole.zarr"),
            model=model,
            weights="random",
            tile=TILE,
            overlap=OVERLAP,
            blend=blend,
            probs=probs,
            device="cpu",
        )
    )
    whole = zarr.open_group(str(tmp_path / "whole.zarr"), mode="r")

    loaded, info, grid, predictor = job_parts(src, model)
    spec = output_spec(str(tmp_path / "part.zarr"), info, loaded, probs)
    create_output(spec)
    rows = Span(2 * TILE, 5 * TILE)  # chunk rows 2-4 of 6, away from both edges
    with open_writer(spec, "update") as writer:
        run_job(
            SegmentJob(
                source=info,
                grid=grid,
                predictor=predictor,
                sink=writer,
                num_classes=6,
                rows=rows,
                blend=blend,
                keep_scores=probs,
            )
        )
        writer.close()
    part = zarr.open_group(str(tmp_path / "part.zarr"), mode="r")
    np.testing.assert_array_equal(part["labels"][rows.start : rows.stop], whole["labels"][rows.start : rows.stop])
    assert (part["labels"][: rows.start] == 255).all() and (part["labels"][rows.stop :] == 255).all()
    # the chunk files of those rows are the whole job's, byte for byte
    want = {k: v for k, v in chunk_files(tmp_path / "whole.zarr", "labels").items() if 2 <= int(k.split("/")[0]) < 5}
    assert chunk_files(tmp_path / "part.zarr", "labels") == want
    if probs:
        np.testing.assert_array_equal(
            part["probs"][:, rows.start : rows.stop], whole["probs"][:, rows.start : rows.stop]
        )
    assert part.attrs["rsinfer"]["completed_rows"] == [[rows.start, rows.stop]]
    if model == "glcanet-lite":
        assert isinstance(predictor, GlobalLocalPredictor) and predictor.contexts.views_read == 1


def test_jobs_of_adjacent_rows_fill_one_output_like_the_whole_job(make_raster, random_image, tmp_path):
    """Rows need not be chunk-aligned; two jobs of [0, a) and [a, H) give the whole job's GeoTIFF pixels."""
    src = make_raster(random_image(600, 260, seed=3))
    torch.manual_seed(0)
    run_segment(
        SegmentOptions(
            input=str(src),
            output=str(tmp_path / "whole.tif"),
            model="simple-fcn",
            weights="random",
            tile=TILE,
            overlap=OVERLAP,
            blend="linear",
            device="cpu",
        )
    )
    loaded, info, grid, predictor = job_parts(src)
    spec = output_spec(str(tmp_path / "parts.tif"), info, loaded, False)
    create_output(spec)
    for rows in (Span(0, 201), Span(201, 600)):
        with open_writer(spec, "update") as writer:
            run_job(
                SegmentJob(
                    source=info, grid=grid, predictor=predictor, sink=writer, num_classes=6, rows=rows, blend="linear"
                )
            )
            writer.close()
    with rasterio.open(tmp_path / "whole.tif") as a, rasterio.open(tmp_path / "parts.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_a_job_reads_only_the_tile_rows_that_touch_its_rows(make_raster, random_image, tmp_path):
    src = make_raster(random_image(700, 200, seed=1))
    loaded, info, grid, predictor = job_parts(src)
    job = SegmentJob(source=info, grid=grid, predictor=predictor, sink=_ListSink(), num_classes=6, rows=Span(300, 400))
    # tiles start every 96 px: rows 192-320, 288-416 and 384-512 touch 300-400, no others
    assert list(job.tile_rows) == [2, 3, 4]
    stats = run_job(job)
    assert stats.tiles == 3 * grid.n_cols and predictor.backend.tiles == stats.tiles
    assert [(r.rows.start, r.rows.stop) for r in job.sink.rows][0][0] == 300
    assert job.sink.rows[-1].rows.stop == 400 and job.sink.flushed


class _ListSink:
    def __init__(self, fail_at: int | None = None):
        self.rows: list[FinishedRows] = []
        self.fail_at = fail_at
        self.flushed = False

    def write(self, rows: FinishedRows) -> None:
        if self.fail_at is not None and len(self.rows) == self.fail_at:
            raise OSError(28, "No space left on device")
        self.rows.append(rows)

    def flush(self) -> None:
        self.flushed = True


def test_a_failing_write_on_the_writer_thread_stops_the_job_with_its_error(make_raster, random_image, tmp_path):
    src = make_raster(random_image(700, 200, seed=1))
    loaded, info, grid, predictor = job_parts(src)
    sink = _ListSink(fail_at=1)
    with pytest.raises(OSError, match="No space left"):
        run_job(SegmentJob(source=info, grid=grid, predictor=predictor, sink=sink, num_classes=6))
    assert len(sink.rows) == 1 and not sink.flushed  # nothing after the failure was written


def test_writer_thread_reports_the_first_error_and_drops_later_rows():
    sink = _ListSink(fail_at=0)
    thread = WriterThread(sink)
    rows = FinishedRows(Span(0, 1), np.zeros((1, 4), np.uint8))
    thread.put(rows)
    with pytest.raises(OSError):
        for _ in range(5):  # the error surfaces at a later put or at close
            thread.put(rows)
        thread.close()
    assert sink.rows == []
