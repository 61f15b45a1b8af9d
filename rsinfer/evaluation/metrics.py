"""Metrics of a confusion matrix, the result of an evaluation and its JSON report.

Metrics, as in the ISPRS benchmark papers: per class IoU = TP / (TP + FP + FN) and
F1 = 2TP / (2TP + FP + FN); OA = trace / total; mIoU and mean F1 are unweighted means
over classes. A class absent from both truth and prediction has no defined score: its
IoU and F1 are NaN and it is left out of the means (so are ignored classes). A class
only predicted, never true, scores 0 and counts.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import RsinferError
from ..io.outputs import commit, partial_path, remove


def confusion_metrics(cm: np.ndarray, exclude: Sequence[int] = ()) -> dict:
    """Metrics of a K×K confusion matrix (rows = truth, columns = prediction).

    Returns a dict of numpy arrays (per class, length K) ``iou``, ``f1``, ``precision``,
    ``recall``, ``support`` (true pixels), ``predicted`` (predicted pixels), and floats
    ``miou``, ``mean_f1``, ``oa`` and the int ``pixels`` (the matrix's total).

    Classes absent from truth and prediction, and the classes in ``exclude``, get NaN
    IoU/F1 and are left out of ``miou`` and ``mean_f1``; a mean over no class is NaN, as
    is ``oa`` of an empty matrix.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix is square, not {cm.shape}")
    cm = cm.astype(np.int64, copy=False)
    k = cm.shape[0]
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    fp = predicted - tp
    fn = support - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (tp + fp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
        precision = tp / predicted
        recall = tp / support
    for c in exclude:
        if 0 <= c < k:
            iou[c] = f1[c] = np.nan
    total = int(cm.sum())
    return {
        "iou": iou,
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "support": support,
        "predicted": predicted,
        "miou": _nanmean(iou),
        "mean_f1": _nanmean(f1),
        "oa": float(tp.sum() / total) if total else math.nan,
        "pixels": total,
    }


def _nanmean(values: np.ndarray) -> float:
    v = values[~np.isnan(values)]
    return float(v.mean()) if v.size else math.nan


@dataclass
class EvalResult:
    """The outcome of :func:`rsinfer.evaluation.evaluate_rasters`."""

    pred: str
    labels: str
    confusion_matrix: np.ndarray  # (K, K) int64, rows = truth, columns = prediction
    class_names: tuple[str, ...]
    ignore: tuple[int, ...]
    iou: np.ndarray
    f1: np.ndarray
    miou: float
    oa: float
    mean_f1: float
    pixels: int  # pixels counted (valid in both rasters, not ignored)
    support: np.ndarray  # true pixels per class
    predicted: np.ndarray  # predicted pixels per class (on counted pixels)
    width: int = 0
    height: int = 0
    windows: int = 0  # windows read from each raster
    seconds: float = 0.0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def scored_classes(self) -> int:
        """Classes that enter the means (IoU not NaN)."""
        return int((~np.isnan(self.iou)).sum())

    def to_dict(self) -> dict:
        """JSON-ready: NaN (undefined score) becomes ``null``."""
        return {
            "pred": self.pred,
            "labels": self.labels,
            "classes": list(self.class_names),
            "num_classes": self.num_classes,
            "ignore_index": list(self.ignore),
            "confusion_matrix": self.confusion_matrix.tolist(),
            "iou": _json_floats(self.iou),
            "f1": _json_floats(self.f1),
            "miou": _json_float(self.miou),
            "oa": _json_float(self.oa),
            "mean_f1": _json_float(self.mean_f1),
            "pixels": int(self.pixels),
            "class_pixels": [int(v) for v in self.support],
            "predicted_pixels": [int(v) for v in self.predicted],
            "note": "rows of confusion_matrix are LABELS (truth), columns PRED; iou/f1 are null for classes absent "
            "from both and for ignored classes, which miou and mean_f1 leave out",
        }

    def to_json(self) -> str:
        """The JSON report: :meth:`to_dict`, indented, one line per confusion-matrix row."""
        items = []
        for key, value in self.to_dict().items():
            if key == "confusion_matrix":
                text = "[\n" + ",\n".join("    " + json.dumps(row) for row in value) + "\n  ]"
            else:
                text = json.dumps(value, allow_nan=False)
            items.append(f"  {json.dumps(key)}: {text}")
        return "{\n" + ",\n".join(items) + "\n}\n"


def _json_float(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def _json_floats(values: np.ndarray) -> list:
    return [_json_float(float(v)) for v in values]


def write_json(result: EvalResult, path: str | os.PathLike) -> None:
    """Write ``result.to_json()`` to ``path`` by the output policy: a partial file beside it, then a rename.

    Whether ``path`` may be replaced is the caller's to check (``rsinfer.io.outputs.check_outputs``),
    before the work.
    """
    path = os.fspath(path)
    if os.path.isdir(path):  # commit() would swap a directory store out for the file
        raise RsinferError(f"{path}: cannot write (Is a directory)")
    partial = partial_path(path)
    try:
        with open(partial, "w", encoding="utf-8") as fh:
            fh.write(result.to_json())
        commit(partial, path)
    except OSError as err:
        raise RsinferError(f"{path}: cannot write ({err.strerror or err})") from None
    finally:
        remove(partial)  # gone after a commit; left behind by a failed write or rename
