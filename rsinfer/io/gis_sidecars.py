"""Files beside a GeoTIFF label map that make GIS tools show the model's classes by name.

- ``<out>.aux.xml``: GDAL's PAM sidecar, where GDAL itself keeps a GeoTIFF band's category
  names and raster attribute table (RAT). GDAL (and everything built on it: QGIS, ArcGIS's
  GDAL reader, rasterio's ``gdalinfo``) merges it into the raster on open: category *i*
  names pixel value *i*; the RAT has one thematic row per class with its value, name and
  colour, each column marked with GDAL's field usage (``GFU_MinMax`` for the value,
  ``GFU_Name``, ``GFU_Red``/``Green``/``Blue``/``Alpha``).
- ``<stem>.qml``: a QGIS layer style, which QGIS applies to ``<stem>.tif`` when it adds the
  layer: a paletted renderer listing exactly the model's classes with their names and
  colours (not the 256 entries of a GeoTIFF colour table), nodata (255) transparent.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from .labelmap import NODATA_LABEL

# GDAL's enum values as GDAL writes them in the XML (gdal.h: GDALRATFieldType, GDALRATFieldUsage).
GFT_INTEGER, GFT_STRING = 0, 2
GFU_NAME, GFU_MINMAX, GFU_RED, GFU_GREEN, GFU_BLUE, GFU_ALPHA = 2, 5, 6, 7, 8, 9
RAT_FIELDS = (
    ("Value", GFT_INTEGER, GFU_MINMAX),
    ("Class", GFT_STRING, GFU_NAME),
    ("Red", GFT_INTEGER, GFU_RED),
    ("Green", GFT_INTEGER, GFU_GREEN),
    ("Blue", GFT_INTEGER, GFU_BLUE),
    ("Alpha", GFT_INTEGER, GFU_ALPHA),
)


def aux_xml_path(path: str) -> str:
    """GDAL's PAM sidecar of ``path``: ``labels.tif`` → ``labels.tif.aux.xml``."""
    return f"{path}.aux.xml"


def qml_path(path: str) -> str:
    """The QGIS style QGIS loads with ``path``: ``labels.tif`` → ``labels.qml``."""
    p = Path(path)
    return str(p.with_name(p.stem + ".qml"))


def _text(parent: ET.Element, tag: str, text: object) -> ET.Element:
    el = ET.SubElement(parent, tag)
    el.text = str(text)
    return el


def _serialize(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def pam_aux_xml(class_names: Sequence[str], class_colors: Sequence[Sequence[int]]) -> str:
    """The ``.aux.xml`` of a label map: band 1's category names and thematic RAT."""
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    categories = ET.SubElement(band, "CategoryNames")
    for name in class_names:
        _text(categories, "Category", name)
    rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    for i, (name, ftype, usage) in enumerate(RAT_FIELDS):
        field = ET.SubElement(rat, "FieldDefn", index=str(i))
        _text(field, "Name", name)
        _text(field, "Type", ftype)
        _text(field, "Usage", usage)
    for value, (name, colour) in enumerate(zip(class_names, class_colors, strict=True)):
        row = ET.SubElement(rat, "Row", index=str(value))
        for cell in (value, name, int(colour[0]), int(colour[1]), int(colour[2]), 255):
            _text(row, "F", cell)
    return _serialize(root)


def qgis_style(class_names: Sequence[str], class_colors: Sequence[Sequence[int]]) -> str:
    """A QGIS ``.qml`` layer style: paletted renderer on band 1, one entry per class, nodata transparent."""
    root = ET.Element("qgis", version="3.28.0", styleCategories="Symbology")
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(
        pipe, "rasterrenderer", type="paletted", band="1", opacity="1", alphaBand="-1", nodataColor=""
    )
    transparency = ET.SubElement(renderer, "rasterTransparency")
    singles = ET.SubElement(transparency, "singleValuePixelList")
    ET.SubElement(singles, "pixelListEntry", min=str(NODATA_LABEL), max=str(NODATA_LABEL), percentTransparent="100")
    palette = ET.SubElement(renderer, "colorPalette")
    for value, (name, colour) in enumerate(zip(class_names, class_colors, strict=True)):
        r, g, b = (int(c) for c in colour[:3])
        ET.SubElement(
            palette, "paletteEntry", value=str(value), color=f"#{r:02x}{g:02x}{b:02x}", alpha="255", label=name
        )
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    _text(root, "blendMode", 0)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + _serialize(root)


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def check_xml(path: str, root_tag: str) -> None:
    """Raise if ``path`` is not a complete XML document with ``root_tag`` at its root."""
    root = ET.parse(path).getroot()
    if root.tag != root_tag:
        raise ValueError(f"{path}: root element {root.tag}, expected {root_tag}")
