"""Opening an input raster and deciding how the model sees it: bands, value scale, georeferencing.

A palette raster (one band of colour indices) is seen through its colour table, as RGB.
Integer data is scaled from its type's range, or from the bits its ``NBITS`` tag declares
(12-bit data stored as uint16); ``--scale`` overrides both.

Every problem with the file is raised here as an :class:`InputError` whose message names
the file, so the CLI can report it as one line.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioError

from ..errors import InputError

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")

# Names a model config may use for its input bands, mapped to GDAL colour interpretations.
_COLORINTERP_NAMES = {
    "red": ColorInterp.red,
    "green": ColorInterp.green,
    "blue": ColorInterp.blue,
    "gray": ColorInterp.gray,
}
_RGB = ("red", "green", "blue")

# Integer types whose full range imagery rarely fills: NBITS is honoured, and a
# default scale from the full range is checked against the values the first tiles hold.
_WIDE_UNSIGNED = ("uint16", "uint32")


class InputWarning(UserWarning):
    """Something about the input the user should know, but that does not stop the job."""


@dataclass(frozen=True)
class RasterInfo:
    """What the rest of the pipeline needs to know about the input, read once."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs: object  # rasterio CRS or None
    transform: object  # affine.Affine
    nodata: float | None
    block_shape: tuple[int, int]
    tiled: bool
    # 1-based band indexes fed to the model, in model order (may repeat: gray → RGB).
    bands: tuple[int, ...]
    # Multiplier mapping raw values (palette colours for a palette raster) onto the model's input range.
    value_scale: float
    # False when GDAL marks every pixel valid (no nodata, alpha or internal mask). Non-finite
    # float values are invalid pixels even so: the reader checks float data itself.
    has_mask: bool
    # Palette raster: the colour table as a lookup (entries, len(bands)) uint8 from colour
    # index to the model's bands (for an RGB model, (256, 3) red, green, blue of a uint8
    # raster); ``bands`` then repeats the palette band. Entries missing from the table are 0.
    palette: np.ndarray | None = field(default=None, compare=False)
    # Ground control points (rasterio GroundControlPoint) and their CRS, as the file has them.
    # A raster georeferenced only by GCPs has crs None and the identity transform: the
    # output writer carries the GCPs over instead.
    gcps: list[Any] = field(default_factory=list, compare=False)
    gcp_crs: object = None  # rasterio CRS or None
    # The model's input range, and whether the reader should warn when the first tiles use
    # little of the type's range (uint16/uint32 scaled by default: no --scale, no NBITS).
    input_range: float = 255.0
    check_range: bool = False


def open_raster(path: str | Path):
    """Open ``path`` with rasterio, turning every failure into a one-line InputError."""
    path = str(path)
    if not Path(path).exists() and "://" not in path and not path.startswith("/vsi"):
        raise InputError(f"{path}: no such file")
    try:
        return rasterio.open(path)
    except RasterioError as err:
        raise InputError(f"{path}: not a raster rasterio can read ({first_line(err)})") from None


def inspect_raster(
    path: str | Path,
    band_names: tuple[str, ...],
    bands: tuple[int, ...] | None = None,
    input_range: float = 255.0,
    value_scale: float | None = None,
) -> RasterInfo:
    """Read the header of ``path`` and resolve which bands feed a model taking ``band_names``."""
    path = str(path)
    with open_raster(path) as src:
        if src.count < 1:
            raise InputError(f"{path}: the raster has no bands")
        dtype = src.dtypes[0]
        if dtype not in SUPPORTED_DTYPES:
            raise InputError(f"{path}: data type {dtype} is not supported (use one of {', '.join(SUPPORTED_DTYPES)})")
        palette = palette_lookup(src, band_names, bands)
        if palette is not None:
            resolved = (palette[0],) * len(band_names)
        else:
            resolved = resolve_bands(path, src, band_names, bands)
        flags = [src.mask_flag_enums[b - 1] for b in set(resolved)]
        has_mask = not all(f == [MaskFlags.all_valid] for f in flags)
        tiled = bool(src.profile.get("tiled")) and src.block_shapes[0][0] > 1
        gcps, gcp_crs = src.gcps
        if src.crs is None and gcps:
            where = f"in {gcp_crs.to_string()}" if gcp_crs is not None else "without a CRS"
            warnings.warn(
                f"{path}: the raster has no geotransform but is georeferenced by {len(gcps)} GCPs ({where}); "
                "the output keeps them",
                InputWarning,
                stacklevel=2,
            )
        elif src.crs is None:
            warnings.warn(
                f"{path}: the raster has no CRS; the output will have none either", InputWarning, stacklevel=2
            )
        if not tiled and max(src.width, src.height) > 2048:
            warnings.warn(
                f"{path}: the raster is not internally tiled (blocks of {src.block_shapes[0][0]}x"
                f"{src.block_shapes[0][1]}); reads will be slow. `gdal_translate -co TILED=YES` fixes it",
                InputWarning,
                stacklevel=2,
            )
        nbits = declared_nbits(src, resolved[0]) if dtype in _WIDE_UNSIGNED else None
        if value_scale is not None:
            scale = value_scale
        elif palette is not None:  # colours from the table are 0-255 whatever the index type
            scale = default_value_scale("uint8", input_range)
        elif nbits is not None:
            scale = float(input_range) / (2**nbits - 1)
        else:
            scale = default_value_scale(dtype, input_range)
        return RasterInfo(
            path=path,
            width=src.width,
            height=src.height,
            count=src.count,
            dtype=dtype,
            crs=src.crs,
            transform=src.transform,
            nodata=src.nodata,
            block_shape=tuple(src.block_shapes[0]),
            tiled=tiled,
            bands=resolved,
            value_scale=scale,
            has_mask=has_mask,
            palette=palette[1] if palette is not None else None,
            gcps=list(gcps),
            gcp_crs=gcp_crs,
            input_range=float(input_range),
            check_range=value_scale is None and palette is None and nbits is None and dtype in _WIDE_UNSIGNED,
        )


