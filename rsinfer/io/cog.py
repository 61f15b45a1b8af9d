"""Cloud Optimized GeoTIFFs made by GDAL's COG driver from a finished plain GeoTIFF.

The writers stream rows into a tiled scratch GeoTIFF; :func:`cog_copy` then has GDAL
rewrite it as a COG (header and every IFD first, overviews before the full-resolution
tiles, which is the layout COG readers expect). GDAL builds the overviews into a temporary
file beside the destination (``<dst>.ovr.tmp``) and copies block by block, so memory stays
within the block cache set here whatever the raster's size.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import RsinferError

# What rsinfer's GeoTIFFs are unless the user's creation options (--co KEY=VALUE) say otherwise.
# DEFLATE rather than ZSTD: every GDAL build and GIS reads it; ZSTD is one --co away.
COG_DEFAULTS: dict[str, str] = {
    "COMPRESS": "DEFLATE",
    "BLOCKSIZE": "512",
    "BIGTIFF": "IF_SAFER",
    "NUM_THREADS": "ALL_CPUS",  # compression on every core (overviews are computed on one)
    "OVERVIEWS": "AUTO",
}
# Labels: the most frequent class of each block of pixels; probabilities: their mean. Probabilities
# vary smoothly across pixels, so horizontal differencing shrinks them; class ids do not.
LABEL_OPTIONS = {"OVERVIEW_RESAMPLING": "MODE", "PREDICTOR": "NO"}
PROB_OPTIONS = {"OVERVIEW_RESAMPLING": "AVERAGE", "PREDICTOR": "STANDARD"}

# The scratch file the rows stream into: tiled like the COG, fast compression (it is read once).
SCRATCH_PROFILE: dict[str, object] = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": 512,
    "blockysize": 512,
    "compress": "deflate",
    "zlevel": 1,
    "predictor": 1,
    "BIGTIFF": "IF_SAFER",
}


def scratch_path(partial: str) -> str:
    """Where the rows of ``partial`` stream before the COG copy."""
    return f"{partial}.scratch.tif"


def temporary_files(dst: str) -> list[str]:
    """Files GDAL's COG driver makes beside ``dst`` while it works (removed by GDAL, unless it is killed)."""
    return [f"{dst}.ovr.tmp", f"{dst}.msk.ovr.tmp"]


def creation_options(base: Mapping[str, str], user: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    """COG_DEFAULTS, then ``base`` (labels' or probabilities'), then the user's options (keys case-insensitive)."""
    options = {**COG_DEFAULTS, **base}
    for key, value in user:
        options[key.strip().upper()] = str(value)
    return options


def parse_creation_options(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` strings (the ``--co`` option) as ``OutputSpec.creation_options``, checked
    against GDAL's COG driver (:func:`check_creation_options`): a bad one is one RsinferError."""
    pairs = []
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise RsinferError(f"--co {text}: expected KEY=VALUE, e.g. --co COMPRESS=ZSTD")
        pairs.append((key.strip().upper(), value.strip()))
    check_creation_options(pairs)
    return tuple(pairs)


# What GDAL says about a creation option it ignores or cannot use.
_BAD_OPTION = re.compile(r"option|not recognised|Bad value|Unsupported|resampl", re.IGNORECASE)


def _gdal_message(text: str) -> str:
    """GDAL's own words in rasterio's log line."""
    quoted = re.search(r"msg='(.*)'$", text.strip())
    return (quoted.group(1) if quoted else re.sub(r"^CPLE_\w+ in ", "", text)).strip()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_creation_options(user: Iterable[tuple[str, str]]) -> None:
    """Refuse creation options GDAL's COG driver does not know or whose value it rejects.

    GDAL only warns about those (and then ignores them), so this makes a 16×16 COG in memory
    with them and turns what GDAL says about creation options into one RsinferError.
    """
    import numpy as np
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    # one overview level even at 16×16, so that the resampling options are tried too
    options = {"OVERVIEW_COUNT": "1", **creation_options(LABEL_OPTIONS, user)}
    collect, logger = _Collect(), logging.getLogger("rasterio._env")
    profile = dict(driver="GTiff", width=16, height=16, count=1, dtype="uint8", crs="EPSG:4326")
    # rasterio logs GDAL's warnings at WARNING and the errors it turns into exceptions at INFO
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(collect)
    try:
        with MemoryFile() as mem:
            with mem.open(transform=from_origin(0, 16, 1, 1), **profile) as ds:
                ds.write(np.zeros((1, 16, 16), np.uint8))
            dst = f"/vsimem/rsinfer-check-{os.getpid()}.tif"
            try:
                rasterio.shutil.copy(mem.name, dst, driver="COG", **options)
            finally:
                if rasterio.shutil.exists(dst):
                    rasterio.shutil.delete(dst)
    except Exception as err:
        collect.messages.append(str(err))
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
        logger.propagate = propagate
    bad = [_gdal_message(m) for m in collect.messages if _BAD_OPTION.search(m)]
    if bad:
        raise RsinferError(f"--co {' '.join(f'{k}={v}' for k, v in user)}: {bad[0]}")


def cache_mb(width: int, bands: int, block: int = 512) -> int:
    """GDAL block cache for a COG copy: a few block rows of source, overview and destination."""
    return int(min(1024, max(64, 4 * bands * width * block / 2**20)))


def check_room(src: str, dst_folder: str) -> None:
    """Refuse a COG copy on a disk that cannot hold it: GDAL can crash, not fail, when the disk
    fills while it builds overviews. The copy needs about 1/3 of the data for the temporary
    overviews and 4/3 for the COG itself, at a compression close to the scratch file's."""
    need = os.path.getsize(src) * 5 // 3 + 2**20
    free = shutil.disk_usage(dst_folder).free
    if free < need:
        raise OSError(28, f"No space left on device for the COG ({free / 2**20:.0f} MiB free, need {need / 2**20:.0f})")


def cog_copy(src: str, dst: str, options: Mapping[str, str]) -> None:
    """Write ``src`` (a finished GeoTIFF) as a COG at ``dst`` with GDAL's COG driver.

    Colour table, nodata, band descriptions, scales/offsets and metadata tags are copied from
    ``src``. A failure removes ``dst`` and GDAL's temporary files and raises.
    """
    import rasterio
    import rasterio.shutil

    with rasterio.open(src) as ds:
        width, bands = ds.width, ds.count
    check_room(src, str(Path(dst).resolve().parent))
    try:
        with rasterio.Env(GDAL_CACHEMAX=cache_mb(width, bands)):
            rasterio.shutil.copy(src, dst, driver="COG", **options)
    except BaseException:
        for p in [dst, *temporary_files(dst)]:
            if os.path.lexists(p):
                os.remove(p)
        raise


def is_cog(path: str) -> bool:
    """GDAL's own verdict: the file opens with ``LAYOUT=COG`` in its IMAGE_STRUCTURE metadata."""
    import rasterio

    with rasterio.open(path) as ds:
        return ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
