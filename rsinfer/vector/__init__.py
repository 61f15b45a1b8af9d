"""Polygons from label maps: ``vectorize_labels`` streams a label raster into a vector layer."""

from .run import VectorizeReport, vectorize_labels
from .sink import DRIVERS, EXTRA_HINT, require_pyogrio

__all__ = ["DRIVERS", "EXTRA_HINT", "VectorizeReport", "require_pyogrio", "vectorize_labels"]
