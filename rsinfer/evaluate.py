"""Scoring a label map against reference labels: confusion matrix, IoU, F1, OA.

Both rasters are streamed window by window over a grid aligned on their blocks (row
bands of at least 512 rows, at most 4096 columns wide), so memory does not grow with
the raster. Each window adds its ``np.bincount`` of ``truth * K + prediction`` to a
K×K int64 confusion matrix (rows = truth, columns = prediction); the metrics are read
off the matrix at the end by :func:`confusion_metrics`, a pure function.

Either raster may be a GeoTIFF (band 1) or a zarr group holding a ``labels`` (y, x)
array, as ``rsinfer segment`` writes them.

A pixel counts when
  * LABELS is not its nodata (the file's nodata value; 255 when it declares none; for
    zarr the ``nodata`` attribute of ``labels``, else 255 — zarr's own fill value is not
    taken as nodata, since zarr defaults it to 0, a real class),
  * PRED is not its nodata (same rule), and
  * the LABELS class is not one of the ``ignore`` classes (e.g. ISPRS clutter).
A prediction of an ignored class on a counted pixel is an error like any other.

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
import threading
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from .errors import InputError, RsinferError
from .io.source import InputWarning, first_line, open_raster

NODATA = 255  # rsinfer's label nodata (rsinfer.stitch.NODATA_LABEL; not imported: that module needs torch)
MAX_CLASSES = 1024  # a K×K matrix this size is 8 MB; more classes means the raster is not a label map
ROWS_TARGET = 512  # window rows: a multiple of the block height, at least this many
COLS_TARGET = 4096  # window columns: a multiple of the block width, at most about this many


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
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
    """The outcome of :func:`evaluate_rasters`."""

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


def _json_float(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def _json_floats(values: np.ndarray) -> list:
    return [_json_float(float(v)) for v in values]


def _json_text(d: dict) -> str:
    """Indented JSON with one line per confusion-matrix row."""
    items = []
    for key, value in d.items():
        if key == "confusion_matrix":
            text = "[\n" + ",\n".join("    " + json.dumps(row) for row in value) + "\n  ]"
        else:
            text = json.dumps(value, allow_nan=False)
        items.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(items) + "\n}\n"


def write_json(result: EvalResult, path: str | os.PathLike) -> None:
    """Write ``result.to_dict()`` under a temporary name in the same folder, then rename it onto ``path``."""
    path = str(path)
    partial = f"{path}.partial-{os.getpid()}"
    try:
        with open(partial, "w", encoding="utf-8") as fh:
            fh.write(_json_text(result.to_dict()))
        os.replace(partial, path)
    except OSError as err:
        raise RsinferError(f"{path}: cannot write ({err.strerror or err})") from None
    finally:
        if os.path.lexists(partial):
            os.remove(partial)


# ---------------------------------------------------------------------------------------------
# label rasters: GeoTIFF or zarr, read by windows
# ---------------------------------------------------------------------------------------------
class LabelRaster:
    """A single-band integer label raster opened for windowed reads (safe across threads)."""

    path: str
    width: int
    height: int
    dtype: np.dtype
    nodata: float
    crs: object  # rasterio CRS or None
    transform: object  # affine.Affine or None
    block_shape: tuple[int, int]
    class_names: tuple[str, ...] | None

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "LabelRaster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check(self) -> None:
        if not np.issubdtype(self.dtype, np.integer):
            raise InputError(f"{self.path}: data type {self.dtype} is not a label map's (integer class ids)")


def is_zarr(path: str) -> bool:
    p = str(path).rstrip("/")
    return p.lower().endswith(".zarr") or (
        os.path.isdir(p) and any(os.path.exists(os.path.join(p, m)) for m in ("zarr.json", ".zgroup"))
    )


def open_labels(path: str | os.PathLike) -> LabelRaster:
    """Open a label map (GeoTIFF or zarr group with ``labels``); problems raise a one-line InputError."""
    path = str(path)
    return _ZarrLabels(path) if is_zarr(path) else _GeoTiffLabels(path)


def _parse_names(value, path: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            warnings.warn(f"{path}: class names {value[:40]!r} are not a JSON list; ignoring them", InputWarning, stacklevel=4)
            return None
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


class _GeoTiffLabels(LabelRaster):
    def __init__(self, path: str):
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        self.path = path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = open_raster(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._handles = [ds]
        self._local.ds = ds
        self._rasterio = rasterio
        if ds.count != 1:
            self.close()
            raise InputError(f"{path}: the raster has {ds.count} bands; a label map has one")
        self.width, self.height = ds.width, ds.height
        self.dtype = np.dtype(ds.dtypes[0])
        self.nodata = ds.nodata if ds.nodata is not None else NODATA
        self.crs = ds.crs
        self.transform = None if (ds.crs is None and ds.transform.is_identity) else ds.transform
        self.block_shape = tuple(ds.block_shapes[0])
        tags = ds.tags(1)
        self.class_names = _parse_names(tags.get("CLASS_NAMES"), path)
        if self.class_names is None and tags.get("classes"):  # `rsinfer synth` label rasters
            self.class_names = tuple(n.strip() for n in tags["classes"].split(","))
        try:
            self._check()
        except InputError:
            self.close()
            raise

    def _dataset(self):
        ds = getattr(self._local, "ds", None)
        if ds is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", self._rasterio.errors.NotGeoreferencedWarning)
                ds = self._rasterio.open(self.path)
            self._local.ds = ds
            with self._lock:
                self._handles.append(ds)
        return ds

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        try:
            return self._dataset().read(1, window=window)
        except RasterioError as err:
            raise InputError(f"{self.path}: cannot read rows {rows.start}-{rows.stop}, cols {cols.start}-{cols.stop} "
                             f"({first_line(err)})") from None

    def close(self) -> None:
        with self._lock:
            for ds in self._handles:
                ds.close()
            self._handles.clear()
        self._local = threading.local()


class _ZarrLabels(LabelRaster):
    def __init__(self, path: str):
        import zarr

        self.path = path
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # consolidated metadata is a v3 extension
                group = zarr.open_group(path, mode="r")
        except Exception as err:  # zarr raises many kinds; all mean the same to the user
            raise InputError(f"{path}: not a zarr group zarr can read ({first_line(err)})") from None
        try:
            arr = group["labels"]
        except KeyError:
            raise InputError(f"{path}: the zarr group has no `labels` array") from None
        if not isinstance(arr, zarr.Array) or arr.ndim != 2:
            raise InputError(f"{path}: `labels` is not a 2-D (y, x) array")
        self._array = arr
        self.height, self.width = arr.shape
        self.dtype = np.dtype(arr.dtype)
        attrs = dict(arr.attrs)
        nodata = attrs.get("nodata", attrs.get("_FillValue"))
        self.nodata = nodata if isinstance(nodata, (int, float)) and not isinstance(nodata, bool) else NODATA
        self.block_shape = tuple(int(c) for c in arr.chunks)
        self.class_names = _parse_names(attrs.get("class_names"), path)
        self.crs, self.transform = self._georeferencing(group)
        meta = dict(group.attrs).get("rsinfer")
        if isinstance(meta, dict) and meta.get("complete") is False:
            warnings.warn(f"{path}: the zarr store is marked incomplete (an interrupted job); unwritten pixels "
                          "read as nodata", InputWarning, stacklevel=3)
        self._check()

    def _georeferencing(self, group):
        from affine import Affine
        from rasterio.crs import CRS

        try:
            attrs = dict(group["spatial_ref"].attrs)
        except KeyError:
            return None, None
        crs = transform = None
        wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
        if wkt:
            try:
                crs = CRS.from_wkt(wkt)
            except Exception:
                warnings.warn(f"{self.path}: the CRS in spatial_ref cannot be parsed; ignoring it", InputWarning, stacklevel=4)
        gt = attrs.get("GeoTransform")
        if gt:
            try:
                c, a, b, f, d, e = (float(v) for v in str(gt).split())
                transform = Affine(a, b, c, d, e, f)
            except ValueError:
                warnings.warn(f"{self.path}: GeoTransform {gt!r} cannot be parsed; ignoring it", InputWarning, stacklevel=4)
        return crs, transform

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        try:
            return np.asarray(self._array[rows, cols])
        except Exception as err:
            raise InputError(f"{self.path}: cannot read rows {rows.start}-{rows.stop}, cols {cols.start}-{cols.stop} "
                             f"({first_line(err)})") from None


# ---------------------------------------------------------------------------------------------
# streaming
# ---------------------------------------------------------------------------------------------
def check_alignment(pred: LabelRaster, labels: LabelRaster) -> None:
    """Same size, and same CRS and pixel grid where both say; a warning where that cannot be checked."""
    if (pred.width, pred.height) != (labels.width, labels.height):
        raise InputError(f"{pred.path} is {pred.width}x{pred.height} px but {labels.path} is "
                         f"{labels.width}x{labels.height} px; they must cover the same pixel grid")
    missing = [r.path for r in (pred, labels) if r.crs is None]
    if missing:
        warnings.warn(f"{' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no CRS; cannot check that "
                      f"{pred.path} and {labels.path} are on the same grid (compared pixel by pixel)",
                      InputWarning, stacklevel=3)
        return
    if pred.crs != labels.crs:
        raise InputError(f"{pred.path} and {labels.path} have different CRS ({_crs_name(pred.crs)} vs "
                         f"{_crs_name(labels.crs)}); reproject one onto the other's grid")
    if pred.transform is None or labels.transform is None:
        which = pred.path if pred.transform is None else labels.path
        warnings.warn(f"{which} has no geotransform; cannot check that {pred.path} and {labels.path} are on the "
                      "same grid", InputWarning, stacklevel=3)
        return
    t1, t2 = pred.transform, labels.transform
    pixel = min(abs(t1.a), abs(t1.e)) or 1.0
    if not np.allclose(tuple(t1)[:6], tuple(t2)[:6], rtol=0, atol=1e-3 * pixel):
        raise InputError(f"{pred.path} and {labels.path} have different pixel grids (origin {t1.c:g}, {t1.f:g} and "
                         f"pixel {t1.a:g} x {t1.e:g} vs origin {t2.c:g}, {t2.f:g} and pixel {t2.a:g} x {t2.e:g})")


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
    return [(slice(r, min(r + rows, height)), slice(c, min(c + cols, width)))
            for r in range(0, height, rows) for c in range(0, width, cols)]


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
            raise InputError(f"{raster.path}: class id {hi} in {where}, but there are {k} classes "
                             f"(set --num-classes, or --ignore-index for classes of LABELS left out)")
        if hi >= MAX_CLASSES:
            raise InputError(f"{raster.path}: class id {hi} in {where}; that is not a label map "
                             f"(at most {MAX_CLASSES} classes)")
        return hi


def _is_byte(v) -> bool:
    return v is not None and float(v).is_integer() and 0 <= v <= 255


def _run(work: Callable, windows: list, workers: int) -> Iterator:
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


def resolve_classes(pred: LabelRaster, labels: LabelRaster, num_classes: int | None) -> tuple[int | None, tuple[str, ...] | None]:
    """K and the class names: --num-classes, else the names PRED (or LABELS) carries, else None (from the data)."""
    names = pred.class_names or labels.class_names
    if pred.class_names and labels.class_names and pred.class_names != labels.class_names:
        warnings.warn(f"{pred.path} and {labels.path} name their classes differently; using {pred.path}'s names",
                      InputWarning, stacklevel=3)
    if num_classes is None:
        return (len(names), names) if names else (None, None)
    if names and len(names) != num_classes:
        warnings.warn(f"{pred.path if pred.class_names else labels.path} names {len(names)} classes but "
                      f"--num-classes is {num_classes}", InputWarning, stacklevel=3)
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
    import time

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
        raise InputError(f"{pred} vs {labels}: no pixel is valid in both (nodata"
                         f"{', --ignore-index' if ignore else ''}); nothing to score")
    k = cm.shape[0]
    names = tuple(names[:k]) + tuple(f"class {i}" for i in range(len(names), k)) if names else \
        tuple(f"class {i}" for i in range(k))
    m = confusion_metrics(cm, exclude=ignore)
    return EvalResult(
        pred=str(pred), labels=str(labels), confusion_matrix=cm, class_names=names, ignore=ignore,
        iou=m["iou"], f1=m["f1"], miou=m["miou"], oa=m["oa"], mean_f1=m["mean_f1"], pixels=m["pixels"],
        support=m["support"], predicted=m["predicted"], width=width, height=height, windows=len(windows),
        seconds=time.perf_counter() - start,
    )
