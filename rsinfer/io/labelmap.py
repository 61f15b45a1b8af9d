"""The label map as rsinfer writes and reads it: nodata, finished rows, tags, colour table.

Everything that writes a label map (``segment``'s writers, ``synth``'s reference labels)
and everything that reads one (``eval``) takes these definitions from here. Nothing in
this module imports torch, so ``eval`` stays light.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..tiling import Span

# Label of pixels with no valid input (and the label map's nodata value).
NODATA_LABEL = 255

# GeoTIFF tags: band 1 carries the class names, the dataset carries provenance.
TAG_CLASS_NAMES = "CLASS_NAMES"  # JSON list, in class order
TAG_SOFTWARE = "rsinfer"


@dataclass
class FinishedRows:
    """Rows ``rows`` of the output, ready to write."""

    rows: Span
    labels: np.ndarray  # (h, W) uint8, NODATA_LABEL where invalid
    scores: np.ndarray | None = None  # (K, h, W): uint8 probabilities (quantized) or float32 raw scores


def colour_table(class_colors: Sequence[Sequence[int]]) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table of a label map: one opaque colour per class, nodata transparent."""
    table = {i: (int(c[0]), int(c[1]), int(c[2]), 255) for i, c in enumerate(class_colors)}
    table[NODATA_LABEL] = (0, 0, 0, 0)
    return table


def class_name_tags(class_names: Sequence[str]) -> dict[str, str]:
    """Band tags naming the classes: a JSON list, and one ``CLASS_<i>`` tag per class."""
    return {TAG_CLASS_NAMES: json.dumps(list(class_names)), **{f"CLASS_{i}": n for i, n in enumerate(class_names)}}
