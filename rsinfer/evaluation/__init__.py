"""Scoring a label map against reference labels: confusion matrix, IoU, F1, OA.

- :mod:`.metrics`: the metrics of a confusion matrix (a pure function), the result of an
  evaluation and its JSON report.
- :mod:`.streaming`: both rasters read window by window into the confusion matrix.

The label-map readers (GeoTIFF or zarr) are :mod:`rsinfer.io.labelmap`'s. Nothing here
imports torch.
"""

from .metrics import EvalResult, confusion_metrics, write_json
from .streaming import MAX_CLASSES, check_alignment, evaluate_rasters, resolve_classes, window_grid

__all__ = [
    "MAX_CLASSES",
    "EvalResult",
    "check_alignment",
    "confusion_metrics",
    "evaluate_rasters",
    "resolve_classes",
    "window_grid",
    "write_json",
]
