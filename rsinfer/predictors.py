"""Predictors: how a batch of read tiles becomes class probabilities, per kind of model.

The job's loop knows only :class:`Predictor`: it asks it to ``schedule`` whatever side reads
a tile needs (on the reader's threads, as the tile is queued) and calls it on each batch.
The sliding-window predictor hands the batch to the backend as it is. The global-local
predictor owns what GLNet/GLCANet need beside each patch: the regions of the scene, their
decimated global views (read ahead on the reader's threads), the global context computed
once per region, and each patch's footprint box in its region's view, grown by the same
padding the backend gives the patch (MONAI's ``sliding_window_inference(predictor=...)``
is the model for this split).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from .backends.base import Backend
from .batching import Batch
from .global_context import GlobalContextCache, RegionPlan
from .io.source import RasterInfo
from .loading import LoadedModel
from .tiling import Tile, TileGrid

# Runs a function on the reader's threads: ``submit(fn, *args) -> Future``.
Submit = Callable[..., Future[Any]]


class Predictor(ABC):
    """A batch of raw tiles in, probabilities (B, K, h, w) on the backend's device out."""

    def __init__(self, backend: Backend):
        self.backend = backend

    def schedule(self, tile: Tile, submit: Submit) -> None:
        """Called as ``tile`` is queued for reading: start any side read it needs on ``submit``."""

    @abstractmethod
    def __call__(self, batch: Batch) -> torch.Tensor: ...


class SlidingWindowPredictor(Predictor):
    """Each tile on its own: what every sliding-window model needs."""

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.backend.predict(batch.data, batch.valid)


class GlobalLocalPredictor(Predictor):
    """Patches with their region's global context and their footprint boxes (GLNet, GLCANet).

    In ``patch`` mode the model needs no context: only the boxes are computed.
    """

    def __init__(self, backend: Backend, info: RasterInfo, grid: TileGrid, loaded: LoadedModel, needs_context: bool):
        super().__init__(backend)
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

    def __call__(self, batch: Batch) -> torch.Tensor:
        tiles = [td.tile for td in batch.tiles]
        contexts = [self.contexts.get(self.plan.region_of(t)) if self.contexts else None for t in tiles]
        return self.backend.predict(batch.data, batch.valid, contexts, self.boxes(tiles))


def make_predictor(
    loaded: LoadedModel, backend: Backend, info: RasterInfo, grid: TileGrid, mode: str | None
) -> Predictor:
    """The predictor for ``loaded`` in ``mode`` (as set by :meth:`LoadedModel.set_mode`)."""
    if not loaded.config.is_global_local:
        return SlidingWindowPredictor(backend)
    return GlobalLocalPredictor(backend, info, grid, loaded, needs_context=mode != "patch")
