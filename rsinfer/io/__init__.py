"""Raster input and label-map output."""
