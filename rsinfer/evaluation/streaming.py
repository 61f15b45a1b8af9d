"""Streaming two label maps into a confusion matrix, window by window.

Both rasters are read over a grid aligned on their blocks (row bands of at least 512
rows, at most 4096 columns wide), so memory does not grow with the raster. Each window
adds its ``np.bincount`` of ``truth * K + prediction`` to a K×K int64 confusion matrix
(rows = truth, columns = prediction); the metrics are read off the matrix at the end by
:func:`rsinfer.evaluation.metrics.confusion_metrics`.

Either raster may be a GeoTIFF or a zarr group (:func:`rsinfer.io.labelmap.open_labels`,
which also says what each file's nodata is). A pixel counts when
  * LABELS is not its nodata,
  * PRED is not its nodata, and
  * the LABELS class is not one of the ``ignore`` classes (e.g. ISPRS clutter).
A prediction of an ignored class on a counted pixel is an error like any other.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, RsinferError
from ..io.labelmap import LabelRaster, open_labels
from ..io.source import InputWarning
from .metrics import EvalResult, confusion_metrics

MAX_CLASSES = 1024  # a K×K matrix this size is 8 MB; more classes means the raster is not a label map
ROWS_TARGET = 512  # window rows: a multiple of the block height, at least this many
COLS_TARGET = 4096  # window columns: a multiple of the block width, at most about this many


def check_alignment(pred: LabelRaster, labels: LabelRaster) -> None:
    """Same size, and same CRS and pixel grid where both say; a warning where that cannot be checked."""
    if (pred.width, pred.height) != (labels.width, labels.height):
        raise InputError(
            f"{pred.path} is {pred.width}x{pred.height} px but {labels.path} is "
            f"{labels.width}x{labels.height} px; they must cover the same pixel grid"
        )
    missing = [r.path for r in (pred, labels) if r.crs is None]
    if missing:
        warnings.warn(
            f"{' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no CRS; cannot check that "
            f"{pred.path} and {labels.path} are on the same grid (compared pixel by pixel)",
            InputWarning,
            stacklevel=3,
        )
        return
    if pred.crs != labels.crs:
        raise InputError(
            f"{pred.path} and {labels.path} have different CRS ({_crs_name(pred.crs)} vs "
            f"{_crs_name(labels.crs)}); reproject one onto the other's grid"
        )
    if pred.transform is None or labels.transform is None:
        which = pred.path if pred.transform is None else labels.path
        warnings.warn(
            f"{which} has no geotransform; cannot check that {pred.path} and {labels.path} are on the same grid",
            InputWarning,
            stacklevel=3,
        )
        return
    t1, t2 = pred.transform, labels.transform
    pixel = min(abs(t1.a), abs(t1.e)) or 1.0
    if not np.allclose(tuple(t1)[:6], tuple(t2)[:6], rtol=0, atol=1e-3 * pixel):
        raise InputError(
            f"{pred.path} and {labels.path} have different pixel grids (origin {t1.c:g}, {t1.f:g} and "
            f"pixel {t1.a:g} x {t1.e:g} vs origin {t2.c:g}, {t2.f:g} and pixel {t2.a:g} x {t2.e:g})"
        )


def _crs_name(crs) -> str:
    try:
        return crs.to_string() or crs.to_wkt()[:60]
    except Exception:
        return str(crs)[:60]


def _step(block: int, target: int, size: int) -> int:
    """A window side: a multiple of ``block`` near ``target`` (never the whole raster for a big one)."""
    if block <= 0 or block >= size:
        return max(1, min(size, target))
    if block >= target:
        return block if block <= 2 * target else target
    return min(size, block * -(-target // block))


def window_grid(width: int, height: int, rows: int, cols: int) -> list[tuple[slice, slice]]:
    """Row-major windows of ``rows`` x ``cols`` (smaller at the right and bottom edges) that partition the raster."""
    return [
        (slice(r, min(r + rows, height)), slice(c, min(c + cols, width)))
        for r in range(0, height, rows)
        for c in range(0, width, cols)
    ]


def default_window(pred: LabelRaster, labels: LabelRaster) -> tuple[int, int]:
    bh = max(pred.block_shape[0], labels.block_shape[0])
    bw = max(pred.block_shape[1], labels.block_shape[1])
    return _step(bh, ROWS_TARGET, pred.height), _step(bw, COLS_TARGET, pred.width)


@dataclass
class _Counter:
    """Counts one window: which pixels count, and the bincount of ``truth * K + prediction``.

    Two 8-bit rasters (the usual case) take a fast path: one 65 536-bin bincount of
    ``truth << 8 | prediction`` over every pixel, nodata and ignored rows and columns
    zeroed afterwards (several times faster than masking first). Other types mask first.
    """

    pred: LabelRaster
    labels: LabelRaster
    num_classes: int | None
    ignore: tuple[int, ...]

    def __call__(self, window: tuple[slice, slice]) -> np.ndarray:
        rows, cols = window
        t = self.labels.read(rows, cols)
        p = self.pred.read(rows, cols)
        where = f"rows {rows.start}-{rows.stop}, cols {cols.start}-{cols.stop}"
        if t.dtype == np.uint8 and p.dtype == np.uint8:
            return self._count_uint8(t, p, where)
        valid = (t != self.labels.nodata) & (p != self.pred.nodata)
        if self.ignore:
            valid &= ~np.isin(t, self.ignore)
        t, p = t[valid], p[valid]
        if t.size == 0:
            return np.zeros((self.num_classes or 0,) * 2, dtype=np.int64)
        tmax = self._check_range(self.labels, int(t.min()), int(t.max()), where)
        pmax = self._check_range(self.pred, int(p.min()), int(p.max()), where)
        k = self.num_classes or max(tmax, pmax) + 1
        idx = t.astype(np.intp) * k
        idx += p
        return np.bincount(idx, minlength=k * k).reshape(k, k).astype(np.int64, copy=False)

    def _count_uint8(self, t: np.ndarray, p: np.ndarray, where: str) -> np.ndarray:
        code = t.astype(np.uint16)
        code <<= 8
        code |= p
        table = np.bincount(code.ravel(), minlength=1 << 16).reshape(256, 256)  # [truth, prediction]
        for v in (self.labels.nodata, *self.ignore):
            if _is_byte(v):
                table[int(v), :] = 0
        if _is_byte(self.pred.nodata):
            table[:, int(self.pred.nodata)] = 0
        t_seen = np.flatnonzero(table.any(axis=1))
        if t_seen.size == 0:
            return np.zeros((self.num_classes or 0,) * 2, dtype=np.int64)
        p_seen = np.flatnonzero(table.any(axis=0))
        tmax = self._check_range(self.labels, 0, int(t_seen[-1]), where)
        pmax = self._check_range(self.pred, 0, int(p_seen[-1]), where)
        k = self.num_classes or max(tmax, pmax) + 1
        return table[:k, :k].astype(np.int64, copy=True)

    def _check_range(self, raster: LabelRaster, lo: int, hi: int, where: str) -> int:
        if lo < 0:
            raise InputError(f"{raster.path}: negative class id {lo} in {where}; class ids start at 0")
        k = self.num_classes
        if k is not None and hi >= k:
            raise InputError(
                f"{raster.path}: class id {hi} in {where}, but there are {k} classes "
                f"(set --num-classes, or --ignore-index for classes of LABELS left out)"
            )
        if hi >= MAX_CLASSES:
            raise InputError(
                f"{raster.path}: class id {hi} in {where}; that is not a label map (at most {MAX_CLASSES} classes)"
            )
        return hi


def _is_byte(v) -> bool:
    return v is not None and float(v).is_integer() and 0 <= v <= 255


def _run(
    work: Callable[[tuple[slice, slice]], np.ndarray], windows: list[tuple[slice, slice]], workers: int
) -> Generator[tuple[tuple[slice, slice], np.ndarray], None, None]:
    """``work(w)`` for each window, in order, on ``workers`` threads a bounded number of windows ahead."""
    if workers <= 1:
        for w in windows:
            yield w, work(w)
        return
    pending: deque = deque()
    depth = 2 * workers
    with ThreadPoolExecutor(workers, thread_name_prefix="rsinfer-eval") as pool:
        try:
            for w in windows:
                pending.append((w, pool.submit(work, w)))
                if len(pending) >= depth:
                    w0, fut = pending.popleft()
                    yield w0, fut.result()
            while pending:
                w0, fut = pending.popleft()
                yield w0, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


def _add(total: np.ndarray, part: np.ndarray) -> np.ndarray:
    if part.shape[0] > total.shape[0]:
        grown = np.zeros_like(part)
        grown[: total.shape[0], : total.shape[1]] = total
        total = grown
    total[: part.shape[0], : part.shape[1]] += part
    return total


def resolve_classes(
    pred: LabelRaster, labels: LabelRaster, num_classes: int | None
) -> tuple[int | None, tuple[str, ...] | None]:
    """K and the class names: --num-classes, else the names PRED (or LABELS) carries, else None (from the data)."""
    names = pred.class_names or labels.class_names
    if pred.class_names and labels.class_names and pred.class_names != labels.class_names:
        warnings.warn(
            f"{pred.path} and {labels.path} name their classes differently; using {pred.path}'s names",
            InputWarning,
            stacklevel=3,
        )
    if num_classes is None:
        return (len(names), names) if names else (None, None)
    if names and len(names) != num_classes:
        warnings.warn(
            f"{pred.path if pred.class_names else labels.path} names {len(names)} classes but "
            f"--num-classes is {num_classes}",
            InputWarning,
            stacklevel=3,
        )
    return num_classes, names


def evaluate_rasters(
    pred: str | os.PathLike,
    labels: str | os.PathLike,
    num_classes: int | None = None,
    ignore: Sequence[int] = (),
    *,
    window: tuple[int, int] | None = None,
    workers: int = 0,
    progress: Callable[[int, int, int], None] | None = None,
) -> EvalResult:
    """Score the label map ``pred`` against the reference ``labels``, streaming both by windows.

    ``num_classes``: K [the class names PRED carries (GeoTIFF band-1 tag ``CLASS_NAMES``,
    zarr ``labels`` attribute ``class_names``), else LABELS', else the largest class id
    seen + 1]. A class id >= K in a counted pixel is an error. ``ignore``: LABELS classes
    left out (see the module docstring for the rules). ``window``: (rows, cols) of the
    read grid [aligned on the files' blocks]. ``workers``: reader threads [2, or 1 on a
    single CPU]. ``progress(done, total, pixels)`` is called after each window.
    """
    ignore = tuple(sorted({int(i) for i in ignore}))
    if num_classes is not None and not 1 <= num_classes <= MAX_CLASSES:
        raise RsinferError(f"--num-classes {num_classes} is out of range (1-{MAX_CLASSES})")
    start = time.perf_counter()
    with open_labels(pred) as p_src, open_labels(labels) as t_src:
        check_alignment(p_src, t_src)
        k, names = resolve_classes(p_src, t_src, num_classes)
        rows, cols = window or default_window(p_src, t_src)
        windows = window_grid(p_src.width, p_src.height, max(1, rows), max(1, cols))
        if workers <= 0:
            workers = min(2, os.cpu_count() or 1)
        cm = np.zeros((k or 0, k or 0), dtype=np.int64)
        counter = _Counter(p_src, t_src, k, ignore)
        pixels_read = 0
        with closing(_run(counter, windows, workers)) as parts:  # threads stop before the files close
            for done, (w, part) in enumerate(parts, 1):
                cm = _add(cm, part)
                pixels_read += (w[0].stop - w[0].start) * (w[1].stop - w[1].start)
                if progress is not None:
                    progress(done, len(windows), pixels_read)
        width, height = p_src.width, p_src.height
    if cm.sum() == 0:
        raise InputError(
            f"{pred} vs {labels}: no pixel is valid in both (nodata"
            f"{', --ignore-index' if ignore else ''}); nothing to score"
        )
    k = cm.shape[0]
    names = (
        tuple(names[:k]) + tuple(f"class {i}" for i in range(len(names), k))
        if names
        else tuple(f"class {i}" for i in range(k))
    )
    m = confusion_metrics(cm, exclude=ignore)
    return EvalResult(
        pred=str(pred),
        labels=str(labels),
        confusion_matrix=cm,
        class_names=names,
        ignore=ignore,
        iou=m["iou"],
        f1=m["f1"],
        miou=m["miou"],
        oa=m["oa"],
        mean_f1=m["mean_f1"],
        pixels=m["pixels"],
        support=m["support"],
        predicted=m["predicted"],
        width=width,
        height=height,
        windows=len(windows),
        seconds=time.perf_counter() - start,
    )
