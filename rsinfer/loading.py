"""Loading a model for inference: registry config, weights, overrides, in one call.

:func:`load_model` is the one place a network is built and its weights loaded (timm's
``build_model_with_cfg`` is the pattern): the config comes from the registry, then the
weights' manifest entry (classes, bands, normalization they were trained with), then the
caller's overrides (tile, overlap); the result carries the three together, so nothing needs
to be stuck onto the ``nn.Module``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch.nn as nn

from rsinfer.models import DEFAULT_MODEL, ModelConfig, create_model, get_config

from .errors import ModelError
from .weights import RANDOM_WEIGHTS, default_weights, load_checkpoint, resolve_weights

MODES = ("global-local", "global", "patch")


@dataclass(frozen=True)
class LoadedModel:
    """A network in eval mode, the config it was built for, and which weights it holds."""

    config: ModelConfig
    module: nn.Module
    # A manifest entry name, a checkpoint file name, or "random": recorded in outputs.
    weights: str

    @property
    def name(self) -> str:
        return self.config.name

    def set_mode(self, mode: str | None) -> str | None:
        """Put a global-local model in ``mode`` (default global-local); return the mode, or None
        for a sliding-window model, which has no modes and accepts only ``patch`` or None."""
        if not self.config.is_global_local:
            if mode not in (None, "patch"):
                raise ModelError(f"model {self.name} has no global branch; --mode {mode} needs GLNet or GLCANet")
            return None
        mode = mode or "global-local"
        if mode not in MODES:
            raise ModelError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.module.set_mode(mode)  # type: ignore[operator]
        return mode


def load_model(
    model: str | None = None,
    weights: str | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    global_size: int | None = None,
) -> LoadedModel:
    """Build ``model`` with ``weights`` (a file, a manifest entry, ``random``, or None for the
    model's bundled default) and the tile/overlap overrides; errors are one-line ModelErrors.

    ``global_size`` (global-local models): the longest side of each region's global view, in
    place of the config's or the weights' entry's (GLNet's authors ran DeepGlobe at 508).
    With no model, the weights' model is used, else :data:`DEFAULT_MODEL`.
    """
    spec = weights
    if spec is None:  # the model's bundled default weights, if it has any
        spec = default_weights(model or DEFAULT_MODEL)
    elif spec == RANDOM_WEIGHTS:
        spec = None
    weights_file, entry = resolve_weights(spec) if spec else (None, None)
    name = model or (entry.model if entry else DEFAULT_MODEL)
    if entry and entry.model != name:
        raise ModelError(f"weights {entry.name} are for model {entry.model}, not {name}")
    try:
        config = get_config(name)
    except KeyError as err:
        raise ModelError(str(err.args[0])) from None
    if weights_file is None and weights != RANDOM_WEIGHTS:
        warnings.warn(
            f"model {name} has no trained weights here: its predictions are random "
            f"(pass --weights FILE, or --weights {RANDOM_WEIGHTS} to silence this)",
            stacklevel=2,
        )
    if entry:
        try:
            config = config.replace(**entry.config_overrides())
        except ValueError as err:
            raise ModelError(f"weights {entry.name}: {err}") from None
    if global_size is not None:
        if not config.is_global_local:
            raise ModelError(f"model {name} has no global view; a global size needs a global-local model")
        try:
            config = config.replace(global_size=global_size)
        except ValueError as err:
            raise ModelError(f"model {name}: {err}") from None
    config = _with_tiling(config, tile, overlap)
    module = create_model(config.name, config)
    if weights_file:
        load_checkpoint(config.name, module, weights_file)
    label = entry.name if entry else (weights_file.name if weights_file else RANDOM_WEIGHTS)
    return LoadedModel(config, module, label)


def _with_tiling(config: ModelConfig, tile: int | None, overlap: int | None) -> ModelConfig:
    tile = tile or config.tile
    overlap = config.overlap if overlap is None else overlap
    if not 0 <= overlap < tile:
        raise ModelError(
            f"model {config.name}: overlap {overlap} must be at least 0 and smaller than the tile ({tile})"
        )
    try:
        config.check_tile(tile)
    except ValueError as err:
        raise ModelError(str(err)) from None
    return config.replace(tile=tile, overlap=overlap)