def palette_lookup(src, band_names: tuple[str, ...], bands: tuple[int, ...] | None) -> tuple[int, np.ndarray] | None:
    """``(band, lookup)`` when the model's bands come from a palette band's colour table, else None.

    That is when the raster's one data band is a palette band with a colour table, the model
    takes red/green/blue, and ``bands`` (if given) names only that band, once per model band.
    ``lookup`` is (entries, len(band_names)) uint8: colour index to the model's bands.
    """
    data_bands = [i + 1 for i, ci in enumerate(src.colorinterp) if ci != ColorInterp.alpha]
    if len(data_bands) != 1 or not set(band_names) <= set(_RGB):
        return None
    band = data_bands[0]
    dtype = src.dtypes[band - 1]
    if src.colorinterp[band - 1] != ColorInterp.palette or dtype not in ("uint8", "uint16"):
        return None
    if bands and (len(bands) != len(band_names) or set(bands) != {band}):
        return None
    try:
        colormap = src.colormap(band)
    except ValueError:  # palette interpretation without a colour table
        return None
    table = np.zeros((np.iinfo(np.dtype(dtype)).max + 1, 3), dtype=np.uint8)
    for index, rgba in colormap.items():
        if 0 <= index < len(table):
            table[index] = rgba[:3]
    return band, np.ascontiguousarray(table[:, [_RGB.index(n) for n in band_names]])


def declared_nbits(src, band: int) -> int | None:
    """The bits per value the file declares (GDAL's ``NBITS``, e.g. 12-bit data in uint16), if fewer than its type's."""
    value = src.tags(ns="IMAGE_STRUCTURE").get("NBITS") or src.tags(band, ns="IMAGE_STRUCTURE").get("NBITS")
    try:
        nbits = int(value)
    except (TypeError, ValueError):
        return None
    return nbits if 1 <= nbits < 8 * np.dtype(src.dtypes[band - 1]).itemsize else None


def resolve_bands(path: str, src, band_names: tuple[str, ...], bands: tuple[int, ...] | None) -> tuple[int, ...]:
    """Pick the 1-based bands feeding a model whose inputs are ``band_names``.

    Explicit ``bands`` win. Otherwise the colour interpretation of the file decides (a
    B,G,R,A file feeds bands 3,2,1 to an RGB model); otherwise the first data bands in
    order; a single gray band feeds every input of an RGB model.
    """
    want = len(band_names)
    if bands:
        bad = [b for b in bands if not 1 <= b <= src.count]
        if bad:
            raise InputError(f"{path}: band {bad[0]} does not exist (the raster has {src.count} bands)")
        if len(bands) != want:
            raise InputError(
                f"{path}: --bands gives {len(bands)} bands but the model takes {want} ({', '.join(band_names)})"
            )
        return tuple(bands)
    interp = list(src.colorinterp)
    by_interp = {ci: i + 1 for i, ci in reversed(list(enumerate(interp)))}
    if all(n in _COLORINTERP_NAMES and _COLORINTERP_NAMES[n] in by_interp for n in band_names):
        return tuple(by_interp[_COLORINTERP_NAMES[n]] for n in band_names)
    data_bands = [i + 1 for i, ci in enumerate(interp) if ci != ColorInterp.alpha]
    if len(data_bands) == want:
        return tuple(data_bands)
    if len(data_bands) == 1 and set(band_names) <= {"red", "green", "blue"}:
        warnings.warn(
            f"{path}: single-band raster; feeding band 1 to all of {', '.join(band_names)}", InputWarning, stacklevel=3
        )
        return (data_bands[0],) * want
    raise InputError(
        f"{path}: the model takes {want} bands ({', '.join(band_names)}) but the raster has "
        f"{len(data_bands)} data bands; choose them with --bands"
    )


def default_value_scale(dtype: str, input_range: float) -> float:
    """Integer data is mapped from its type's full range onto ``input_range``; floats pass as they are."""
    if np.issubdtype(np.dtype(dtype), np.integer):
        return float(input_range) / float(np.iinfo(np.dtype(dtype)).max)
    return 1.0


def first_line(err: BaseException) -> str:
    """The most specific message of a rasterio error: GDAL's own, when rasterio chained it."""
    cause = err.__cause__ or err.__context__
    if cause is not None and str(cause).strip():
        err = cause
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
