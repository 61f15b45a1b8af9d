"""Merging overlapping tile outputs into finished rows, in memory bounded by a band of tile rows.

The raster is cut into horizontal *strips*: strip ``s`` runs from tile row ``s``'s first
row to tile row ``s + 1``'s. A strip is finished once every tile row that touches it is
complete; finished strips are emitted top to bottom and their buffers freed. Tiles may
arrive in any order within the rows in flight (batches span rows), so only the strips
touched by incomplete tile rows are held: a few strips of ``width`` pixels, never the
whole image.

Accumulation runs in torch on the device the scores are on, so on a GPU only uint8
labels (and uint8 probabilities, when asked for) come back to the host.

``crop`` needs no accumulation: every pixel has one owner tile, whose core is written
as it is. ``linear``/``gaussian`` sum ``weight × score`` and divide by the summed weight.
"""

from __future__ import annotations

import numpy as np
import torch

from .io.labelmap import NODATA_LABEL, FinishedRows
from .tiling import Span, Tile, TileGrid


def class_labels(scores: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The index of the largest score along ``dim`` as uint8 (the first one on ties, NaN counting as largest).

    ``torch.max(dim).indices`` is ``argmax`` (same ties, same NaNs) and what runs on a GPU.
    On a CPU torch reduces over a leading, strided dimension one element at a time, so
    float scores go through numpy (the same memory, no copy): the maximum first, then the
    first class that reaches it, as ``K - max_k((score_k == max) * (K - k))`` in uint8, all
    vectorized: 2-4x faster for the 6 classes of a label map, the same labels. A NaN score
    equals nothing; the rare slice that has one falls back to ``max``.
    """
    k = scores.shape[dim]
    if scores.device.type != "cpu" or scores.dtype not in (torch.float32, torch.float64) or not 0 < k < 256:
        return scores.max(dim).indices.to(torch.uint8)
    a = scores.numpy()
    if a.size == 0:
        return scores.max(dim).indices.to(torch.uint8)
    rank_shape = [1] * a.ndim
    rank_shape[dim] = k
    rank = np.arange(k, 0, -1, dtype=np.uint8).reshape(rank_shape)  # K for class 0, ..., 1 for class K-1
    reaches = np.equal(a, a.max(axis=dim, keepdims=True)).view(np.uint8)
    reaches *= rank
    first = reaches.max(axis=dim)
    if not first.all():  # a NaN score: no class equals the maximum there
        return scores.max(dim).indices.to(torch.uint8)
    return torch.from_numpy(np.subtract(k, first, dtype=np.uint8))


class _Strip:
    """Buffers for one strip of rows."""

    def __init__(self, rows: Span, width: int, classes: int, accumulate: bool, keep_scores: bool, device):
        self.rows = rows
        h = rows.size
        self.valid = torch.zeros((h, width), dtype=torch.bool, device=device)
        if accumulate:
            self.acc = torch.zeros((classes, h, width), dtype=torch.float32, device=device)
            self.wsum = torch.zeros((h, width), dtype=torch.float32, device=device)
        else:
            self.labels = torch.full((h, width), NODATA_LABEL, dtype=torch.uint8, device=device)
            self.scores = torch.zeros((classes, h, width), dtype=torch.float32, device=device) if keep_scores else None


def _clip(span: Span, to: Span) -> Span:
    """``span`` ∩ ``to``; an empty span where they do not meet."""
    start = max(span.start, to.start)
    return Span(start, max(start, min(span.stop, to.stop)))


class RowBandStitcher:
    """Accepts tile outputs (``add``) and returns the rows they finish.

    ``scores`` passed to :meth:`add` are (K, h, w) class scores (probabilities, or logits
    for exactness checks). With ``keep_scores`` the finished rows also carry the blended
    scores, quantized to uint8 when ``quantize`` (probabilities × 255).

    ``rows`` limits the output to a window of rows (a part of a job): only the tile rows
    that touch it (:meth:`TileGrid.rows_touching`) need to be added, and the rows emitted
    are the same, bit for bit, as the whole raster's for those rows.
    """

    def __init__(
        self,
        grid: TileGrid,
        num_classes: int,
        blend: str = "crop",
        keep_scores: bool = False,
        quantize: bool = True,
        device: str | torch.device = "cpu",
        rows: Span | None = None,
    ):
        self.grid = grid
        self.classes = num_classes
        self.blend = blend
        self.accumulate = blend != "crop"
        self.keep_scores = keep_scores
        self.quantize = quantize
        self.device = torch.device(device)
        self.rows = rows or Span(0, grid.height)
        if not 0 <= self.rows.start < self.rows.stop <= grid.height:
            raise ValueError(f"rows {self.rows.start}-{self.rows.stop} are outside the raster's 0-{grid.height}")
        starts = grid.y.starts
        # Strip s runs from tile row s's first row to tile row s + 1's, clipped to ``rows``;
        # strips outside ``rows`` are empty and never emitted.
        ends = [*starts[1:], grid.height]
        self._strip_rows = [_clip(Span(starts[s], ends[s]), self.rows) for s in range(len(starts))]
        # Strip s is touched by tile rows first_row[s] .. s.
        self._last_strip_of_row = [self._strip_of(starts[r] + grid.y.tile - 1) for r in range(len(starts))]
        # Tile rows that do not touch ``rows`` are never added: count them as complete.
        job_rows = set(grid.rows_touching(self.rows))
        self._tiles_left = [grid.n_cols if r in job_rows else 0 for r in range(grid.n_rows)]
        in_window = [s for s, span in enumerate(self._strip_rows) if span.size > 0]
        self._next_strip = in_window[0]
        self._end_strip = in_window[-1] + 1
        self._strips: dict[int, _Strip] = {}
        self.peak_strips = 0

    def _strip_of(self, y: int) -> int:
        starts = self.grid.y.starts
        s = int(np.searchsorted(starts, y, side="right")) - 1
        return max(0, s)

    def _strip(self, s: int) -> _Strip:
        strip = self._strips.get(s)
        if strip is None:
            strip = _Strip(
                self._strip_rows[s], self.grid.width, self.classes, self.accumulate, self.keep_scores, self.device
            )
            self._strips[s] = strip
            self.peak_strips = max(self.peak_strips, len(self._strips))
        return strip

    def add(
        self, tile: Tile, scores: torch.Tensor | None, valid: torch.Tensor | np.ndarray | None
    ) -> list[FinishedRows]:
        """Add one tile's scores (None for a tile with no valid pixel); return rows now finished.

        With ``crop`` blending and no ``keep_scores``, ``scores`` may be the tile's labels
        instead, (h, w) uint8 (:func:`class_labels` of its scores).
        """
        if scores is not None:
            if not isinstance(valid, torch.Tensor):
                valid = torch.as_tensor(valid)
            valid = valid.to(self.device, non_blocking=True)
            scores = scores.to(self.device, non_blocking=True)
            if self.accumulate:
                wy, wx = self.grid.axis_weights(tile, self.blend)
                weight = torch.outer(torch.as_tensor(wy, device=self.device), torch.as_tensor(wx, device=self.device))
            for s in range(self._strip_of(tile.rows.start), self._last_strip_of_row[tile.row] + 1):
                if self._strip_rows[s].size == 0:  # outside the rows asked for
                    continue
                strip = self._strip(s)
                if self.accumulate:
                    self._accumulate(strip, tile, scores, weight, valid)
                else:
                    self._assign(strip, tile, scores, valid)
        self._tiles_left[tile.row] -= 1
        return self._emit_finished()

    # -- the two merge rules -------------------------------------------------------------
    def _overlap(self, strip: _Strip, rows: Span, tile: Tile, cols: Span):
        """Slices of the strip buffer and of the tile for the rows/cols both cover."""
        r0, r1 = max(strip.rows.start, rows.start), min(strip.rows.stop, rows.stop)
        if r0 >= r1:
            return None
        strip_sl = (slice(r0 - strip.rows.start, r1 - strip.rows.start), slice(cols.start, cols.stop))
        tile_sl = (
            slice(r0 - tile.rows.start, r1 - tile.rows.start),
            slice(cols.start - tile.cols.start, cols.stop - tile.cols.start),
        )
        return strip_sl, tile_sl

    def _assign(self, strip: _Strip, tile: Tile, scores: torch.Tensor, valid: torch.Tensor) -> None:
        sl = self._overlap(strip, tile.core_rows, tile, tile.core_cols)
        if sl is None:
            return
        (sr, sc), (tr, tc) = sl
        core_valid = valid[tr, tc]
        if scores.dim() == 2:  # labels already
            labels, core_scores = scores[tr, tc], None
        else:
            core_scores = scores[:, tr, tc]
            labels = class_labels(core_scores)
        strip.labels[sr, sc] = torch.where(
            core_valid, labels, torch.tensor(NODATA_LABEL, dtype=torch.uint8, device=self.device)
        )
        strip.valid[sr, sc] = core_valid
        if strip.scores is not None:
            if core_scores is None:
                raise ValueError("this stitcher keeps scores: add() needs scores, not labels")
            strip.scores[:, sr, sc] = core_scores

    def _accumulate(self, strip: _Strip, tile: Tile, scores, weight, valid) -> None:
        sl = self._overlap(strip, tile.rows, tile, tile.cols)
        if sl is None:
            return
        (sr, sc), (tr, tc) = sl
        w = weight[tr, tc]
        strip.acc[:, sr, sc] += scores[:, tr, tc] * w
        strip.wsum[sr, sc] += w
        # Validity is a property of the input pixel: take it from the tile that owns the pixel.
        core = self._overlap(strip, tile.core_rows, tile, tile.core_cols)
        if core is not None:
            (cr, cc), (vr, vc) = core
            strip.valid[cr, cc] = valid[vr, vc]

    # -- emission --------------------------------------------------------------------------
    def _strip_finished(self, s: int) -> bool:
        # Every tile row r <= s whose tiles reach into strip s must be complete.
        r = s
        while r >= 0 and self._last_strip_of_row[r] >= s:
            if self._tiles_left[r] > 0:
                return False
            r -= 1
        return True

    def _emit_finished(self) -> list[FinishedRows]:
        out = []
        while self._next_strip < self._end_strip and self._strip_finished(self._next_strip):
            out.append(self._finish(self._next_strip))
            self._next_strip += 1
        return out

    def _finish(self, s: int) -> FinishedRows:
        strip = self._strips.pop(s, None)
        rows = self._strip_rows[s]
        if strip is None:  # no tile touching this strip had a valid pixel
            nodata = np.full((rows.size, self.grid.width), NODATA_LABEL, dtype=np.uint8)
            empty_scores = (
                np.zeros((self.classes, rows.size, self.grid.width), np.uint8 if self.quantize else np.float32)
                if self.keep_scores
                else None
            )
            return FinishedRows(rows, nodata, empty_scores)
        if self.accumulate:
            blended = strip.acc / strip.wsum.clamp_min(1e-12)
            labels = class_labels(blended)
            labels[~strip.valid] = NODATA_LABEL
            scores = blended if self.keep_scores else None
        else:
            labels = strip.labels
            scores = strip.scores
        host_scores: np.ndarray | None = None
        if scores is not None:
            scores = scores * strip.valid
            if self.quantize:
                scores = (scores * 255.0).round_().clamp_(0, 255).to(torch.uint8)
            host_scores = scores.cpu().numpy()
        return FinishedRows(rows, labels.cpu().numpy(), host_scores)

    @property
    def done(self) -> bool:
        return self._next_strip == self._end_strip
