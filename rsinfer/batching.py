"""Grouping read tiles into model batches, and choosing how many tiles a batch holds.

Tiles with no valid pixel skip the model and pass straight on; the rest are stacked
into arrays of the current batch size (the last batch may be smaller). The batch size
can shrink during a run: on CUDA out-of-memory the pipeline halves it and retries the
same tiles, and later batches keep the smaller size.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ModelError, RsinferError
from .io.reader import TileData


@dataclass
class Batch:
    tiles: list[TileData]
    data: np.ndarray  # (B, bands, h, w), the raster's dtype
    valid: np.ndarray  # (B, h, w) bool

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, part: slice) -> Batch:
        """The tiles of ``part`` as a batch of their own (views, no copies)."""
        return Batch(self.tiles[part], self.data[part], self.valid[part])


class BatchSize:
    """The number of tiles per batch; ``shrink`` lowers it for the rest of the run."""

    def __init__(self, value: int):
        if value < 1:
            raise ValueError("batch size must be at least 1")
        self.value = value

    def shrink(self, to: int) -> None:
        self.value = max(1, min(self.value, to))


def batch_tiles(tiles: Iterable[TileData], size: BatchSize | int) -> Iterator[Batch | TileData]:
    """Yield a :class:`Batch` per ``size`` non-empty tiles, and each empty tile as it comes."""
    size = size if isinstance(size, BatchSize) else BatchSize(size)
    pending: list[TileData] = []
    for td in tiles:
        if td.empty:
            yield td
            continue
        pending.append(td)
        if len(pending) >= size.value:
            yield _stack(pending)
            pending = []
    if pending:
        yield _stack(pending)


def _stack(tiles: list[TileData]) -> Batch:
    data: list[np.ndarray] = []
    valid: list[np.ndarray] = []
    for t in tiles:
        assert t.data is not None and t.valid is not None  # empty tiles are never batched
        data.append(t.data)
        valid.append(t.valid)
    return Batch(tiles, np.stack(data), np.stack(valid))


def predict_halving_on_oom(predict: Callable[[Batch], torch.Tensor], size: BatchSize, batch: Batch) -> torch.Tensor:
    """``predict`` the batch; on CUDA out-of-memory, halve it and retry the same tiles.

    No tile is lost: the batch is re-run in slices of the halved size (halving again if a
    slice still does not fit) and the outputs joined. The smaller size is kept for later batches.
    """
    try:
        return predict(batch)
    except torch.cuda.OutOfMemoryError:
        n = len(batch)
        if n == 1:
            raise ModelError(
                "out of GPU memory with a batch of one tile; use a smaller --tile or --precision fp16"
            ) from None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        size.shrink(n // 2)
        parts, i = [], 0
        while i < n:
            part = slice(i, i + size.value)  # re-read: a slice's own failure shrinks it further
            parts.append(predict_halving_on_oom(predict, size, batch[part]))
            i = part.stop
        return torch.cat(parts)


def parse_memory(text: str) -> int:
    """``24GiB``, ``500MB``, ``0.8`` (a fraction of the GPU's total) → bytes; fractions need a GPU."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]i?B)?\s*", text, flags=re.IGNORECASE)
    if not m:
        raise RsinferError(f"--max-gpu-mem {text!r}: use e.g. 20GiB, 500MB or a fraction like 0.8")
    value, unit = float(m.group(1)), (m.group(2) or "").upper()
    if not unit:
        if not 0 < value <= 1:
            raise RsinferError(f"--max-gpu-mem {text!r}: a bare number is a fraction of GPU memory, in (0, 1]")
        return int(value * torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
    scale = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
    return int(value * scale)


def auto_batch_size(
    try_batch: Callable[[int], None], device: torch.device, budget: int | None, cpu_default: int = 4, largest: int = 256
) -> int:
    """The largest batch (a power of two) whose forward pass fits ``budget`` bytes of GPU memory.

    ``try_batch(b)`` runs one batch of ``b`` tiles. Peak allocated memory is measured per
    trial; an out-of-memory ends the search. On CPU there is no memory to fit: ``cpu_default``.
    """
    if device.type != "cuda":
        return cpu_default
    if budget is None:
        free, _ = torch.cuda.mem_get_info(device)
        budget = int(free * 0.9)
    best, b = 0, 1
    while b <= largest:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        try:
            try_batch(b)
            torch.cuda.synchronize(device)
        except torch.cuda.OutOfMemoryError:
            break
        if torch.cuda.max_memory_allocated(device) - base > budget:
            break
        best, b = b, b * 2
    torch.cuda.empty_cache()
    if best == 0:
        raise ModelError("not even one tile fits the GPU memory budget; use a smaller --tile or raise --max-gpu-mem")
    return best
