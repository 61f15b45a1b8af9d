"""Predictors: how a batch of read tiles becomes class probabilities, per kind of model.

The job's loop knows only :class:`Predictor`: it asks it to ``schedule`` whatever side reads
a tile needs (on the reader's threads, as the tile is queued) and calls it on each batch.
The sliding-window predictor hands the batch to the backend as it is. The global-local
predictor owns what GLNet/GLCANet need beside each patch: the regions of the scene, their
decimated global views (read ahead on the reader's threads), the global context computed
once per region, and each patch's footprint box in its region's view, grown by the same
padding the backend gives the patch (MONAI's ``sliding_window_inference(predictor=...)``
is the model for this split). A model that fuses every patch of a region before predicting
any (GLNet as its authors run it) gets that first pass here, when its region's context is
first needed: the region's tiles are read and run once more, so memory stays one region's.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from rsinfer.models.global_local import GlobalLocalModel

from .backends.base import Backend
from .batching import Batch
from .global_context import GlobalContextCache, RegionPlan
from .io.reader import TileReader
from .io.source import RasterInfo
from .loading import LoadedModel
from .tiling import Tile, TileGrid

# Tiles per forward pass of a region's first pass: fixed, so its sums do not depend on --batch-size.
REGION_PASS_BATCH = 4

# Runs a function on the reader's threads: ``submit(fn, *args) -> Future``.
Submit = Callable[..., Future[Any]]


class Predictor(ABC):
    """A batch of raw tiles in, probabilities (B, K, h, w) on the backend's device out."""

    def __init__(self, backend: Backend):
        self.backend = backend

    def schedule(self, tile: Tile, submit: Submit) -> None:
        """Called as ``tile`` is queued for reading: start any side read it needs on ``submit``."""

    @abstractmethod
    def __call__(self, batch: Batch, labels: bool = False) -> torch.Tensor:
        """Probabilities (B, K, h, w); with ``labels``, class labels (B, h, w) uint8 (see Backend.predict)."""


class SlidingWindowPredictor(Predictor):
    """Each tile on its own: what every sliding-window model needs."""

    def __call__(self, batch: Batch, labels: bool = False) -> torch.Tensor:
        return self.backend.predict(batch.data, batch.valid, labels=labels)


class GlobalLocalPredictor(Predictor):
    """Patches with their region's global context and their footprint boxes (GLNet, GLCANet).

    In ``patch`` mode the model needs no context: only the boxes are computed.
    """

    def __init__(self, backend: Backend, info: RasterInfo, grid: TileGrid, loaded: LoadedModel, needs_context: bool):
        super().__init__(backend)
        self.info = info
        spec = loaded.config.global_local
        assert spec is not None
        self.plan = RegionPlan(grid, spec.region)
        self.contexts = (
            GlobalContextCache(info, self.plan, spec.global_size, backend.compute_context) if needs_context else None
        )
        # The backend pads tiles to the model's size rule; boxes grow with them.
        config = loaded.config
        self.padded = (config.padded_size(grid.tile_shape[0]), config.padded_size(grid.tile_shape[1]))

    def schedule(self, tile: Tile, submit: Submit) -> None:
        if self.contexts is not None:
            self.contexts.prefetch(self.plan.region_of(tile), submit)

    def boxes(self, tiles: list[Tile]) -> np.ndarray:
        return np.array([self.plan.box(t, self.padded) for t in tiles], dtype=np.float32)

    def __call__(self, batch: Batch, labels: bool = False) -> torch.Tensor:
        tiles = [td.tile for td in batch.tiles]
        contexts = [self.context(self.plan.region_of(t)) if self.contexts else None for t in tiles]
        return self.backend.predict(batch.data, batch.valid, contexts, self.boxes(tiles), labels=labels)

    def context(self, key: tuple[int, int]):
        assert self.contexts is not None
        context = self.contexts.get(key)
        model = getattr(self.backend, "model", None)  # the torch backend's module
        if isinstance(model, GlobalLocalModel) and model.needs_region_pass(context):
            self._region_pass(model, key, context)
        return context

    def _region_pass(self, model: GlobalLocalModel, key: tuple[int, int], context) -> None:
        """Every tile of region ``key`` (all-invalid ones as zeros) through the model's first pass."""
        rows = [i for i, r in enumerate(self.plan.y.tile_region) if r == key[0]]
        cols = [j for j, r in enumerate(self.plan.x.tile_region) if r == key[1]]
        tiles = [self.plan.grid.tile_at(i, j) for i in rows for j in cols]
        view_rows, view_cols = self.plan.view(key)
        reader = TileReader(self.info, workers=1)
        backend = self.backend
        autocast = getattr(backend, "_autocast", contextlib.nullcontext)

        def batches():
            for start in range(0, len(tiles), REGION_PASS_BATCH):
                part = tiles[start : start + REGION_PASS_BATCH]
                read = [reader.read(t) for t in part]
                bands = len(self.info.bands)
                data = np.stack(
                    [td.data if td.data is not None else np.zeros((bands, *td.tile.shape)) for td in read]
                ).astype(np.float32)
                valid = np.stack([td.valid if td.valid is not None else np.zeros(td.tile.shape, bool) for td in read])
                x = backend.pad(backend.normalize(data, valid))
                yield x, torch.from_numpy(self.boxes(part)).to(backend.device)

        try:
            with torch.inference_mode(), autocast():
                model.fuse_region(context, batches(), (view_rows.size, view_cols.size))
        finally:
            reader.close()


def make_predictor(
    loaded: LoadedModel, backend: Backend, info: RasterInfo, grid: TileGrid, mode: str | None
) -> Predictor:
    """The predictor for ``loaded`` in ``mode`` (as set by :meth:`LoadedModel.set_mode`)."""
    if not loaded.config.is_global_local:
        return SlidingWindowPredictor(backend)
    return GlobalLocalPredictor(backend, info, grid, loaded, needs_context=mode != "patch")
