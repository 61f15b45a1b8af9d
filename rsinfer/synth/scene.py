"""Writing a scene: the shared GeoTIFF profile, and the image and label rasters streamed
window by window in bounded memory.

Every pixel is a pure function of (seed, pixel_size, row, column), so the files are
identical whatever the block size. The writer holds one window (a tile, or a few tiles
side by side when tiles are small) plus the plans of a few rows of cells.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.windows import Window

from rsinfer.io.labelmap import colour_table
from rsinfer.io.outputs import atomic_outputs
from rsinfer.models.config import ISPRS_CLASSES, ISPRS_COLORS

from .layout import City, line_range
from .render import render_window

__all__ = ["scene_profile", "write_synthetic_scene"]

_GDAL_CACHE_MB = 64  # GDAL's block cache would otherwise grow to 5% of RAM
_WINDOW_PX = 512  # windows are at least this wide (whole tiles), so tiny blocks stay fast


def scene_profile(
    width: int,
    height: int,
    *,
    pixel_size: float = 0.2,
    origin: tuple[float, float] = (500000.0, 5400000.0),
    epsg: int = 32632,
    block: int = 512,
    compress: str | None = "deflate",
) -> dict:
    """The rasterio profile both files share (one uint8 band; callers set count and photometric).

    `origin` is the (easting, northing) of the scene's upper-left corner; rows run south.
    """
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint8",
        "crs": CRS.from_epsg(epsg),
        "transform": from_origin(origin[0], origin[1], pixel_size, pixel_size),
        "nodata": None,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "BIGTIFF": "IF_SAFER",
    }
    if compress and compress.lower() != "none":
        profile["compress"] = compress
    return profile


def _check_args(width: int, height: int, pixel_size: float, block: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"scene size must be positive, got {width}x{height}")
    if not pixel_size > 0:
        raise ValueError(f"pixel_size must be positive, got {pixel_size}")
    if block < 16 or block % 16:
        raise ValueError(f"block must be a positive multiple of 16 (a GeoTIFF tile side), got {block}")


def write_synthetic_scene(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    width: int,
    height: int,
    *,
    seed: int = 0,
    pixel_size: float = 0.2,
    origin: tuple[float, float] = (500000.0, 5400000.0),
    epsg: int = 32632,
    block: int = 512,
    compress: str | None = "deflate",
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write a synthetic RGB orthophoto and its ISPRS label raster, window by window.

    Pixels depend only on (seed, pixel_size, row, column), not on `block`. Existing files
    are replaced (callers that must not replace them check first, like ``rsinfer synth``).
    Both files are written under their partial names (:mod:`rsinfer.io.outputs`) and
    committed once both are complete; on any error the partials are removed and the targets
    are left as they were. `progress(done_rows, total_rows)` is called after each row of blocks.
    """
    _check_args(width, height, pixel_size, block)
    image_path, label_path = Path(image_path), Path(label_path)
    if image_path.resolve() == label_path.resolve():
        raise ValueError("image_path and label_path must differ")
    base = scene_profile(width, height, pixel_size=pixel_size, origin=origin, epsg=epsg, block=block, compress=compress)
    image_profile = {**base, "count": 3, "photometric": "RGB"}
    if str(compress).lower() in ("deflate", "lzw"):
        # Horizontal differencing makes the textured RGB smaller and, with deflate's fastest
        # level, compresses it in about half the time of the defaults (sensor noise leaves
        # little for higher levels to find).
        image_profile["predictor"] = 2
        if str(compress).lower() == "deflate":
            image_profile["zlevel"] = 1
    city = City(int(seed), float(pixel_size))
    # Windows are whole tiles side by side: at least _WINDOW_PX wide so small blocks
    # do not multiply the per-window overhead, and never more than that, so memory stays flat.
    step = block * max(1, _WINDOW_PX // block)
    with atomic_outputs([image_path, label_path], overwrite=True, check=False) as (tmp_image, tmp_label):
        with (
            rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_MB),
            rasterio.open(tmp_image, "w", **image_profile) as img,
            rasterio.open(tmp_label, "w", **base) as lab,
        ):
            img.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
            img.descriptions = ("red", "green", "blue")
            # Every pixel is a class, so the label raster has no nodata; the table's transparent
            # nodata entry cannot be stored in a GeoTIFF palette and leaves the file unchanged.
            lab.write_colormap(1, colour_table(ISPRS_COLORS))
            lab.descriptions = ("class",)
            # The comma-separated `classes` tag open_labels falls back to; labelmap.class_name_tags
            # would change the file.
            lab.update_tags(1, classes=",".join(ISPRS_CLASSES))
            for row0 in range(0, height, block):
                h = min(block, height - row0)
                city.forget_rows_before(line_range(row0 * pixel_size, 0.0)[0])
                for col0 in range(0, width, step):
                    w = min(step, width - col0)
                    rgb, label = render_window(city, row0, col0, h, w)
                    window = Window(col0, row0, w, h)
                    img.write(rgb, window=window)
                    lab.write(label, 1, window=window)
                if progress is not None:
                    progress(row0 + h, height)
