"""Shared model-test helpers as fixtures: every registered model, built once per test module."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from rsinfer.models import ModelConfig, create_model, get_config, list_models


@dataclass(frozen=True)
class BuiltModel:
    """A registered model with seeded random weights, and the input sizes its checks use."""

    name: str
    config: ModelConfig
    module: nn.Module

    @property
    def small_side(self) -> int:
        """The smallest tile the model takes, rounded up to its size rule."""
        return self.config.padded_size(max(self.config.min_tile, 64))


@pytest.fixture(scope="module", params=list_models())
def built_model(request) -> BuiltModel:
    """Each registered model in turn (parametrized), built once per module that asks for it."""
    config = get_config(request.param)
    torch.manual_seed(0)
    return BuiltModel(request.param, config, create_model(request.param, config))
