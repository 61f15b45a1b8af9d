"""Input inspection: band choice, value scale, masks, warnings and one-line errors."""

import numpy as np
import pytest

from rsinfer.errors import InputError
from rsinfer.io.reader import TileReader
from rsinfer.io.source import InputWarning, default_value_scale, inspect_raster
from rsinfer.tiling import TileGrid

RGB = ("red", "green", "blue")


def test_band_order_follows_colour_interpretation(real_data):
    info = inspect_raster(real_data / "RGBA.uint16.tif", RGB)
    assert info.bands == (3, 2, 1)  # the file is B, G, R, alpha
    assert info.value_scale == pytest.approx(255 / 65535)
    assert info.has_mask


def test_explicit_bands_win_and_are_checked(random_image, make_raster):
    path = make_raster(random_image(64, 64, bands=4))
    assert inspect_raster(path, RGB, bands=(4, 1, 2)).bands == (4, 1, 2)
    with pytest.raises(InputError, match="band 5 does not exist"):
        inspect_raster(path, RGB, bands=(5, 1, 2))
    with pytest.raises(InputError, match="takes 3"):
        inspect_raster(path, RGB, bands=(1, 2))


def test_wrong_band_count_is_a_one_line_error_naming_the_file(random_image, make_raster):
    path = make_raster(random_image(64, 64, bands=2))
    with pytest.raises(InputError) as err:
        inspect_raster(path, RGB)
    assert str(path) in str(err.value) and "--bands" in str(err.value) and "\n" not in str(err.value)


def test_gray_feeds_every_rgb_input_with_a_warning(random_image, make_raster):
    path = make_raster(random_image(64, 64, bands=1))
    with pytest.warns(InputWarning, match="single-band"):
        assert inspect_raster(path, RGB).bands == (1, 1, 1)


def test_untiled_input_warns(random_image, make_raster):
    path = make_raster(random_image(2100, 40, bands=3), tiled=False)
    with pytest.warns(InputWarning, match="not internally tiled"):
        assert not inspect_raster(path, RGB).tiled


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        inspect_raster(tmp_path / "nope.tif", RGB)
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="bad.tif: not a raster"):
        inspect_raster(bad, RGB)


@pytest.mark.parametrize("dtype,scale", [("uint8", 1.0), ("uint16", 255 / 65535), ("float32", 1.0)])
def test_value_scale_maps_integer_ranges_to_the_model_range(dtype, scale):
    assert default_value_scale(dtype, 255.0) == pytest.approx(scale)


def test_reader_yields_tiles_in_order_with_data_mask_and_skips_empty(random_image, make_raster):
    data = random_image(300, 500, bands=3)
    data[:, :, :200] = 0  # nodata on the left
    path = make_raster(data, nodata=0)
    info = inspect_raster(path, RGB)
    grid = TileGrid(300, 500, 128, 16)
    reader = TileReader(info, workers=3, depth=4)
    got = list(reader.iter_tiles(grid))
    assert [td.tile.index for td in got] == list(range(len(grid)))
    for td in got:
        t = td.tile
        if t.cols.stop <= 200:
            assert td.empty
        else:
            np.testing.assert_array_equal(td.data, data[:, t.rows.start : t.rows.stop, t.cols.start : t.cols.stop])
            assert (td.valid == (td.data != 0).any(0)).all()


def test_float_input_segments_with_its_own_scale(random_image, make_raster, tmp_path):
    from rsinfer.pipeline import SegmentOptions, run_segment

    data = random_image(120, 90).astype("float32") / 255.0
    path = make_raster(data, nodata=-1.0)
    info = inspect_raster(path, RGB, input_range=255.0)
    assert info.value_scale == 1.0
    # 0-1 floats: the user tells rsinfer how to reach the model's 0-255 range
    report = run_segment(
        SegmentOptions(input=str(path), output=str(tmp_path / "o.tif"), device="cpu", value_scale=255.0)
    )
    assert report.tiles_predicted == report.tiles == 1


def test_cuda_device_on_a_machine_without_one_is_a_clear_error():
    import torch

    from rsinfer.backends import resolve_device
    from rsinfer.errors import RsinferError

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(RsinferError, match="unknown device|unsupported device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RsinferError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_palette_lookup_maps_entries_missing_from_a_short_table_to_zero():
    from types import SimpleNamespace

    from rasterio.enums import ColorInterp

    from rsinfer.io.source import palette_lookup

    src = SimpleNamespace(
        colorinterp=(ColorInterp.palette, ColorInterp.alpha),
        dtypes=("uint8", "uint8"),
        colormap=lambda band: {0: (1, 2, 3, 255), 1: (40, 50, 60, 255)},  # 2 entries, as a VRT may have
    )
    band, lookup = palette_lookup(src, RGB, None)
    assert band == 1 and lookup.shape == (256, 3) and lookup.dtype == np.uint8
    assert lookup[:2].tolist() == [[1, 2, 3], [40, 50, 60]] and (lookup[2:] == 0).all()
    assert palette_lookup(src, RGB, (1, 1, 1)) is not None  # explicit bands naming the palette band
    assert palette_lookup(src, RGB, (2, 1, 1)) is None  # anything else reads raw values
    assert palette_lookup(src, ("nir",), None) is None  # a model not taking colours gets the indices


def test_palette_without_a_colour_table_is_read_as_gray(random_image, make_raster):
    from rasterio.enums import ColorInterp

    path = make_raster(random_image(64, 64, bands=1), colorinterp=[ColorInterp.palette])
    with pytest.warns(InputWarning, match="single-band"):
        info = inspect_raster(path, RGB)
    assert info.palette is None and info.bands == (1, 1, 1)


def test_nbits_sets_the_value_scale_unless_scale_is_given(random_image, make_raster):
    data = (random_image(64, 64).astype("uint16") * 4).astype("uint16")  # 10-bit values
    path = make_raster(data, nbits=10)
    info = inspect_raster(path, RGB)
    assert info.value_scale == pytest.approx(255 / 1023) and not info.check_range
    assert inspect_raster(path, RGB, value_scale=0.5).value_scale == 0.5
    plain = inspect_raster(make_raster(data, name="plain.tif"), RGB)
    assert plain.value_scale == pytest.approx(255 / 65535) and plain.check_range
    assert not inspect_raster(make_raster(data, name="given.tif"), RGB, value_scale=0.25).check_range
