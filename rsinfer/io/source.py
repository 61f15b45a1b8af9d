"""Opening an input raster and deciding how the model sees it: bands, value scale, georeferencing.

Every problem with the file is raised here as an :class:`InputError` whose message names
the file, so the CLI can report it as one line.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

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
    # Multiplier mapping raw values onto the model's input range.
    value_scale: float
    has_mask: bool  # False when every pixel is valid (no nodata, alpha or internal mask)


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
        resolved = resolve_bands(path, src, band_names, bands)
        flags = [src.mask_flag_enums[b - 1] for b in set(resolved)]
        has_mask = not all(f == [MaskFlags.all_valid] for f in flags)
        tiled = bool(src.profile.get("tiled")) and src.block_shapes[0][0] > 1
        if src.crs is None:
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
            value_scale=value_scale if value_scale is not None else default_value_scale(dtype, input_range),
            has_mask=has_mask,
        )


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
