"""rsinfer.pipeline: options checked once; a failed run leaves nothing, an interrupted one only its partial store."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from rsinfer.errors import ModelError
from rsinfer.io.geotiff_writer import GeoTiffWriter
from rsinfer.io.writers import OutputError
from rsinfer.partial import store_path
from rsinfer.pipeline import SegmentOptions, run_segment


def options(src, out, **kw) -> SegmentOptions:
    base = dict(
        input=str(src),
        output=str(out),
        model="simple-fcn",
        weights="random",
        tile=64,
        overlap=16,
        device="cpu",
        batch_size=2,
    )
    base.update(kw)
    return SegmentOptions(**base)


@pytest.mark.parametrize(
    "field,value",
    [
        ("blend", "median"),
        ("backend", "tensorrt"),
        ("precision", "int8"),
        ("mode", "local"),
        ("batch_size", 0),
        ("batch_size", "max"),
    ],
)
def test_options_are_checked_when_made(tmp_path, field, value):
    with pytest.raises(ModelError, match=field.replace("_", " ")):
        options(tmp_path / "in.tif", tmp_path / "out.tif", **{field: value})


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".lock"))


@pytest.mark.parametrize("keep", [True, False])
def test_an_interrupted_run_writes_nothing_final_and_keeps_its_store_if_asked(
    make_raster, random_image, tmp_path, keep
):
    src = make_raster(random_image(400, 300))
    out = tmp_path / "labels.tif"

    def interrupt(done, total, pixels):
        if done >= total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_segment(options(src, out, probs=True, keep_partial=keep), progress=interrupt)
    assert not out.exists() and not (tmp_path / "labels_probs.tif").exists()
    assert leftovers(tmp_path) == ([store_path("labels.tif")] if keep else [])


def test_a_failed_write_keeps_an_earlier_output_intact(make_raster, random_image, tmp_path, monkeypatch):
    src = make_raster(random_image(1100, 200))  # three 512-row blocks
    out = tmp_path / "labels.tif"
    run_segment(options(src, out))
    before = out.read_bytes()
    calls = []

    def fail_on_second_block(self, block):
        calls.append(block.rows)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, block)

    real = GeoTiffWriter._write_block
    monkeypatch.setattr(GeoTiffWriter, "_write_block", fail_on_second_block)
    with pytest.raises(OutputError, match=r"labels.tif: cannot write the output \(disk full\)"):
        run_segment(options(src, out, overwrite=True))
    assert out.read_bytes() == before and leftovers(tmp_path) == []
    with rasterio.open(out) as ds:
        assert ds.read(1).shape == (1100, 200) and np.isin(ds.read(1), range(6)).all()


@pytest.mark.parametrize("keep", [True, False])
def test_a_stop_request_ends_the_run_with_the_signals_exit_code(make_raster, random_image, tmp_path, keep):
    import signal

    from rsinfer.pipeline import JobInterrupted
    from rsinfer.signals import StopRequest

    src = make_raster(random_image(700, 200))
    out = tmp_path / "labels.zarr"
    stop = StopRequest()

    def stop_halfway(done, total, pixels):
        if done >= total // 2:
            stop.set(signal.SIGTERM)

    with pytest.raises(JobInterrupted, match="interrupted by SIGTERM after") as err:
        run_segment(options(src, out, keep_partial=keep), progress=stop_halfway, stop=stop)
    assert err.value.exit_code == 143 and not out.exists()
    assert ("partial output kept" in str(err.value)) == keep
    assert leftovers(tmp_path) == ([store_path("labels.zarr")] if keep else [])
