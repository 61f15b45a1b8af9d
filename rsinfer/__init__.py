"""rsinfer: streaming semantic segmentation of huge georeferenced rasters."""

__version__ = "0.1.0"
